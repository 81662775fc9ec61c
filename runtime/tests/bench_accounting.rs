//! `grlhf bench`'s accounting, checked on simulated actors whose costs are known in advance:
//! measured step time, throughput, busy ratios and stage times match the cost model within 5%,
//! and the ideal bounds are the analytic ones.

use std::path::Path;

use grlhf::bench::measure::{measure, step_shape, IdealBound};
use grlhf::bench::simulated_run::run_simulated;
use grlhf::bench::timeline::write_timeline;
use grlhf::run_config::RunConfig;
use grlhf_actors::registry::Registry;
use grlhf_actors::simulated::{CostModel, StageTimes};
use indicatif::ProgressBar;

fn config(dir: &Path, mode: &str, batch_prompts: usize) -> RunConfig {
    let text = format!(
        r#"
mode = "{mode}"
steps = 24
run_dir = "{}"
max_staleness = 2
group_size = 4
batch_groups = 4
[model]
policy = "world:tiny"
[generator]
count = 1
batch_prompts = {batch_prompts}
[[judge]]
kind = "rule_judge"
rule = "reference_overlap"
"#,
        dir.display()
    );
    RunConfig::from_toml(&text, Path::new("bench-test.toml")).unwrap()
}

/// Per step (B = 4 groups of n = 4 responses of 16 tokens): generate 40 ms, judge 30 ms,
/// learn 80 ms.
fn costs() -> CostModel {
    CostModel {
        response_tokens: 16,
        generate_s_per_call: 0.0,
        generate_s_per_token: 0.040 / 256.0,
        judge_s_per_group: 0.0,
        judge_s_per_pair: 0.030 / 4.0 / 6.0,
        learn_s_per_step: 0.040,
        learn_s_per_token: 0.040 / 256.0,
        sync_s_per_subscriber: 0.0,
        weight_bytes: 1000,
    }
}

fn within(measured: f64, expected: f64, tolerance: f64, what: &str) {
    let error = (measured / expected - 1.0).abs();
    assert!(
        error <= tolerance,
        "{what}: measured {measured:.5}, cost model {expected:.5} ({:.1}% off)",
        error * 100.0
    );
}

#[test]
fn ideal_bounds_are_the_sum_and_the_maximum_of_the_stage_times() {
    let t = StageTimes {
        generate_s: 0.3,
        judge_s: 0.5,
        learn_s: 0.2,
        window_s: 0.4,
    };
    let bound = IdealBound::new(t, 64.0);
    assert!((bound.lockstep_step_s - 1.0).abs() < 1e-12);
    assert_eq!(bound.overlap_step_s, 0.5);
    assert_eq!(bound.bottleneck, "judge");
    assert!((bound.ideal_samples_per_s - 128.0).abs() < 1e-9);
    assert!((bound.lockstep_samples_per_s - 64.0).abs() < 1e-9);
    let window = IdealBound::new(StageTimes { window_s: 0.8, ..t }, 64.0);
    assert_eq!(window.overlap_step_s, 0.8);
    assert_eq!(window.bottleneck, "staleness window");
}

