//! `grlhf run` across processes on 127.0.0.1, with the real binary and tiny world models (CPU):
//! a head and two workers (and a generator of the head's own) train with the ledger balanced; a synchronous two-process run gives
//! the one-process run's rewards and losses; a wrong cookie, another config or an unplaced node
//! is refused within a deadline; a SIGKILLed or SIGSTOPped worker costs no prompt; a killed
//! head is resumed and its workers exit cleanly. Every wait is bounded.
//!
//! The tests take turns (a lock): each starts up to four processes, and this machine has 2
//! cores.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tiny policy-rl config with generators on `nodes`; `extra` is appended.
fn config_text(run_dir: &Path, mode: &str, steps: u64, nodes: &[&str], extra: &str) -> String {
    let count = nodes.len().max(1);
    let nodes = if nodes.is_empty() {
        String::new()
    } else {
        format!("nodes = {nodes:?}")
    };
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
count = {count}
{nodes}
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

[cluster]
join_timeout_s = 60
attach_timeout_s = 30

{extra}
"#,
        run_dir.display()
    )
}

/// `text` with its judges (`count` of them) on worker `node`.
fn judges_on(text: &str, node: &str, count: usize) -> String {
    let table = "[[judge]]\nkind = \"rule_judge\"\nrule = \"reference_overlap\"\n";
    assert!(text.contains(table));
    text.replace(
        table,
        &format!("{table}node = \"{node}\"\ncount = {count}\n"),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped (a failed assertion leaves nothing running).
struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    fn start(name: &str, args: &[&str], cookie: Option<&str>) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_grlhf"));
        command
            .args(args)
            .env_remove("GRLHF_CLUSTER_COOKIE")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cookie) = cookie {
            command.env("GRLHF_CLUSTER_COOKIE", cookie);
        }
        Proc {
            child: command.spawn().unwrap(),
            name: name.into(),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits for the exit (at most `limit`): status success, stdout, stderr.
    fn finish(mut self, limit: Duration) -> (bool, String, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (mut out, mut err) = (String::new(), String::new());
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.success(), out, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(proc: &Proc, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &proc.pid()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {}", proc.name);
}

fn head(config: &Path, port: u16, extra: &[&str]) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "run",
        config.to_str().unwrap(),
        "--no-progress",
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    Proc::start("head", &args, None)
}

/// `grlhf run CONFIG --join HEAD --node NODE`.
fn join_args<'a>(config: &'a str, head: &'a str, node: &'a str) -> [&'a str; 6] {
    ["run", config, "--join", head, "--node", node]
}

fn worker(config: &Path, port: u16, node: &str) -> Proc {
    let join = format!("127.0.0.1:{port}");
    Proc::start(
        node,
        &join_args(config.to_str().unwrap(), &join, node),
        None,
    )
}

fn summary(run_dir: &Path) -> Value {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn steps_logged(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn wait_for_steps(run_dir: &Path, steps: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while steps_logged(run_dir) < steps {
        assert!(
            Instant::now() < deadline,
            "{steps} steps not logged within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The run's ledger: balanced, and nothing dropped but for the counted reasons a one-process
/// run has too (stale under η, groups without reward variance).
fn assert_no_prompt_lost(s: &Value, steps: u64) {
    assert_eq!(s["learner_steps"], steps, "{s}");
    assert_eq!(s["ledger_balanced"], true, "{s}");
    assert_eq!(s["prompts_trained"], steps * 4, "{s}");
    for (reason, _) in s["prompts_dropped"].as_object().unwrap() {
        assert!(
            reason == "stale" || reason == "zero_variance",
            "prompts dropped for {reason}: {s}"
        );
    }
    assert!(s["max_staleness_seen"].as_u64().unwrap() <= 2, "{s}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_head_and_two_workers_train_with_the_ledger_balanced_and_no_prompt_lost() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let config = write(
        dir.path(),
        "c.toml",
        &config_text(&run_dir, "async", 12, &["w1", "w2", "head"], ""),
    );
    let port = free_port();
    let head = head(&config, port, &[]);
    let (w1, w2) = (worker(&config, port, "w1"), worker(&config, port, "w2"));
    let (ok, out, err) = head.finish(Duration::from_secs(240));
    assert!(ok, "head failed:\n{out}\n{err}");
    let s = summary(&run_dir);
    assert_no_prompt_lost(&s, 12);
    // Weights went over TCP, and the summary says why (no NCCL transport, no GPU here).
    assert_eq!(s["weights_transport"]["chosen"], "tcp", "{s}");
    assert_eq!(
        s["remote_roles"]["generator-0"]["weights_via"], "tcp",
        "{s}"
    );
    assert!(s["weights_transport"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("auto:"));
    // Both remote generators and the head's own produced work.
    for g in ["generator-0", "generator-1", "generator-2"] {
        assert!(s["busy_ratio"][g].as_f64().unwrap() > 0.0, "{g} idle: {s}");
    }
    // Per node: the head runs the learner and generator-2; each worker its generator.
    let nodes = s["nodes"].as_object().unwrap();
    assert_eq!(
        nodes.keys().collect::<Vec<_>>(),
        ["head", "w1", "w2"],
        "{s}"
    );
    assert_eq!(nodes["w1"]["actors"], serde_json::json!(["generator-0"]));
    assert_eq!(nodes["w2"]["actors"], serde_json::json!(["generator-1"]));
    let head_actors = nodes["head"]["actors"].as_array().unwrap();
    assert!(head_actors.contains(&"learner".into()) && head_actors.contains(&"generator-2".into()));
    // The workers heard the head's session end and exited cleanly.
    for (w, name) in [(w1, "w1"), (w2, "w2")] {
        let (ok, out, err) = w.finish(Duration::from_secs(30));
        assert!(ok, "{name} failed:\n{out}\n{err}");
        assert!(out.contains("hosting generator-"), "{out}");
        assert!(out.contains("the head's session ended"), "{out}");
    }
}

#[test]
fn a_synchronous_two_process_run_matches_the_one_process_run() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let (local_dir, remote_dir) = (dir.path().join("local"), dir.path().join("remote"));
    let local = write(
        dir.path(),
        "local.toml",
        &config_text(&local_dir, "sync", 4, &[], ""),
    );
    // One generator, so which generator takes a prompt (and so its seed) cannot differ
    // between the runs; here it and the judge run on the worker.
    let remote = write(
        dir.path(),
        "remote.toml",
        &judges_on(&config_text(&remote_dir, "sync", 4, &["w1"], ""), "w1", 1),
    );
    let (ok, out, err) = Proc::start(
        "local",
        &["run", local.to_str().unwrap(), "--no-progress"],
        None,
    )
    .finish(Duration::from_secs(240));
    assert!(ok, "{out}\n{err}");
    let port = free_port();
    let head = head(&remote, port, &[]);
    let w1 = worker(&remote, port, "w1");
    let (ok, out, err) = head.finish(Duration::from_secs(240));
    assert!(ok, "{out}\n{err}");
    w1.finish(Duration::from_secs(30));
    let lines = |d: &Path| -> Vec<Value> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (lines(&local_dir), lines(&remote_dir));
    assert_eq!(a.len(), 4);
    assert_eq!(b.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        for key in ["reward_mean", "loss", "kl", "grad_norm"] {
            let (x, y) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-5, "{key}: one process {x}, two {y}");
        }
        assert_eq!(x["response_tokens"], y["response_tokens"]);
    }
}

#[test]
fn a_wrong_cookie_another_config_or_an_unplaced_node_is_refused_within_a_deadline() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let text = config_text(
        &run_dir,
        "async",
        50,
        &["w1"],
        "[supervision]\nmax_restarts = 2\n",
    );
    let config = write(dir.path(), "c.toml", &text);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let join = listen.clone();
    let head = Proc::start(
        "head",
        &[
            "run",
            config.to_str().unwrap(),
            "--no-progress",
            "--listen",
            &listen,
        ],
        Some("cookie-a"),
    );
    std::thread::sleep(Duration::from_millis(500));

    // A worker with another cookie never gets a session.
    let started = Instant::now();
    let (ok, _, err) = Proc::start(
        "w1",
        &join_args(config.to_str().unwrap(), &join, "w1"),
        Some("cookie-b"),
    )
    .finish(Duration::from_secs(20));
    assert!(!ok);
    assert!(err.contains("GRLHF_CLUSTER_COOKIE"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A node the config places nothing on is refused before it connects.
    let (ok, _, err) = Proc::start(
        "w9",
        &join_args(config.to_str().unwrap(), &join, "w9"),
        Some("cookie-a"),
    )
    .finish(Duration::from_secs(20));
    assert!(!ok);
    assert!(
        err.contains("places no generator, judge or evaluator there"),
        "{err}"
    );

    // A worker started from a different config is refused at attach; the head names the field
    // and stops (its generator cannot run).
    let other = write(dir.path(), "other.toml", &format!("{text}\n# edited\n"));
    let started = Instant::now();
    let _w1 = Proc::start(
        "w1",
        &join_args(other.to_str().unwrap(), &join, "w1"),
        Some("cookie-a"),
    );
    let (ok, out, err) = head.finish(Duration::from_secs(60));
    assert!(!ok, "{out}");
    assert!(err.contains("`config_hash` differs"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // A non-loopback head needs a cookie.
    let (ok, _, err) = Proc::start(
        "head",
        &["run", config.to_str().unwrap(), "--listen", "0.0.0.0:0"],
        None,
    )
    .finish(Duration::from_secs(20));
    assert!(!ok);
    assert!(err.contains("GRLHF_CLUSTER_COOKIE"), "{err}");

    // NCCL asked for with the learner on the CPU: the head stops at once, naming the setting.
    let nccl = write(
        dir.path(),
        "nccl.toml",
        &config_text(
            &dir.path().join("n"),
            "async",
            4,
            &["w1"],
            "[weights]\ntransport = \"nccl\"\n",
        ),
    );
    let (ok, _, err) = Proc::start(
        "head",
        &["run", nccl.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        None,
    )
    .finish(Duration::from_secs(20));
    assert!(!ok);
    assert!(err.contains("weights.transport = \"nccl\""), "{err}");
    assert!(err.contains("not a CUDA device"), "{err}");
}

#[test]
fn a_killed_worker_is_detected_at_once_and_frozen_ones_by_the_heartbeat_losing_no_prompt() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let steps = 80;
    let config = write(
        dir.path(),
        "c.toml",
        &config_text(&run_dir, "async", steps, &["w1", "w2"], ""),
    );
    let port = free_port();
    let head = head(&config, port, &[]);
    let w1 = worker(&config, port, "w1");
    let w2 = worker(&config, port, "w2");
    wait_for_steps(&run_dir, 3, Duration::from_secs(120));

    // SIGKILL w1, then start it again: the head restarts generator-0 on the new process.
    drop(w1);
    let w1 = worker(&config, port, "w1");
    wait_for_steps(
        &run_dir,
        steps_logged(&run_dir) + 3,
        Duration::from_secs(120),
    );

    // SIGSTOP both workers past the heartbeat's silence (6 s): the run has no generator left
    // and waits; once they go on, the restarted generator finds the same process again.
    let at_freeze = steps_logged(&run_dir);
    assert!(
        at_freeze < steps as usize,
        "the run ended before the faults; lengthen it"
    );
    signal(&w1, "-STOP");
    signal(&w2, "-STOP");
    std::thread::sleep(Duration::from_secs(8));
    signal(&w1, "-CONT");
    signal(&w2, "-CONT");

    let (ok, out, err) = head.finish(Duration::from_secs(300));
    assert!(ok, "{out}\n{err}");
    let s = summary(&run_dir);
    assert_no_prompt_lost(&s, steps);
    let failures: Vec<String> = s["reliability"]["actor_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let failed = |generator: &str, cause: &str| {
        failures
            .iter()
            .any(|f| f.starts_with(generator) && f.contains(cause))
    };
    assert!(
        failed("generator-0", "session closed") || failed("generator-0", "unreachable"),
        "the kill was seen as generator-0's failure: {failures:?}"
    );
    // A generator frozen mid-batch is caught by the heartbeat. (One that was idle, waiting
    // for admissible prompts, holds nothing; its freeze is noticed at its next batch, if it
    // still lasts then.)
    assert!(
        failed("generator-0", "no heartbeat answered")
            || failed("generator-1", "no heartbeat answered"),
        "a freeze was caught by the heartbeat: {failures:?}"
    );
    assert!(
        s["reliability"]["prompts_reissued"].as_u64().unwrap() >= 1,
        "{s}"
    );
    for w in [w1, w2] {
        let (ok, out, err) = w.finish(Duration::from_secs(30));
        assert!(ok, "{out}\n{err}");
    }
}

#[test]
fn a_killed_head_is_resumed_and_its_workers_exit_cleanly() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let steps = 60;
    let config = write(
        dir.path(),
        "c.toml",
        &config_text(
            &run_dir,
            "async",
            steps,
            &["w1"],
            "[checkpoint]\nevery = 2\n",
        ),
    );
    let port = free_port();
    let first = head(&config, port, &[]);
    let w1 = worker(&config, port, "w1");
    wait_for_steps(&run_dir, 5, Duration::from_secs(120));
    drop(first); // SIGKILL
    let (ok, out, err) = w1.finish(Duration::from_secs(30));
    assert!(
        ok,
        "the worker exits cleanly when the head dies:\n{out}\n{err}"
    );
    assert!(out.contains("the head's session ended"), "{out}");

    let port = free_port();
    let resumed = head(&config, port, &["--resume", run_dir.to_str().unwrap()]);
    let w1 = worker(&config, port, "w1");
    let (ok, out, err) = resumed.finish(Duration::from_secs(300));
    assert!(ok, "{out}\n{err}");
    let s = summary(&run_dir);
    assert!(s["reliability"]["resumed_from"].is_string(), "{s}");
    assert_eq!(s["learner_steps"], steps);
    assert_eq!(s["ledger_balanced"], true, "{s}");
    w1.finish(Duration::from_secs(30));
}

#[test]
fn grlhf_launch_starts_a_head_and_a_worker_per_node_and_ends_with_the_heads_status() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // Two generators on w1, one on w2, the judge alone on w3.
    let text = config_text(&run_dir, "async", 6, &["w1", "w2", "w1"], "");
    let config = write(dir.path(), "c.toml", &judges_on(&text, "w3", 1));
    let (ok, out, err) = Proc::start(
        "launch",
        &["launch", config.to_str().unwrap(), "--no-progress"],
        None,
    )
    .finish(Duration::from_secs(240));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("3 worker(s): w1, w2, w3"), "{out}");
    assert_no_prompt_lost(&summary(&run_dir), 6);

    // A config with nothing remote is refused, saying what to run instead.
    let local = write(
        dir.path(),
        "local.toml",
        &config_text(&dir.path().join("l"), "async", 6, &[], ""),
    );
    let (ok, _, err) = Proc::start("launch", &["launch", local.to_str().unwrap()], None)
        .finish(Duration::from_secs(30));
    assert!(!ok);
    assert!(err.contains("nothing to launch"), "{err}");
}

#[test]
fn judges_and_the_evaluator_on_workers_and_judges_surviving_their_worker_being_killed() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let steps = 40;
    // The evaluator runs on w1 beside a generator; both judges on w2.
    let evaluator = "[evaluator]\nevery = 10\nmetric = \"reference_overlap\"\nprompts_per_family = 1\nmax_new_tokens = 6\nnode = \"w1\"\n";
    let text = config_text(&run_dir, "async", steps, &["head", "w1"], evaluator);
    let config = write(dir.path(), "c.toml", &judges_on(&text, "w2", 2));
    let port = free_port();
    let head = head(&config, port, &[]);
    let w1 = worker(&config, port, "w1");
    let w2 = worker(&config, port, "w2");
    wait_for_steps(&run_dir, 3, Duration::from_secs(120));
    drop(w2); // SIGKILL: both judges' worker
    let w2 = worker(&config, port, "w2");
    let (ok, out, err) = head.finish(Duration::from_secs(300));
    assert!(ok, "{out}\n{err}");
    let s = summary(&run_dir);
    assert_no_prompt_lost(&s, steps);
    let failures = s["reliability"]["actor_failures"].to_string();
    assert!(
        failures.contains("judge-0-"),
        "the kill failed a judge: {failures}"
    );
    // Both judges scored on the worker, and the head accounted for them.
    for judge in ["judge-0-0", "judge-0-1"] {
        let remote = &s["remote_roles"][judge];
        assert_eq!(remote["node"], "w2", "{s}");
        assert!(remote["calls"].as_u64().unwrap() > 0, "{judge} idle: {s}");
    }
    // The evaluator evaluated on w1: versions 0, 10, 20, 30, 40.
    assert_eq!(s["remote_roles"]["evaluator"]["node"], "w1", "{s}");
    let evals = std::fs::read_to_string(run_dir.join("eval.jsonl")).unwrap();
    assert_eq!(evals.lines().count(), 5, "{evals}");
    for w in [w1, w2] {
        let (ok, out, err) = w.finish(Duration::from_secs(30));
        assert!(ok, "{out}\n{err}");
        assert!(out.contains("hosting"), "{out}");
    }
}

/// A CA and, per node, a certificate for 127.0.0.1 signed by it, as PEM files in `dir`
/// (`ca.pem`, `NODE.pem`, `NODE.key`).
fn tls_files(dir: &Path, nodes: &[&str]) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for node in nodes {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{node}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{node}.key")), key.serialize_pem()).unwrap();
    }
}

/// A process of a TLS run: its own certificate through the environment (the config text, and
/// so its hash, is the same for every node).
fn tls_proc(name: &str, args: &[&str], pki: &Path, node: &str) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_grlhf"));
    command
        .args(args)
        .env_remove("GRLHF_CLUSTER_COOKIE")
        .env("RUST_LOG", "warn")
        .env("NODE_CERT", pki.join(format!("{node}.pem")))
        .env("NODE_KEY", pki.join(format!("{node}.key")))
        .env("CLUSTER_CA", pki.join("ca.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Proc {
        child: command.spawn().unwrap(),
        name: name.into(),
    }
}

#[test]
fn a_tls_cluster_trains_and_refuses_a_worker_without_tls_or_with_another_ca() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let (pki, other_pki) = (dir.path().join("pki"), dir.path().join("other"));
    tls_files(&pki, &["head", "w1"]);
    tls_files(&other_pki, &["w1"]);
    let run_dir = dir.path().join("run");
    let tls =
        "tls_cert = \"env:NODE_CERT\"\ntls_key = \"env:NODE_KEY\"\ntls_ca = \"env:CLUSTER_CA\"\n";
    let text = config_text(&run_dir, "async", 8, &["w1"], "")
        .replace("[cluster]\n", &format!("[cluster]\n{tls}"));
    let config = write(dir.path(), "c.toml", &text);
    let c = config.to_str().unwrap();
    let port = free_port();
    let (listen, short) = (format!("127.0.0.1:{port}"), "join_timeout_s = 60");
    assert!(text.contains(short));
    let head = tls_proc(
        "head",
        &["run", c, "--no-progress", "--listen", &listen],
        &pki,
        "head",
    );
    std::thread::sleep(Duration::from_millis(500));

    // TLS files that are not there: refused before joining, naming the file.
    let (ok, _, err) = tls_proc("w1", &join_args(c, &listen, "w1"), &pki, "nobody")
        .finish(Duration::from_secs(30));
    assert!(!ok);
    assert!(err.contains("nobody.pem"), "{err}");

    // A worker without TLS never gets a session.
    let plain = write(
        dir.path(),
        "plain.toml",
        &config_text(&run_dir, "async", 8, &["w1"], "").replace(short, "join_timeout_s = 10"),
    );
    let p = plain.to_str().unwrap();
    let started = Instant::now();
    let (ok, _, err) =
        Proc::start("w1", &join_args(p, &listen, "w1"), None).finish(Duration::from_secs(60));
    assert!(!ok);
    assert!(err.contains("TLS"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // A certificate from another CA: the head refuses the session.
    let started = Instant::now();
    let (ok, _, err) = tls_proc("w1", &join_args(c, &listen, "w1"), &other_pki, "w1")
        .finish(Duration::from_secs(90));
    assert!(!ok);
    assert!(err.contains("TLS"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(70));

    // The right certificate: the run trains.
    let w1 = tls_proc("w1", &join_args(c, &listen, "w1"), &pki, "w1");
    let (ok, out, err) = head.finish(Duration::from_secs(240));
    assert!(ok, "{out}\n{err}");
    assert_no_prompt_lost(&summary(&run_dir), 8);
    let (ok, out, err) = w1.finish(Duration::from_secs(30));
    assert!(ok, "{out}\n{err}");
}

#[test]
fn a_head_listening_on_every_interface_serves_weights_to_its_workers() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let config = write(
        dir.path(),
        "c.toml",
        &config_text(&run_dir, "async", 4, &["w1"], ""),
    );
    let c = config.to_str().unwrap();
    let port = free_port();
    // 0.0.0.0 is where the head listens, not an address to dial: the worker reaches the weight
    // stream at the address it joined.
    let (listen, join) = (format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}"));
    let head = Proc::start(
        "head",
        &["run", c, "--no-progress", "--listen", &listen],
        Some("a-cookie"),
    );
    let w1 = Proc::start("w1", &join_args(c, &join, "w1"), Some("a-cookie"));
    let (ok, out, err) = head.finish(Duration::from_secs(240));
    assert!(ok, "{out}\n{err}");
    let s = summary(&run_dir);
    assert_no_prompt_lost(&s, 4);
    assert!(
        s["remote_roles"]["generator-0"]["weight_versions"]
            .as_u64()
            .unwrap()
            >= 1,
        "{s}"
    );
    w1.finish(Duration::from_secs(30));
}

#[test]
fn an_evaluator_whose_worker_never_comes_skips_its_evaluations_and_the_run_ends() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    // Generators in the head; the evaluator on a node no worker ever serves.
    let extra = "[evaluator]\nevery = 2\nmetric = \"reference_overlap\"\nprompts_per_family = 1\nmax_new_tokens = 6\nnode = \"nobody\"\n";
    let text = config_text(&run_dir, "async", 6, &[], extra)
        .replace("attach_timeout_s = 30", "attach_timeout_s = 2");
    let config = write(dir.path(), "c.toml", &text);
    let c = config.to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (ok, out, err) = Proc::start(
        "head",
        &["run", c, "--no-progress", "--listen", &listen],
        None,
    )
    .finish(Duration::from_secs(240));
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("evaluation of v0 skipped"), "{err}");
    let s = summary(&run_dir);
    assert_no_prompt_lost(&s, 6);
    let evals = std::fs::read_to_string(run_dir.join("eval.jsonl")).unwrap_or_default();
    assert_eq!(evals.lines().count(), 0, "{evals}");
    // Nothing waited for the evaluations that will not come (the drain's 600 s).
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn grlhf_bench_measures_a_simulated_topology_across_worker_processes() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/bench-cluster.toml");
    let args = [
        "bench",
        config,
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "8",
        "--no-sweep",
        "--no-scale",
        "--no-progress",
    ];
    let (ok, stdout, err) = Proc::start("bench", &args, None).finish(Duration::from_secs(240));
    assert!(ok, "{stdout}\n{err}");
    let bench: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let baseline = &bench["baseline"];
    assert_eq!(baseline["ledger_balanced"], true);
    assert_eq!(baseline["steps"], 8);
    // bench-cluster.toml: generators 0, 1 on w1; generators 2, 3 and both judges on w2.
    let nodes = baseline["nodes"].as_object().unwrap();
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["head", "w1", "w2"]);
    assert_eq!(
        nodes["w1"]["actors"],
        serde_json::json!(["generator-0", "generator-1"])
    );
    assert_eq!(nodes["w2"]["actors"].as_array().unwrap().len(), 4);
    for load in nodes.values() {
        let busy = load["busy_mean"].as_f64().unwrap();
        assert!(busy > 0.0 && busy <= 1.0, "{load}");
    }
    // Every remote role was called across the process boundary, and every generator's weight
    // stream carried the simulated learner's 4 MiB tensor each version.
    let roles = baseline["remote_roles"].as_object().unwrap();
    assert_eq!(roles.len(), 6, "{roles:?}");
    for (role, r) in roles {
        assert!(r["calls"].as_u64().unwrap() > 0, "{role}: {r}");
        if role.starts_with("generator") {
            let versions = r["weight_versions"].as_u64().unwrap();
            assert!(versions >= 1, "{role}: {r}");
            assert!(r["weight_bytes"].as_u64().unwrap() >= versions * 4 * 1024 * 1024);
        }
    }
    // The same config in one process, for comparison.
    let one = &bench["one_process"];
    assert_eq!(one["report"]["ledger_balanced"], true);
    assert!(
        one["report"]["nodes"].is_null(),
        "one process has no per-node figures"
    );
    assert!(one["processes_over_one"].as_f64().unwrap() > 0.0);
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(md.contains("## Across processes"), "{md}");
    // Both sides read one file; the workers logged to the run directory and exited cleanly.
    let run = out.join("runs/baseline");
    assert!(run.join("bench-config.toml").is_file());
    for node in ["w1", "w2"] {
        let log = std::fs::read_to_string(run.join(format!("worker-{node}.log"))).unwrap();
        assert!(log.contains("the head's session ended"), "{node}: {log}");
    }
}

#[test]
fn grlhf_bench_measures_a_real_run_across_processes_and_replays_it_in_the_simulator() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("run"), "async", 6, &["w1"], "");
    let config = write(dir.path(), "c.toml", &text);
    let out = dir.path().join("bench");
    let args = [
        "bench",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-sweep",
        "--no-scale",
        "--no-progress",
    ];
    let (ok, stdout, err) = Proc::start("bench", &args, None).finish(Duration::from_secs(240));
    assert!(ok, "{stdout}\n{err}");
    let bench: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    let baseline = &bench["baseline"];
    assert_eq!(baseline["simulated"], false);
    assert_eq!(baseline["ledger_balanced"], true);
    assert_eq!(
        baseline["nodes"]["w1"]["actors"],
        serde_json::json!(["generator-0"])
    );
    let generator = &baseline["remote_roles"]["generator-0"];
    assert!(generator["calls"].as_u64().unwrap() > 0, "{generator}");
    assert_eq!(generator["weights_via"], "tcp", "{generator}");
    // The real head wrote its own run directory; the fitted cost model was replayed across
    // processes too, and the one-process comparison ran.
    assert!(out.join("runs/baseline/summary.json").is_file());
    assert!(out.join("profile.json").is_file());
    assert!(bench["simulator_check"]["simulated"]["nodes"]["w1"].is_object());
    assert_eq!(bench["one_process"]["report"]["ledger_balanced"], true);
}
