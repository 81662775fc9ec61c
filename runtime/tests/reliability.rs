//! Checkpoints, resume, supervision and injected faults, end to end on tiny world models (CPU):
//! a run killed at a random point resumes losing and duplicating no prompt; a resumed sync run
//! reproduces the uninterrupted one's losses; killed generators and judges are restarted and the
//! run finishes; a restart storm, NaN losses and checkpoint faults do what docs/reliability.md
//! says.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use grlhf::run::{resume, run, RunOutcome};
use grlhf::run_config::RunConfig;
use grlhf_actors::checkpoint;
use grlhf_actors::ledger::PromptState;
use grlhf_actors::registry::Registry;
use serde_json::Value;

/// A tiny policy-rl config; `extra` is appended (tables such as `[faults]`).
fn config_text(run_dir: &Path, mode: &str, steps: u64, extra: &str) -> String {
    format!(
        r#"
mode = "{mode}"
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

[learner.grpo]
kl_beta = 0.0

{extra}
"#,
        run_dir.display()
    )
}

fn parse(text: &str) -> RunConfig {
    RunConfig::from_toml(text, Path::new("reliability.toml")).unwrap()
}

fn run_text(text: &str) -> anyhow::Result<RunOutcome> {
    run(
        parse(text),
        Path::new("reliability.toml"),
        Registry::with_builtins(),
        false,
    )
}

fn resume_text(text: &str, run_dir: &Path) -> anyhow::Result<RunOutcome> {
    resume(
        parse(text),
        Path::new("reliability.toml"),
        Registry::with_builtins(),
        false,
        run_dir,
    )
}

fn summary(run_dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap()).unwrap()
}

