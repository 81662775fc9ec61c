//! `bench.md` and the plots, from `bench.json`'s contents.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;

use super::measure::BenchReport;
use super::BenchOutput;
use crate::charts::{grouped_bars, line_charts, BarPanel, LinePanel};

/// Today's date (UTC), for reports.
pub fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

fn report_table(reports: &[(&str, &BenchReport)]) -> String {
    let mut out = String::from(
        "| run | mode | η | G | J | n | B | samples/s | step s | ideal step s (overlap / lockstep) | efficiency | bottleneck | gen tok/s | judged groups/s | judged pairs/s | learner tok/s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|\n",
    );
    for (label, r) in reports {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {} | {:.1} | {:.3} | {:.3} / {:.3} | {:.2} | {} | {:.0} | {:.1} | {:.1} | {:.0} |",
            r.mode,
            r.max_staleness,
            r.generators,
            r.judges,
            r.group_size,
            r.batch_groups,
            r.samples_per_s,
            r.step_s,
            r.ideal.overlap_step_s,
            r.ideal.lockstep_step_s,
            r.overlap_efficiency,
            r.ideal.bottleneck,
            r.generated_tokens_per_s,
            r.judged_groups_per_s,
            r.judged_pairs_per_s,
            r.learner_tokens_per_s,
        );
    }
    out
}

/// `bench.md`.
pub fn markdown(o: &BenchOutput) -> String {
    let b = &o.baseline;
    let mut md = format!(
        "# grlhf bench — {}\n\nMachine: {}. Date: {}. {} run{}.\n\n",
        o.config,
        o.machine,
        o.date,
        if b.simulated { "Simulated" } else { "Real" },
        if b.simulated {
            " (cost model below; no model loaded)"
        } else {
            ""
        }
    );
    md += "Throughputs are over the steady window (after the warm-up steps). Stage times are per learner step: a role's busy time per unit of work × B / instances. Ideal step = the slowest stage or the staleness window ((η + 1)·B groups in flight, each for at least a generation call + a judging + a learner step), under perfect overlap; or the stages' sum (lockstep); efficiency = measured samples/s ÷ perfect-overlap samples/s.\n\n## Baseline\n\n";
    md += &report_table(&[("baseline", b)]);
    let t = &b.ideal.stage_times;
    let _ = write!(
        md,
        "\nStage times per step (measured): generate {:.3} s, judge {:.3} s, learn + publish {:.3} s; staleness window {:.3} s.",
        t.generate_s, t.judge_s, t.learn_s, t.window_s
    );
    if let Some(a) = &b.analytic {
        let t = &a.stage_times;
        let _ = write!(
            md,
            " From the cost model: generate {:.3} s, judge {:.3} s, learn + publish {:.3} s, staleness window {:.3} s (overlap bound {:.3} s, lockstep {:.3} s).",
            t.generate_s, t.judge_s, t.learn_s, t.window_s, a.overlap_step_s, a.lockstep_step_s
        );
    }
    // Across processes a simulated learner publishes real bytes (see `super::processes`).
    let bandwidth = if b.simulated && b.remote_roles.is_empty() {
        "simulated".to_string()
    } else {
        format!("{:.2} GB/s", b.weight_sync_gb_per_s)
    };
    let _ = write!(
        md,
        "\n\nWeight publication (learner side, all subscribers): {:.2} ms per version, {} bytes ({bandwidth}). Ledger balanced: {}.\n\n",
        b.weight_sync_ms, b.weight_sync_bytes, b.ledger_balanced
    );
    md += "| latency (s) | mean | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n";
    for (name, p) in [
        ("taken → trained", &b.latency_s),
        ("generated → judged", &b.judge_wait_s),
        ("judged → trained", &b.learner_wait_s),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            p.mean, p.p50, p.p90, p.p99, p.max
        );
    }
    md += "\n| staleness | groups trained |\n|---:|---:|\n";
    for (k, v) in &b.staleness_histogram {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    md += "\n| actor | busy | idle |\n|---|---:|---:|\n";
    for (name, load) in b.actors.iter().take(40) {
        let _ = writeln!(md, "| {name} | {:.2} | {:.2} |", load.busy, load.idle);
    }
    if b.actors.len() > 40 {
        let _ = writeln!(md, "\n({} more actors in bench.json.)", b.actors.len() - 40);
    }
    md += "\nTimeline: `trace.json` (open at ui.perfetto.dev) and `timeline.png`.\n";
    if let Some(c) = &o.simulator_check {
        let _ = write!(
            md,
            "\n## Simulator check\n\nThe baseline replayed by simulated actors with the cost model fitted to it (`profile.json`): real {:.1} samples/s, simulated {:.1} samples/s, error {:+.1}%.\n",
            c.real_samples_per_s,
            c.simulated_samples_per_s,
            c.relative_error * 100.0
        );
    }
    md += &processes_markdown(o);
    md += &sweep_markdown(o);
    md += &scale_markdown(o);
    if let Some(c) = &o.cost_model {
        let _ = write!(
            md,
            "\n## Cost model\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(c).unwrap_or_default()
        );
    }
    md
}

