//! Watching a run (docs/observability.md), end to end on tiny world models (CPU), read by the
//! tools RL engineers use: the TensorBoard event files by the `tensorboard` package's own event
//! reader, the live Prometheus endpoint by `prometheus_client`'s parser during a run, the
//! Grafana dashboard against what that endpoint exports, and `grlhf plot` on a killed run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use grlhf::run::run;
use grlhf::run_config::RunConfig;
use grlhf_actors::metric_series::{SeriesKind, SERIES};
use grlhf_actors::registry::Registry;
use grlhf_actors::trace_file::read_trace;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `make setup`",
        python.display()
    );
    python
}

/// Runs a Python script with arguments; its stdout parsed as JSON.
fn python_json(script: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A tiny async policy-rl config with an evaluator; `extra` is appended.
fn config_text(run_dir: &Path, steps: u64, extra: &str) -> String {
    format!(
        r#"
mode = "async"
steps = {steps}
seed = 0
run_dir = "{}"
max_staleness = 2
group_size = 4
batch_groups = 4

[data]
world_size = 64

[model]
policy = "world:tiny"

[generator]
count = 2
batch_prompts = 2
max_new_tokens = 6

[[judge]]
kind = "rule_judge"
rule = "reference_overlap"

[learner]
lr = 1e-2
micro_batch = 16

[evaluator]
every = 2
metric = "oracle"
prompts_per_family = 1
max_new_tokens = 4

{extra}
"#,
        run_dir.display()
    )
}

/// Runs a config given as text, in this process.
fn run_text(text: &str) -> grlhf::run::RunOutcome {
    let config = RunConfig::from_toml(text, Path::new("observability.toml")).unwrap();
    run(
        config,
        Path::new("observability.toml"),
        Registry::with_builtins(),
        false,
    )
    .unwrap()
}

const READ_EVENTS: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {}, "histograms": {}}
for tag in tags["scalars"]:
    out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
for tag in tags["histograms"]:
    out["histograms"][tag] = [[e.step, e.histogram_value.num, list(e.histogram_value.bucket)] for e in acc.Histograms(tag)]
print(json.dumps(out))
"#;