fn metric_steps(run_dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// The ledger equation, no violations, and every uid the source issued accounted for.
fn check_nothing_lost(run_dir: &Path, steps: u64, batch_groups: u64) {
    let s = summary(run_dir);
    assert_eq!(s["ledger_balanced"], true, "{s}");
    assert_eq!(
        s["ledger_violations"],
        Value::Array(vec![]),
        "trained twice?"
    );
    assert_eq!(s["learner_steps"], steps);
    let skipped = s["prompts_dropped"]["skipped_step"].as_u64().unwrap_or(0);
    assert_eq!(
        s["prompts_trained"].as_u64().unwrap() + skipped,
        steps * batch_groups + skipped,
        "every step trains exactly B prompts, each once"
    );
    // The final checkpoint's ledger holds every uid below the source's next uid: none lost.
    let (_, state, _) = checkpoint::latest_valid(&run_dir.join("checkpoints")).unwrap();
    assert_eq!(state.version, steps);
    let uids: Vec<u64> = state.ledger.iter().map(|(u, _)| *u).collect();
    assert_eq!(uids, (0..state.source.next_uid).collect::<Vec<_>>());
    let trained = state
        .ledger
        .iter()
        .filter(|(_, s)| matches!(s, PromptState::Trained))
        .count() as u64;
    assert_eq!(trained, steps * batch_groups);
}

#[test]
fn a_run_killed_at_a_random_point_resumes_losing_and_duplicating_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let steps = 60;
    let text = config_text(
        &run_dir,
        "async",
        steps,
        "[checkpoint]\nevery = 4\nkeep_last = 2\n",
    );
    let path = tmp.path().join("async.toml");
    std::fs::write(&path, &text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_grlhf"))
        .args(["run", path.to_str().unwrap(), "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first checkpoint, then kill at a random point after it.
    let started = Instant::now();
    while !checkpoint::step_dir(&run_dir.join("checkpoints"), 4).exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A random step between the first checkpoint and the end, plus a random fraction of a
    // step: counted in logged steps, not seconds, so a fast machine cannot finish the run
    // before the kill.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let kill_after = 5 + nanos % (steps - 15);
    let logged = || {
        std::fs::read_to_string(run_dir.join("metrics.jsonl"))
            .map_or(0, |t| t.lines().count() as u64)
    };
    while logged() < kill_after {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(started.elapsed() < Duration::from_secs(300), "too slow");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_micros(nanos % 20_000));
    eprintln!("killing after step {kill_after}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before the kill; lengthen it"
    );
    child.kill().unwrap(); // SIGKILL: no clean-up of any kind
    child.wait().unwrap();
    let (_, at_kill, _) = checkpoint::latest_valid(&run_dir.join("checkpoints")).unwrap();
    assert!(at_kill.version < steps);

    let out = Command::new(env!("CARGO_BIN_EXE_grlhf"))
        .args(["run", path.to_str().unwrap(), "--no-progress", "--resume"])
        .arg(&run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed from"));
    check_nothing_lost(&run_dir, steps, 4);
    assert_eq!(metric_steps(&run_dir), (0..steps).collect::<Vec<_>>());
    let s = summary(&run_dir);
    assert!(s["reliability"]["resumed_from"]
        .as_str()
        .unwrap()
        .ends_with(&format!("step-{:06}", at_kill.version)));
    assert_eq!(
        s["reliability"]["prompts_reissued"].as_u64().unwrap(),
        at_kill.requeue.len() as u64
    );
}

#[test]
fn a_resumed_sync_run_reproduces_the_uninterrupted_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let straight_dir = tmp.path().join("straight");
    let extra = "[checkpoint]\nevery = 3\nkeep_last = 3\n";
    // One generator: with two, which one samples a prompt (and so its random stream) depends
    // on timing.
    let text = |dir: &Path| config_text(dir, "sync", 6, extra).replace("count = 2", "count = 1");
    let straight = run_text(&text(&straight_dir)).unwrap();
    // Another run directory that holds only the straight run's step-3 checkpoint.
    let resumed_dir = tmp.path().join("resumed");
    let from = checkpoint::step_dir(&straight_dir.join("checkpoints"), 3);
    let to = checkpoint::step_dir(&resumed_dir.join("checkpoints"), 3);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    let resumed = resume_text(&text(&resumed_dir), &resumed_dir).unwrap();
    // Steps 0-2 come from the checkpoint's record (this run directory had no metrics.jsonl).
    assert_eq!(resumed.steps.len(), 6);
    assert_eq!(resumed.steps[2].loss, straight.steps[2].loss);
    for (a, b) in straight.steps[3..].iter().zip(&resumed.steps[3..]) {
        assert_eq!(a.step, b.step);
        assert_eq!(
            a.reward_mean, b.reward_mean,
            "step {}: other samples",
            a.step
        );
        assert!(
            (a.loss - b.loss).abs() <= 1e-5 * a.loss.abs().max(1e-3),
            "step {}: loss {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
        assert!((a.grad_norm - b.grad_norm).abs() <= 1e-4 * a.grad_norm.max(1e-3));
    }
    // (A step whose groups all got equal rewards trains nothing; most do train.)
    assert!(
        resumed.steps[3..]
            .iter()
            .filter(|s| s.grad_norm > 0.1)
            .count()
            >= 2,
        "the compared steps trained nothing"
    );
    // The final weights agree too.
    let weights = |dir: &Path| {
        let named = tch::Tensor::read_safetensors(
            checkpoint::step_dir(&dir.join("checkpoints"), 6).join(checkpoint::WEIGHTS),
        )
        .unwrap();
        let mut named = named;
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    };
    let (a, b) = (weights(&straight_dir), weights(&resumed_dir));
    assert_eq!(a.len(), b.len());
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other);
        let gap = (x - y).abs().max().double_value(&[]);
        assert!(gap < 1e-5, "{name}: {gap}");
    }
}

#[test]
fn killed_generators_and_judges_are_restarted_and_the_run_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let extra = "[faults]\nkill_every_s = 0.3\nseed = 5\n\n[supervision]\nmax_restarts = 1000\n";
    let outcome = run_text(&config_text(&run_dir, "async", 12, extra)).unwrap();
    let r = &outcome.summary.reliability;
    let kills: u64 = r.faults_injected.values().sum();
    let restarts: u64 = r.restarts.values().sum();
    eprintln!("faults {:?}, restarts {:?}", r.faults_injected, r.restarts);
    assert!(
        r.faults_injected
            .get("kill_generator")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{:?}",
        r.faults_injected
    );
    assert!(
        r.restarts.keys().any(|k| k.starts_with("generator")),
        "{:?}",
        r.restarts
    );
    assert!(restarts >= 1 && restarts <= kills);
    // Failures while the run drains are recorded but not restarted.
    assert!(r.actor_failures.len() as u64 >= restarts);
    assert!(r.prompts_reissued >= 1, "a generator fails holding prompts");
    assert!(r.aborted.is_none());
    check_nothing_lost(&run_dir, 12, 4);
}

#[test]
fn a_restart_storm_stops_the_run_with_a_clear_error_and_a_final_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let extra = "[faults]\nkill_every_s = 0.05\n\n[supervision]\nmax_restarts = 2\nwindow_s = 60\n";
    let err = run_text(&config_text(&run_dir, "async", 200, extra))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("restart storm: 3 actor failures within 60 s"),
        "{err}"
    );
    assert!(
        err.contains("the final checkpoint is") && err.contains("--resume"),
        "{err}"
    );
    let s = summary(&run_dir);
    assert!(s["reliability"]["aborted"]
        .as_str()
        .unwrap()
        .contains("restart storm"));
    let (_, state, _) = checkpoint::latest_valid(&run_dir.join("checkpoints")).unwrap();
    assert_eq!(Some(state.version), s["learner_steps"].as_u64());
    assert_eq!(s["ledger_balanced"], true);
}