#[test]
fn async_run_on_simulated_actors_matches_its_cost_model() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "async", 2);
    let cost = costs();
    let analytic = cost.stage_times(&step_shape(&config, 1));
    assert!((analytic.generate_s - 0.040).abs() < 1e-9);
    assert!((analytic.judge_s - 0.030).abs() < 1e-9);
    assert!((analytic.learn_s - 0.080).abs() < 1e-9);
    let outcome = run_simulated(
        &config,
        Path::new("bench.toml"),
        &Registry::with_builtins(),
        &cost,
        ProgressBar::hidden(),
        None,
    )
    .unwrap();
    let report = measure("async", &config, &outcome, 1, 4, Some(&cost));

    // The learner is the bottleneck: one step per 80 ms, 16 samples per step.
    within(report.step_s, 0.080, 0.05, "step time");
    within(report.samples_per_s, 16.0 / 0.080, 0.05, "samples/s");
    within(
        report.actors["learner"].busy,
        1.0,
        0.05,
        "learner busy ratio",
    );
    within(
        report.actors["generator-0"].busy,
        0.040 / 0.080,
        0.05,
        "generator busy ratio",
    );
    // 10% here: a judge call costs only 7.5 ms, so the actor's fixed hand-off to its device
    // thread (~0.3–0.5 ms, not in the cost model) is 4–7% of it; at 5% this failed in 2 of ~6
    // runs on the 2-core machine with nothing else running.
    within(
        report.actors["judge-0-0"].busy,
        0.030 / 0.080,
        0.10,
        "judge busy ratio",
    );
    // Stage times measured from the spans are the cost model's, and so are the bounds.
    let measured = report.ideal.stage_times;
    within(
        measured.generate_s,
        analytic.generate_s,
        0.05,
        "generate stage",
    );
    // 10% for the judge, as for its busy ratio above: the measured stage time comes from the
    // same spans, so the same fixed hand-off is in it (5.3–5.6% off in 2 of 4 runs at 5%).
    within(measured.judge_s, analytic.judge_s, 0.10, "judge stage");
    within(measured.learn_s, analytic.learn_s, 0.05, "learn stage");
    // In flight at least 20 + 7.5 + 80 ms, with η + 1 = 3 batches admitted.
    within(
        analytic.window_s,
        0.1075 / 3.0,
        1e-9,
        "staleness window (analytic)",
    );
    within(
        measured.window_s,
        analytic.window_s,
        0.05,
        "staleness window",
    );
    let exact = report.analytic.as_ref().unwrap();
    assert_eq!(exact.overlap_step_s, analytic.overlap_step_s());
    assert_eq!(exact.lockstep_step_s, analytic.lockstep_step_s());
    within(
        report.ideal.overlap_step_s,
        0.080,
        0.05,
        "ideal (overlap) step",
    );
    within(
        report.ideal.lockstep_step_s,
        0.150,
        0.05,
        "ideal (lockstep) step",
    );
    within(report.overlap_efficiency, 1.0, 0.05, "overlap efficiency");
    assert_eq!(report.ideal.bottleneck, "learner");

    // Every group trained is counted once, none older than η, and the ledger balances.
    assert!(report.ledger_balanced);
    let trained: usize = report.staleness_histogram.values().sum();
    assert_eq!(trained, 24 * 4);
    assert!(report.staleness_histogram.keys().all(|&s| s <= 2));
    assert_eq!(report.latency_s.count, 24 * 4);
    assert!(
        report.latency_s.p50 >= 0.040 + 0.0075,
        "a group is generated and judged before training"
    );

    // The timeline holds one complete event per span and names every actor.
    write_timeline(
        dir.path(),
        "test",
        &outcome.activity.spans(),
        &report.queue_depths,
    )
    .unwrap();
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("trace.json")).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let complete = events.iter().filter(|e| e["ph"] == "X").count();
    assert_eq!(complete, outcome.activity.spans().len());
    for name in ["learner", "generator-0", "judge-0-0"] {
        assert!(
            events
                .iter()
                .any(|e| e["ph"] == "M" && e["args"]["name"] == name),
            "{name}"
        );
    }
    let png = std::fs::read(dir.path().join("timeline.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn sync_run_on_simulated_actors_runs_in_lockstep() {
    let dir = tempfile::tempdir().unwrap();
    // One generation call per step and one judge: the stages run strictly one after another.
    let config = config(dir.path(), "sync", 4);
    let cost = costs();
    let outcome = run_simulated(
        &config,
        Path::new("bench.toml"),
        &Registry::with_builtins(),
        &cost,
        ProgressBar::hidden(),
        None,
    )
    .unwrap();
    let report = measure("sync", &config, &outcome, 1, 4, Some(&cost));
    within(
        report.step_s,
        0.150,
        0.05,
        "sync step time = lockstep bound",
    );
    within(
        report.actors["learner"].busy,
        0.080 / 0.150,
        0.05,
        "learner busy ratio",
    );
    assert_eq!(
        report
            .staleness_histogram
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![0]
    );
}