/// What a metrics.jsonl line holds as TensorBoard tags (the numbers, flattened as documented).
fn expected_step_tags(line: &Value) -> BTreeSet<String> {
    let skip = ["step", "version", "time"];
    let mut tags = BTreeSet::new();
    for (key, value) in line.as_object().unwrap() {
        if skip.contains(&key.as_str()) {
            continue;
        }
        if value.is_number() {
            tags.insert(format!("train/{key}"));
        }
        if key == "ledger" {
            for (k, v) in value.as_object().unwrap() {
                if v.is_number() {
                    tags.insert(format!("ledger/{k}"));
                }
            }
            for reason in value["dropped_by_reason"].as_object().unwrap().keys() {
                tags.insert(format!("ledger/dropped/{reason}"));
            }
        }
    }
    tags
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_finished_run_writes_tensorboard_events_a_trace_and_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let steps = 6;
    let outcome = run_text(&config_text(&run_dir, steps, ""));

    // TensorBoard: every numeric figure of every metrics.jsonl line, at versions 1..=steps.
    let lines = jsonl(&run_dir.join("metrics.jsonl"));
    assert_eq!(lines.len() as u64, steps);
    let events = python_json(READ_EVENTS, &[run_dir.join("tb").to_str().unwrap()]);
    let scalars = events["scalars"].as_object().unwrap();
    let versions: Vec<u64> = (1..=steps).collect();
    let mut expected = BTreeSet::new();
    for line in &lines {
        expected.extend(expected_step_tags(line));
    }
    assert!(expected.contains("train/reward_mean") && expected.contains("train/kl"));
    for tag in &expected {
        let points = scalars
            .get(tag)
            .unwrap_or_else(|| panic!("tag {tag} missing; have {:?}", scalars.keys()));
        let at: Vec<u64> = points
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_u64().unwrap())
            .collect();
        if tag.starts_with("ledger/dropped/") {
            continue; // a reason appears from the step it first happened
        }
        assert_eq!(at, versions, "{tag}");
    }
    // Values agree with metrics.jsonl (as f32).
    let rewards: Vec<f64> = scalars["train/reward_mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    for (line, got) in lines.iter().zip(&rewards) {
        let want = line["reward_mean"].as_f64().unwrap();
        assert!(
            (want - got).abs() < 1e-5 * want.abs().max(1.0),
            "{want} vs {got}"
        );
    }
    // Throughput from the second step on; the staleness histogram counts the batch's groups.
    assert_eq!(
        scalars["throughput/samples_per_s"]
            .as_array()
            .unwrap()
            .len() as u64,
        steps - 1
    );
    let staleness = events["histograms"]["train/staleness"].as_array().unwrap();
    assert_eq!(staleness.len() as u64, steps);
    let lengths = events["histograms"]["train/response_length"]
        .as_array()
        .unwrap();
    assert_eq!(lengths.len() as u64, steps);
    for (h, line) in lengths.iter().zip(&lines) {
        let trained: u64 = line["response_length_counts"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(h[1].as_f64().unwrap(), trained as f64);
    }
    for (h, line) in staleness.iter().zip(&lines) {
        assert_eq!(
            h[1].as_f64().unwrap(),
            line["groups"].as_f64().unwrap()
                + line["groups_dropped_zero_variance"].as_f64().unwrap()
        );
    }
    // Each held-out evaluation: mean, per family and the scores' histogram, at its version.
    let evals = jsonl(&run_dir.join("eval.jsonl"));
    assert!(evals.len() >= 2, "{} evaluations", evals.len());
    let eval_at: Vec<u64> = scalars["eval/mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    let want_at: Vec<u64> = evals
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(eval_at, want_at);
    for family in evals[0]["per_family"].as_object().unwrap().keys() {
        assert!(
            scalars.contains_key(&format!("eval/family/{family}")),
            "{family}"
        );
    }
    assert_eq!(
        events["histograms"]["eval/scores"]
            .as_array()
            .unwrap()
            .len(),
        evals.len()
    );
    assert!(scalars.contains_key("run/samples_per_s"));
    assert!(scalars
        .keys()
        .any(|k| k.starts_with("run/busy_ratio/generator-")));

    // The trace holds every span the in-memory log holds (it kept all of them in this run).
    let trace = read_trace(&run_dir.join("trace"), true).unwrap();
    assert_eq!(trace.bad_lines, 0);
    assert_eq!(outcome.activity.evicted(), (0, 0));
    assert_eq!(trace.spans.len(), outcome.activity.spans().len());
    assert_eq!(trace.events.len(), outcome.activity.events().len());
    let actors: BTreeSet<String> = trace.spans.iter().map(|s| s.actor.to_string()).collect();
    assert!(
        actors.contains("learner") && actors.contains("generator-1"),
        "{actors:?}"
    );

    // A fresh run in the same directory replaces the trace and the event files (a resume would
    // add to them).
    let second = run_text(&config_text(&run_dir, 2, ""));
    let files = std::fs::read_dir(run_dir.join("tb")).unwrap().count();
    assert_eq!(files, 1, "one event file: the old run's is gone");
    let events = python_json(READ_EVENTS, &[run_dir.join("tb").to_str().unwrap()]);
    assert_eq!(events["scalars"]["train/loss"].as_array().unwrap().len(), 2);
    let trace = read_trace(&run_dir.join("trace"), false).unwrap();
    assert_eq!(trace.spans.len(), second.activity.spans().len());

    // The end-of-run plots.
    for name in PLOTS {
        let path = run_dir.join("plots").join(format!("{name}.png"));
        let image = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(image.width() >= 400, "{}", path.display());
    }
}

/// GET /metrics over plain HTTP/1.0 (the body, or None while the endpoint is not up).
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

/// The plots every run with an evaluator draws.
const PLOTS: [&str; 7] = [
    "reward",
    "kl",
    "clip_fraction",
    "response_length",
    "staleness",
    "throughput",
    "eval",
];

/// `grlhf plot DIR`.
fn grlhf_plot(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_grlhf"))
        .args(["plot", dir.to_str().unwrap()])
        .output()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const PARSE_METRICS: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": sorted({s.name for s in f.samples}),
                "labels": sorted({k for s in f.samples for k in s.labels if k not in ("le", "quantile")})})
print(json.dumps(out))
"#;

/// The series names a sample of `s` may carry.
fn sample_names(name: &str, kind: SeriesKind) -> Vec<String> {
    match kind {
        SeriesKind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect(),
        _ => vec![name.to_string()],
    }
}

/// The catalogue series a name used in a query or a document refers to.
fn base_series(token: &str) -> Option<&'static str> {
    SERIES.iter().map(|s| s.name).find(|name| {
        token == *name
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| token == format!("{name}{suffix}"))
    })
}