#[test]
fn a_nan_loss_skips_the_step_and_too_many_in_a_row_stop_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let outcome = run_text(&config_text(
        &one,
        "sync",
        5,
        "[faults]\nnan_loss_steps = [2]\n",
    ))
    .unwrap();
    let s = &outcome.summary;
    assert_eq!(s.learner_steps, 5);
    assert_eq!(s.reliability.skipped_steps, 1);
    assert_eq!(s.reliability.faults_injected["nan_loss"], 1);
    assert_eq!(s.prompts_dropped["skipped_step"], 4);
    assert!(outcome.steps.iter().all(|st| st.loss.is_finite()));
    check_nothing_lost(&one, 5, 4);

    let many = tmp.path().join("many");
    let extra = "[faults]\nnan_loss_steps = [1, 2, 3]\n";
    let err = run_text(&config_text(&many, "sync", 5, extra))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 learner steps in a row were skipped (learner.max_skipped_in_a_row = 3)"),
        "{err}"
    );
    let (_, state, _) = checkpoint::latest_valid(&many.join("checkpoints")).unwrap();
    assert_eq!((state.version, state.skipped_steps), (1, 3));
}

#[test]
fn checkpoint_faults_failed_writes_go_on_and_a_damaged_newest_is_passed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let extra = "[checkpoint]\nevery = 1\nkeep_last = 10\n\n[faults]\nfail_checkpoint_steps = [2]\ncorrupt_checkpoint_steps = [4]\n\n[evaluator]\nevery = 2\nmetric = \"reference_overlap\"\nprompts_per_family = 1\nmax_new_tokens = 4\n";
    let outcome = run_text(&config_text(&run_dir, "sync", 4, extra)).unwrap();
    let r = &outcome.summary.reliability;
    assert_eq!(
        r.checkpoint_failures.len(),
        1,
        "{:?}",
        r.checkpoint_failures
    );
    assert!(r.checkpoint_failures[0].contains("step 2"));
    assert_eq!(r.checkpoints_written, 3);
    let versions: Vec<u64> = checkpoint::list(&run_dir.join("checkpoints"))
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(versions, vec![4, 3, 1]);
    // Resume to step 6: the damaged step-4 checkpoint is detected and step 3 used.
    let resumed = resume_text(&config_text(&run_dir, "sync", 6, extra), &run_dir).unwrap();
    let r = &resumed.summary.reliability;
    assert!(r.resumed_from.as_ref().unwrap().ends_with("step-000003"));
    assert_eq!(r.damaged_checkpoints_skipped.len(), 1);
    assert!(r.damaged_checkpoints_skipped[0].contains("checksum mismatch"));
    assert_eq!(metric_steps(&run_dir), (0..6).collect::<Vec<_>>());
    // The evaluator starts from the checkpoint's weights and version, then every 2nd and the last.
    let versions: Vec<u64> = resumed.evals.iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![3, 4, 6]);
    assert!(run_dir.join("metrics.before-resume-3.jsonl").exists());
}

#[test]
fn bad_resumes_are_refused_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let err = resume_text(&config_text(&run_dir, "sync", 2, ""), &run_dir)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume: no checkpoint under"), "{err}");
    run_text(&config_text(&run_dir, "sync", 2, "")).unwrap();
    let err = resume_text(&config_text(&run_dir, "sync", 2, ""), &run_dir)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is at step 2") && err.contains("raise steps"),
        "{err}"
    );
    let other =
        config_text(&run_dir, "sync", 4, "").replace("batch_groups = 4", "batch_groups = 3");
    let err = resume_text(&other, &run_dir)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch_groups is 3, but the checkpoint was written with 4"),
        "{err}"
    );
    // A checkpoint edited by hand (its manifest redone, so the checksums pass) whose prompt
    // order points past the prompt set: refused, not a panic.
    let root = run_dir.join("checkpoints");
    let (dir, mut state, _) = checkpoint::latest_valid(&root).unwrap();
    state.source.order[0] = 9_999;
    let scratch = checkpoint::scratch_dir(&root, state.version);
    std::fs::create_dir_all(&scratch).unwrap();
    for file in [checkpoint::WEIGHTS, checkpoint::OPTIMIZER] {
        std::fs::copy(dir.join(file), scratch.join(file)).unwrap();
    }
    checkpoint::finish(&root, &scratch, &state, 2).unwrap();
    let err = resume_text(&config_text(&run_dir, "sync", 4, ""), &run_dir)
        .map(|_| ())
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("does not fit this run's 64 prompts"), "{err}");
}

#[test]
fn a_generator_restarted_in_a_resumed_run_needs_no_pruned_checkpoint() {
    // Found by the soak run: a restarted generator reloaded the checkpoint its run had resumed
    // from, which keep_last had deleted since.
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let keep_one = "[checkpoint]\nevery = 1\nkeep_last = 1\n";
    run_text(&config_text(&run_dir, "async", 3, keep_one)).unwrap();
    let extra = format!(
        "{keep_one}\n[faults]\nkill_every_s = 0.2\nkill = [\"generator\"]\nseed = 3\n\n[supervision]\nmax_restarts = 1000\n"
    );
    let resumed = resume_text(&config_text(&run_dir, "async", 16, &extra), &run_dir).unwrap();
    let r = &resumed.summary.reliability;
    assert!(!checkpoint::step_dir(&run_dir.join("checkpoints"), 3).exists());
    assert!(
        r.restarts.values().sum::<u64>() >= 1,
        "{:?}",
        r.faults_injected
    );
    assert!(r.aborted.is_none());
    check_nothing_lost(&run_dir, 16, 4);
}