/// The across-processes section of `bench.md`: the multi-process baseline against one process,
/// each node's load and each remote role's costs (empty for a one-process baseline).
fn processes_markdown(o: &BenchOutput) -> String {
    let mut md = String::new();
    let (b, Some(one)) = (&o.baseline, &o.one_process) else {
        return md;
    };
    md += "\n## Across processes\n\nThe baseline ran as a head and one worker process per node on this machine (loopback); the same config in one process for comparison:\n\n";
    md += &report_table(&[("processes", b), ("one process", &one.report)]);
    let _ = writeln!(
        md,
        "\nAcross processes ÷ one process: **{:.2}×** samples/s.\n",
        one.processes_over_one
    );
    md += "| node | actors | busy (mean) | busiest | idle (mean) |\n|---|---|---:|---:|---:|\n";
    for (node, load) in &b.nodes {
        let _ = writeln!(
            md,
            "| {node} | {} | {:.2} | {:.2} | {:.2} |",
            load.actors.join(", "),
            load.busy_mean,
            load.busy_max,
            load.idle_mean
        );
    }
    md += "\nA remote role's actor lives on the head; its work (and busy share) is counted on its worker.\n\n| remote role | node | calls | groups | overhead ms/group | weight versions | weight bytes | weight GB/s |\n|---|---|---:|---:|---:|---:|---:|---:|\n";
    for (role, r) in &b.remote_roles {
        let _ = writeln!(
            md,
            "| {role} | {} | {} | {} | {:.2} | {} | {} | {:.2} |",
            r.node,
            r.calls,
            r.groups,
            r.overhead_ms_per_group,
            r.weight_versions,
            r.weight_bytes,
            r.weight_gb_per_s
        );
    }
    md
}

/// The sweep section of `bench.md` (empty without a sweep).
fn sweep_markdown(o: &BenchOutput) -> String {
    let mut md = String::new();
    if o.sweep.is_empty() {
        return md;
    }
    md += "\n## Sweep\n\nOne axis at a time from the config; `× sync` = samples/s over the sync run's.\n\n";
    let rows: Vec<(&str, &BenchReport)> = o
        .sweep
        .iter()
        .map(|r| (r.label.as_str(), &r.report))
        .collect();
    md += &report_table(&rows);
    if let Some(sync) = o.sweep.first() {
        let _ = write!(
            md,
            "\nThe sync run's stages, measured with nothing else running, bound what overlap can give: lockstep {:.3} s vs perfect overlap of the stages {:.3} s per step (a wide enough staleness window assumed), an ideal speed-up of {:.2}× over lockstep. `of ideal` = samples/s ÷ that perfect-overlap throughput (sync and async rows; the other variants change the stages themselves, so their own `efficiency` column above is the one to read).\n",
            sync.report.ideal.lockstep_step_s,
            sync.report.ideal.stage_times.stages_overlap_step_s(),
            sync.report.ideal.lockstep_step_s
                / sync.report.ideal.stage_times.stages_overlap_step_s().max(1e-12)
        );
    }
    md += "\n| run | × sync | of ideal |\n|---|---:|---:|\n";
    for r in &o.sweep {
        let of_ideal = r
            .of_sync_ideal
            .map_or("—".to_string(), |x| format!("{x:.2}"));
        let _ = writeln!(md, "| {} | {:.2}× | {of_ideal} |", r.label, r.over_sync);
    }
    md += "\n![sweep](sweep.png)\n";

    md
}

