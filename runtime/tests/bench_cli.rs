//! `grlhf bench` as a user drives it: a simulated config end to end (every file it promises,
//! the sweep's variants, the scale runs), a real run's profile fed back with `--simulate`, the
//! shipped bench configs, and clear errors for bad `[bench]` values and bad profiles.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn grlhf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grlhf"))
        .args(args)
        .output()
        .expect("grlhf runs")
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .display()
        .to_string()
}

fn failure(args: &[&str]) -> String {
    let out = grlhf(args);
    assert!(!out.status.success(), "grlhf {args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

const SIMULATED: &str = r#"
mode = "async"
steps = 6
run_dir = "unused"
max_staleness = 2
group_size = 4
batch_groups = 4
[model]
policy = "world:tiny"
[generator]
count = 2
batch_prompts = 2
[[judge]]
kind = "rule_judge"
rule = "reference_overlap"
[bench]
warmup_steps = 1
scale = [3, 8]
[bench.sweep]
max_staleness = [1, 2]
generators = [1]
group_size = [3]
[bench.simulate]
response_tokens = 8
generate_s_per_token = 0.0002
judge_s_per_pair = 0.001
learn_s_per_step = 0.01
"#;

#[test]
fn a_simulated_bench_writes_every_promised_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sim.toml");
    std::fs::write(&config, SIMULATED).unwrap();
    let out_dir = dir.path().join("out");
    let out = grlhf(&[
        "bench",
        config.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "bench.json",
        "bench.md",
        "trace.json",
        "timeline.png",
        "queues.png",
        "sweep.png",
        "scale.png",
    ] {
        assert!(out_dir.join(file).is_file(), "{file} missing");
    }
    let bench: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("bench.json")).unwrap()).unwrap();
    let baseline = &bench["baseline"];
    assert_eq!(baseline["simulated"], true);
    assert_eq!(baseline["steps"], 6);
    assert!(baseline["samples_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(baseline["ledger_balanced"], true);
    assert!(baseline["analytic"].is_object());
    let labels: Vec<&str> = bench["sweep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["sync", "async η=1", "async η=2", "generators=1", "n=3"]
    );
    let sweep = bench["sweep"].as_array().unwrap();
    assert_eq!(sweep[0]["report"]["mode"], "sync");
    assert_eq!(sweep[0]["over_sync"], 1.0);
    assert_eq!(sweep[4]["report"]["group_size"], 3);
    let scale = bench["scale"].as_array().unwrap();
    assert_eq!(scale.len(), 2);
    assert_eq!(
        scale[1]["generators"].as_u64().unwrap() + scale[1]["judges"].as_u64().unwrap(),
        7
    );
    // No simulator check for a run that is already simulated.
    assert!(bench["simulator_check"].is_null());
    let md = std::fs::read_to_string(out_dir.join("bench.md")).unwrap();
    assert!(md.contains("## Sweep") && md.contains("## Scale"), "{md}");

    // The cost model written into bench.json drives a later bench through --simulate.
    let profile = dir.path().join("profile.json");
    std::fs::write(&profile, bench["cost_model"].to_string()).unwrap();
    let again = dir.path().join("again");
    let out = grlhf(&[
        "bench",
        config.to_str().unwrap(),
        "--simulate",
        profile.to_str().unwrap(),
        "--no-sweep",
        "--no-scale",
        "--steps",
        "3",
        "--out",
        again.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: Value =
        serde_json::from_slice(&std::fs::read(again.join("bench.json")).unwrap()).unwrap();
    assert_eq!(again["baseline"]["steps"], 3);
    assert!(again["sweep"].as_array().unwrap().is_empty());
}

#[test]
fn the_shipped_bench_configs_load() {
    for name in ["bench-cpu", "bench-sim", "bench-scale", "bench-gpu"] {
        let path = repo(&format!("configs/{name}.toml"));
        grlhf::run_config::RunConfig::from_file(Path::new(&path))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[test]
fn bad_bench_values_and_profiles_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, key) in [
        ("[bench.sweep]\ngroup_size = [1]", "bench.sweep.group_size"),
        ("[bench.sweep]\njudges = [0]", "bench.sweep.judges"),
        ("[bench]\nscale = [2]", "bench.scale"),
        ("[bench]\nsteps = 0", "bench.steps"),
        (
            "[bench.simulate]\nlearn_s_per_token = -1.0",
            "bench.simulate.learn_s_per_token",
        ),
        ("[bench]\nwarmup = 3", "warmup"),
    ] {
        let text = SIMULATED.split("[bench]").next().unwrap().to_string() + bad;
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let stderr = failure(&["bench", config.to_str().unwrap(), "--no-progress"]);
        assert!(
            stderr.contains(key) && stderr.contains("bad.toml"),
            "{key}: {stderr}"
        );
    }
    let config = dir.path().join("sim.toml");
    std::fs::write(&config, SIMULATED).unwrap();
    let missing = failure(&[
        "bench",
        config.to_str().unwrap(),
        "--simulate",
        "no-such-profile.json",
    ]);
    assert!(missing.contains("no-such-profile.json"), "{missing}");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"response_tokens\": \"many\"}").unwrap();
    let bad = failure(&[
        "bench",
        config.to_str().unwrap(),
        "--simulate",
        garbage.to_str().unwrap(),
    ]);
    assert!(
        bad.contains("garbage.json") && bad.contains("response_tokens"),
        "{bad}"
    );
}

#[test]
fn a_bench_that_outgrows_its_activity_window_reads_every_span_back_from_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sim.toml");
    // Five spans in memory: the run makes dozens, so the window drops most of them.
    std::fs::write(
        &config,
        format!("{SIMULATED}\n[telemetry]\nactivity_window = 5\n"),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = grlhf(&[
        "bench",
        config.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--no-sweep",
        "--no-scale",
        "--no-progress",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bench: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("bench.json")).unwrap()).unwrap();
    // Every trained group's latency, though memory kept 5 group events.
    assert_eq!(bench["baseline"]["latency_s"]["count"], 6 * 4);
    let trace: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("trace.json")).unwrap()).unwrap();
    let spans = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .count();
    assert!(spans > 6 * 3, "{spans} spans in the timeline");
}