fn grlhf_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("grlhf_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn a_live_run_exports_every_documented_series_and_a_killed_run_still_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let port = free_port();
    let extra = format!(
        "[checkpoint]\nevery = 2\nkeep_last = 2\n\n[telemetry]\nprometheus = \"127.0.0.1:{port}\"\n"
    );
    let path = tmp.path().join("live.toml");
    std::fs::write(&path, config_text(&run_dir, 400, &extra)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_grlhf"))
        .args(["run", path.to_str().unwrap(), "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Scrape until the run has trained, published, checkpointed and evaluated a few times.
    let started = Instant::now();
    let body = loop {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no useful scrape"
        );
        std::thread::sleep(Duration::from_millis(200));
        let Some(body) = scrape(port) else { continue };
        let steps = body
            .lines()
            .find_map(|l| l.strip_prefix("grlhf_learner_steps_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if steps >= 5.0 && body.contains("grlhf_eval_score{family=\"all\"}") {
            break body;
        }
    };
    child.kill().unwrap(); // SIGKILL, mid-run
    child.wait().unwrap();

    // Parsed by prometheus_client: every catalogue series is there, typed, with its HELP text.
    let file = tmp.path().join("scrape.txt");
    std::fs::write(&file, &body).unwrap();
    let families = python_json(PARSE_METRICS, &[file.to_str().unwrap()]);
    let families = families.as_array().unwrap();
    let mut exported: BTreeMap<String, &Value> = BTreeMap::new();
    for family in families {
        for sample in family["samples"].as_array().unwrap() {
            exported.insert(sample.as_str().unwrap().to_string(), family);
        }
    }
    for s in SERIES {
        for name in sample_names(s.name, s.kind) {
            let family = exported
                .get(&name)
                .unwrap_or_else(|| panic!("{name} is not exported; the scrape:\n{body}"));
            assert_eq!(family["type"], s.kind.as_str(), "{name}");
            assert_eq!(family["help"], s.help, "{name}");
            let labels: Vec<&str> = family["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            let mut want = s.labels.to_vec();
            want.sort_unstable();
            assert_eq!(labels, want, "{name}'s labels");
        }
        if s.kind == SeriesKind::Counter {
            assert!(s.name.ends_with("_total"), "{} is a counter", s.name);
        }
        assert!(!s.name.ends_with("_ms"), "{}: base units", s.name);
    }
    // Nothing outside the catalogue, and every counter ends in _total.
    for (name, family) in &exported {
        if name.starts_with("grlhf_") {
            assert!(
                base_series(name).is_some(),
                "{name} is not in the catalogue"
            );
        }
        if family["type"] == "counter" {
            assert!(
                name.ends_with("_total") || name.ends_with("_created"),
                "{name}"
            );
        }
    }
    for line in body.lines().filter(|l| l.starts_with("# TYPE grlhf_")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            body.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}"
        );
    }
    let busy = body
        .lines()
        .find(|l| {
            l.starts_with("grlhf_actor_busy_seconds_sum{")
                && l.contains("actor=\"generator-0\"")
                && l.contains("role=\"generator\"")
                && l.contains("index=\"0\"")
                && l.contains("activity=\"generate\"")
        })
        .unwrap_or_else(|| panic!("no busy time of generator-0:\n{body}"));
    let seconds: f64 = busy.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds > 0.0, "{busy}");

    // The Grafana dashboard and docs/observability.md name only exported, catalogued series,
    // and the document lists every one.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/grafana/grlhf.json")).unwrap(),
    )
    .unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(grlhf_tokens(target["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    for token in &queried {
        assert!(
            base_series(token).is_some() && exported.contains_key(token),
            "the dashboard queries {token}, which the endpoint does not export"
        );
    }
    let doc = std::fs::read_to_string(repo().join("docs/observability.md")).unwrap();
    for token in grlhf_tokens(&doc) {
        assert!(
            base_series(&token).is_some(),
            "docs/observability.md names {token}"
        );
    }
    for s in SERIES {
        assert!(
            doc.contains(&format!("`{}`", s.name)),
            "docs/observability.md lacks {}",
            s.name
        );
    }

    // The killed run: `grlhf plot` draws what it left behind.
    let steps_written = jsonl(&run_dir.join("metrics.jsonl")).len();
    assert!(steps_written >= 5);
    assert!(
        !run_dir.join("plots").exists(),
        "a killed run drew no plots itself"
    );
    let out = grlhf_plot(&run_dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("learner steps"), "{stdout}");
    for name in PLOTS {
        let png = run_dir.join("plots").join(format!("{name}.png"));
        image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    }
    // Its TensorBoard file holds the steps metrics.jsonl holds (the kill may fall between the
    // two writes of the last step).
    let events = python_json(READ_EVENTS, &[run_dir.join("tb").to_str().unwrap()]);
    let logged = events["scalars"]["train/loss"].as_array().unwrap().len();
    assert!(
        logged.abs_diff(steps_written) <= 1,
        "{logged} vs {steps_written}"
    );

    // A directory with no run in it is refused, naming it.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("nested")).unwrap();
    let out = grlhf_plot(&empty);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no metrics.jsonl") && stderr.contains("empty"),
        "{stderr}"
    );
    std::fs::remove_dir_all(run_dir.join("plots")).unwrap();

    // A directory holding run directories (a pipeline's): each one's plots.
    let out = grlhf_plot(tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run_dir.join("plots/reward.png").is_file());
}