/// The scale section of `bench.md` (empty without scale runs).
fn scale_markdown(o: &BenchOutput) -> String {
    let mut md = String::new();
    if o.scale.is_empty() {
        return md;
    }
    md += "\n## Scale (simulated actors)\n\n| actors | generators | judges | samples/s | ideal samples/s | bottleneck | step over ideal | learner busy | learner span over cost | zero-cost µs/group | peak groups in flight | bytes/in-flight group |\n|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n";
    for r in &o.scale {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {} | {:+.2}% | {:.3} | {:+.2}% | {:.0} | {} | {:.0} |",
            r.actors,
            r.generators,
            r.judges,
            r.samples_per_s,
            r.ideal_samples_per_s,
            r.bottleneck,
            r.runtime_overhead * 100.0,
            r.learner_busy,
            r.learner_cost_overrun * 100.0,
            r.zero_cost_us_per_group,
            r.peak_in_flight_groups,
            r.bytes_per_in_flight_group
        );
    }
    md += "\n`step over ideal`: measured step time over the cost model's perfect-overlap step, minus 1 — everything the run adds, including queueing where stages are nearly balanced. `learner span over cost`: how much longer the learner's busy spans were than the cost model says (its hand-offs to its device thread and the sleeps' overshoot: the engine side, not the message-passing runtime). With the learner the bottleneck, the runtime's own share is roughly the first minus the second.\n\n![scale](scale.png)\n";

    md
}

/// `queues.png`, `sweep.png` and `scale.png`.
pub fn plots(dir: &Path, o: &BenchOutput) -> Result<()> {
    let q = &o.baseline.queue_depths;
    let series = |f: fn(&super::measure::QueueSample) -> usize| -> Vec<(f64, f64)> {
        q.iter().map(|s| (s.time, f(s) as f64)).collect()
    };
    line_charts(
        &dir.join("queues.png"),
        &[LinePanel {
            title: "baseline: groups queued by stage".into(),
            series: vec![
                ("generating".into(), series(|s| s.generating)),
                ("awaiting a judge".into(), series(|s| s.awaiting_judge)),
                (
                    "awaiting the learner".into(),
                    series(|s| s.awaiting_learner),
                ),
            ],
            x_label: "seconds since the run started".into(),
            y_label: "groups".into(),
        }],
    )?;
    if !o.sweep.is_empty() {
        // One panel per axis, so that labels stay readable.
        let mut axes: Vec<&str> = o.sweep.iter().map(|r| r.axis.as_str()).collect();
        axes.dedup();
        let panels: Vec<BarPanel> = axes
            .iter()
            .map(|axis| {
                let rows: Vec<&super::SweepRow> =
                    o.sweep.iter().filter(|r| r.axis == *axis).collect();
                BarPanel {
                    title: format!("samples/s by {axis}"),
                    groups: rows.iter().map(|r| r.label.clone()).collect(),
                    series: vec![
                        (
                            "measured".into(),
                            rows.iter().map(|r| r.report.samples_per_s).collect(),
                        ),
                        (
                            "ideal (perfect overlap)".into(),
                            rows.iter()
                                .map(|r| r.report.ideal.ideal_samples_per_s)
                                .collect(),
                        ),
                    ],
                    y_label: "samples/s".into(),
                }
            })
            .collect();
        grouped_bars(&dir.join("sweep.png"), &panels)?;
    }
    if !o.scale.is_empty() {
        let points = |f: fn(&super::ScaleRow) -> f64| -> Vec<(f64, f64)> {
            o.scale.iter().map(|r| (r.actors as f64, f(r))).collect()
        };
        line_charts(
            &dir.join("scale.png"),
            &[
                LinePanel {
                    title: "throughput against actor count (simulated)".into(),
                    series: vec![
                        ("measured".into(), points(|r| r.samples_per_s)),
                        ("ideal".into(), points(|r| r.ideal_samples_per_s)),
                    ],
                    x_label: "actors".into(),
                    y_label: "samples/s".into(),
                },
                LinePanel {
                    title: "gap to the ideal step".into(),
                    series: vec![
                        (
                            "step over ideal".into(),
                            points(|r| r.runtime_overhead * 100.0),
                        ),
                        (
                            "learner span over cost (simulator)".into(),
                            points(|r| r.learner_cost_overrun * 100.0),
                        ),
                    ],
                    x_label: "actors".into(),
                    y_label: "%".into(),
                },
            ],
        )?;
    }
    Ok(())
}
