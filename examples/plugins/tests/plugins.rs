//! The example crate's kinds, registered from outside grlhf, work in every place grlhf offers:
//! one run using all of them (real engines and simulated ones), the multi-turn mask and its
//! gradient, the two losses against hand-computed values, bad tables refused with the file and
//! field named, and the `kinds` listing of the crate's own binary.

use std::path::Path;
use std::sync::atomic::Ordering;

use grlhf::model_source::ModelSource;
use grlhf::run::run;
use grlhf::run_config::RunConfig;
use grlhf_actors::policy_loss::{LossInputs, PolicyLoss};
use grlhf_actors::registry::{PromptSourceContext, Registry};
use grlhf_actors::rollout_engine::{GeneratorConfig, RolloutEngine};
use grlhf_actors::rollout_workflow::RolloutWorkflow;
use grlhf_actors::simulated::CostModel;
use grlhf_actors::train_engine::{trained_mask, Sequence};
use grlhf_actors::vl_engine::VlEngine;
use grlhf_plugins_example::clarify::{environment_reply, Ask, Clarify, ClarifySettings};
use grlhf_plugins_example::curriculum::{curriculum, CurriculumSettings};
use grlhf_plugins_example::dr_grpo::DrGrpo;
use grlhf_plugins_example::rloo::Rloo;
use grlhf_plugins_example::{clarify, exact_match, rloo};
use tch::{Device, Kind, Tensor};

fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    grlhf_plugins_example::register(&mut registry);
    registry
}

/// A run with a user workflow (multi-turn), prompt source, loss and metric.
fn config_text(run_dir: &Path) -> String {
    format!(
        r#"
mode = "async"
steps = 4
seed = 3
run_dir = "{}"
max_staleness = 1
group_size = 3
batch_groups = 2

[data]
source = "family_curriculum"
[data.settings]
families = ["existence", "counting"]
per_family = 4

[model]
policy = "world:tiny"

[generator]
batch_prompts = 2
max_new_tokens = 6

[workflow]
kind = "clarify"
ask = "always"

[[judge]]
kind = "rule_judge"
rule = "reference_overlap"

[learner]
lr = 1e-3
warmup_steps = 0

[learner.loss]
kind = "rloo"

[evaluator]
every = 2
metric = "family_exact_match"
prompts_per_family = 1
max_new_tokens = 6
"#,
        run_dir.display()
    )
}

#[test]
fn a_run_with_a_user_workflow_prompt_source_loss_and_metric_trains_with_the_ledger_balanced() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new("plugins.toml");
    let config = RunConfig::from_toml(&config_text(&dir.path().join("run")), path).unwrap();
    let (turns, losses, answers) = (
        clarify::SECOND_TURNS.load(Ordering::Relaxed),
        rloo::LOSSES_COMPUTED.load(Ordering::Relaxed),
        exact_match::ANSWERS_SCORED.load(Ordering::Relaxed),
    );
    let outcome = run(config, path, registry(), false).unwrap();
    let s = &outcome.summary;
    assert_eq!(s.learner_steps, 4);
    assert!(s.ledger_balanced, "{:?}", s.ledger_violations);
    assert_eq!(
        s.prompts_admitted,
        s.prompts_trained + s.prompts_dropped.values().sum::<u64>() + s.prompts_in_flight
    );
    assert!(s.max_staleness_seen <= 1 && s.staleness_violations == 0);
    // Every kind ran: second turns were sampled, the loss computed, answers scored.
    assert!(clarify::SECOND_TURNS.load(Ordering::Relaxed) > turns);
    assert!(rloo::LOSSES_COMPUTED.load(Ordering::Relaxed) > losses);
    assert!(exact_match::ANSWERS_SCORED.load(Ordering::Relaxed) > answers);
    assert!(!outcome.evals.is_empty());
    // Trajectories are two policy turns and an environment turn: longer than one turn can be.
    for step in &outcome.steps {
        assert!(
            step.mean_response_tokens > 6.0,
            "{}",
            step.mean_response_tokens
        );
    }
}

#[test]
fn a_simulated_run_rolls_out_the_user_workflow_at_the_cost_models_price() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new("plugins.toml");
    let mut config = RunConfig::from_toml(&config_text(&dir.path().join("run")), path).unwrap();
    config.evaluator = None;
    let cost = CostModel {
        response_tokens: 5,
        generate_s_per_call: 0.002,
        generate_s_per_token: 0.0,
        judge_s_per_group: 0.001,
        judge_s_per_pair: 0.0,
        learn_s_per_step: 0.002,
        learn_s_per_token: 0.0,
        sync_s_per_subscriber: 0.0,
        weight_bytes: 1000,
    };
    let outcome = grlhf::bench::simulated_run::run_simulated(
        &config,
        path,
        &registry(),
        &cost,
        indicatif::ProgressBar::hidden(),
        None,
    )
    .unwrap();
    assert_eq!(outcome.summary.learner_steps, 4);
    assert!(outcome.summary.ledger_balanced);
    // Two simulated turns of 5 tokens around the environment's reply to a synthetic prompt
    // ("simulated question i": 3 words + 6 template tokens).
    for step in &outcome.steps {
        assert_eq!(step.mean_response_tokens, 5.0 + 9.0 + 5.0);
    }
}

#[test]
fn a_multi_turn_trajectory_trains_only_policy_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelSource::parse("model.policy", "world:tiny")
        .unwrap()
        .materialise(&dir.path().join("model"), 0)
        .unwrap();
    let mut engine = VlEngine::load(&model, Device::Cpu, Kind::Float).unwrap();
    let context = PromptSourceContext {
        config_dir: dir.path().to_path_buf(),
        system_prompt: "you answer questions about the image.".into(),
        seed: 0,
    };
    let settings = CurriculumSettings {
        families: vec!["attribute".into(), "counting".into()],
        per_family: 1,
        world_seed: None,
    };
    let prompts = curriculum(settings, context).unwrap().prompts;
    let workflow = Clarify {
        settings: ClarifySettings { ask: Ask::Always },
    };
    let config = GeneratorConfig {
        max_new_tokens: 4,
        ..GeneratorConfig::default()
    };
    let groups = workflow
        .run(
            &mut engine as &mut dyn RolloutEngine,
            &prompts,
            2,
            &config,
            11,
        )
        .unwrap();
    let mut sequences = Vec::new();
    for ((prompt_tokens, rollouts), prompt) in groups.iter().zip(&prompts) {
        for rollout in rollouts {
            let mask = rollout
                .policy_mask
                .as_ref()
                .expect("a second turn was taken");
            // Layout: the first turn, the environment's turn (exactly the template's tokens for
            // the reply), the second turn.
            let first = mask.iter().position(|m| !m).unwrap();
            let environment = mask[first..].iter().take_while(|m| !**m).count();
            let expected = RolloutEngine::user_turn_tokens(
                &engine,
                &environment_reply(prompt),
                !engine.stop_ids.contains(&rollout.tokens[first - 1]),
            )
            .unwrap();
            assert_eq!(&rollout.tokens[first..first + environment], &expected[..]);
            assert!(mask[first + environment..].iter().all(|m| *m));
            assert_eq!(rollout.policy_tokens(), rollout.tokens.len() - environment);
            sequences.push(Sequence {
                spec: prompt.clone(),
                prompt_tokens: prompt_tokens.clone(),
                response: rollout.tokens.clone(),
                behaviour: rollout.logprobs.clone(),
                policy_mask: rollout.policy_mask.clone(),
                advantage: 1.0,
                temperature: 1.0,
            });
        }
    }
    // The learner's teacher-forced pass over the whole trajectories, then its mask.
    let encoded: Vec<_> = prompts
        .iter()
        .flat_map(|p| {
            let e = || {
                engine
                    .encode(&p.system, &p.user, p.image.as_deref())
                    .unwrap()
            };
            [e(), e()]
        })
        .collect();
    let refs: Vec<_> = encoded.iter().collect();
    let responses: Vec<Vec<i64>> = sequences.iter().map(|s| s.response.clone()).collect();
    let current = engine.logprobs(&refs, &responses, 1.0).unwrap();
    let mask = trained_mask(&current.mask, &sequences);
    let logp = current.logprobs.detach().set_requires_grad(true);
    let behaviour = logp.detach();
    let advantages = Tensor::from_slice(&vec![1.0f32; sequences.len()]);
    let step_tokens = sequences.iter().map(Sequence::trained_tokens).sum();
    let loss = Rloo {
        clip_eps: 0.2,
        kl_beta: 0.0,
    }
    .loss(&LossInputs {
        logp: &logp,
        behaviour_logp: &behaviour,
        reference_logp: None,
        advantages: &advantages,
        mask: &mask,
        step_tokens,
        step_sequences: sequences.len(),
    });
    loss.loss.backward();
    let grad = logp.grad();
    for (b, s) in sequences.iter().enumerate() {
        for t in 0..s.response.len() {
            let (m, g) = (
                mask.double_value(&[b as i64, t as i64]),
                grad.double_value(&[b as i64, t as i64]),
            );
            if s.policy_mask.as_ref().unwrap()[t] {
                assert_eq!(m, 1.0, "policy token {t} of sequence {b}");
                assert!(g != 0.0, "policy token {t} of sequence {b} has no gradient");
            } else {
                assert_eq!(m, 0.0, "environment token {t} of sequence {b}");
                assert_eq!(
                    g, 0.0,
                    "environment token {t} of sequence {b} has a gradient"
                );
            }
        }
    }
}

fn t(rows: &[&[f64]]) -> Tensor {
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&x| x as f32))
        .collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-5, "{a} != {b}");
}

/// Two sequences of 3 tokens (the last of the first and the last two of the second padding),
/// advantages 2 and −1; token (0, 0) was sampled at a log-prob 0.5 below today's, so its ratio
/// e^0.5 ≈ 1.65 is clipped at 1.2 with a positive advantage: −1.2·2 = −2.4, no gradient. The
/// other tokens are on-policy: loss −A, gradient −A, divided by the normaliser.
fn hand_case() -> (Tensor, Tensor, Tensor, Tensor) {
    let logp = t(&[&[-1.0, -2.0, -0.5], &[-1.5, -1.0, 0.0]]).set_requires_grad(true);
    let behaviour = t(&[&[-1.5, -2.0, -0.5], &[-1.5, -1.0, 0.0]]);
    let mask = t(&[&[1.0, 1.0, 0.0], &[1.0, 0.0, 0.0]]);
    let advantages = Tensor::from_slice(&[2.0f32, -1.0]);
    (logp, behaviour, mask, advantages)
}

fn run_loss(loss: &dyn PolicyLoss) -> (f64, f64, Vec<f64>) {
    let (logp, behaviour, mask, advantages) = hand_case();
    let terms = loss.loss(&LossInputs {
        logp: &logp,
        behaviour_logp: &behaviour,
        reference_logp: None,
        advantages: &advantages,
        mask: &mask,
        step_tokens: 3,
        step_sequences: 2,
    });
    terms.loss.backward();
    let grad = logp.grad();
    let grads = (0..2)
        .flat_map(|b| (0..3).map(move |t| (b, t)))
        .map(|(b, t)| grad.double_value(&[b, t]))
        .collect();
    (terms.loss.double_value(&[]), terms.clip_fraction, grads)
}

#[test]
fn rloo_matches_hand_computed_advantages_loss_and_gradient() {
    let rloo = Rloo {
        clip_eps: 0.2,
        kl_beta: 0.0,
    };
    // Rewards 1, 0, 2: each minus the mean of the other two.
    let a = rloo.advantages(&[1.0, 0.0, 2.0]);
    for (got, want) in a.iter().zip([0.0, -1.5, 1.5]) {
        close(*got as f64, want);
    }
    assert_eq!(rloo.advantages(&[3.0]), vec![0.0]);
    // Token mean over the step's 3 trained tokens: (−2.4 − 2 + 1) / 3.
    let (loss, clipped, grads) = run_loss(&rloo);
    close(loss, -3.4 / 3.0);
    close(clipped, 1.0 / 3.0);
    for (got, want) in grads
        .iter()
        .zip([0.0, -2.0 / 3.0, 0.0, 1.0 / 3.0, 0.0, 0.0])
    {
        close(*got, want);
    }
}

#[test]
fn dr_grpo_matches_hand_computed_advantages_loss_and_gradient() {
    let dr = DrGrpo {
        clip_eps: 0.2,
        clip_eps_high: 0.2,
        kl_beta: 0.0,
        max_tokens: 4,
    };
    // No division by the standard deviation.
    let a = dr.advantages(&[1.0, 0.0, 2.0]);
    for (got, want) in a.iter().zip([0.0, -1.0, 1.0]) {
        close(*got as f64, want);
    }
    // Summed over tokens, divided by sequences × max_tokens = 8, whatever the lengths.
    let (loss, clipped, grads) = run_loss(&dr);
    close(loss, -3.4 / 8.0);
    close(clipped, 1.0 / 3.0);
    for (got, want) in grads
        .iter()
        .zip([0.0, -2.0 / 8.0, 0.0, 1.0 / 8.0, 0.0, 0.0])
    {
        close(*got, want);
    }
}

/// `run` with the example's kinds; the error's text.
fn refused(edit: impl Fn(String) -> String, with: Registry) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new("plugins.toml");
    let text = edit(config_text(&dir.path().join("run")));
    let config = match RunConfig::from_toml(&text, path) {
        Ok(config) => config,
        Err(e) => return format!("{e:#}"),
    };
    match run(config, path, with, false) {
        Ok(_) => panic!("the run was not refused"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_bad_table_for_a_user_kind_is_refused_naming_the_file_and_the_field() {
    // (text replaced, replacement, what the error must say)
    let cases = [
        (
            "kind = \"rloo\"",
            "kind = \"rloo\"\nclip_eps = \"wide\"",
            "plugins.toml: learner.loss.clip_eps: invalid type",
        ),
        (
            "ask = \"always\"",
            "ask = \"sometimes\"",
            "plugins.toml: workflow.ask: unknown variant `sometimes`",
        ),
        (
            "per_family = 4",
            "per_family = 4\nshuffle = true",
            "plugins.toml: data.settings.shuffle: unknown field `shuffle`",
        ),
        (
            "[\"existence\", \"counting\"]",
            "[\"colours\"]",
            "plugins.toml: data (source `family_curriculum`): families: `colours` is not a world family",
        ),
        (
            "metric = \"family_exact_match\"",
            "metric = \"family_exact_match\"\nmetric_settings = { strict = true }",
            "plugins.toml: evaluator.metric_settings.strict: unknown field `strict`",
        ),
    ];
    for (from, to, expected) in cases {
        let error = refused(|t| t.replace(from, to), registry());
        assert!(
            error.contains(expected),
            "expected `{expected}` in: {error}"
        );
    }
    // Without the crate's kinds registered, each is an unknown kind, named with its field.
    let error = refused(|t| t, Registry::with_builtins());
    assert!(
        error.contains("plugins.toml: workflow.kind = `clarify` is not a registered workflow kind (known: single_turn)"),
        "{error}"
    );
}

#[test]
fn the_crates_own_binary_lists_its_kinds_with_their_fields() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_grlhf-plugins"))
        .arg("kinds")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    // Every role, the built-ins and the user's kinds, each with its fields.
    for line in [
        "judge ([[judge]] kind):",
        "workflow ([workflow] kind):",
        "prompt_source ([data] source):",
        "loss ([learner.loss] kind):",
        "metric ([evaluator] metric):",
        "  clarify ",
        "      ask                          one of question_mark | always",
        "  family_curriculum ",
        "      families                     list<string>",
        "  dr_grpo ",
        "      max_tokens                   option<unsigned int>",
        "  rloo ",
        "  family_exact_match ",
        "  single_turn ",
        "  grpo ",
        "      rule                         one of grm_preference | oracle | reference_overlap",
    ] {
        assert!(text.contains(line), "`{line}` missing from:\n{text}");
    }
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_grlhf-plugins"))
        .args(["kinds", "--json"])
        .output()
        .unwrap();
    let kinds: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let rloo = kinds
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "rloo")
        .unwrap();
    assert_eq!(rloo["role"], "loss");
    assert_eq!(rloo["fields"][0]["name"], "clip_eps");
}

#[test]
fn the_shipped_config_runs_through_the_crates_own_binary() {
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins.toml")).unwrap();
    let run_dir = dir.path().join("run");
    let text = shipped.replace(
        "run_dir = \"runs/plugins\"",
        &format!("run_dir = {:?}", run_dir.display().to_string()),
    );
    assert_ne!(text, shipped, "the shipped config's run_dir moved");
    let config = dir.path().join("plugins.toml");
    std::fs::write(&config, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_grlhf-plugins"))
        .args(["run", config.to_str().unwrap(), "--no-progress"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["learner_steps"], 6);
    assert_eq!(summary["ledger_balanced"], true);
    assert!(summary["max_staleness_seen"].as_u64().unwrap() <= 1);
    // Every trained trajectory had a second turn (`ask = "always"`): longer than one turn's 8.
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let step: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            step["mean_response_tokens"].as_f64().unwrap() > 8.0,
            "{line}"
        );
    }
    let evals = std::fs::read_to_string(run_dir.join("eval.jsonl")).unwrap();
    assert!(evals.lines().count() >= 2, "{evals}");
}

#[test]
fn the_crates_own_binary_launches_a_worker_that_runs_the_user_workflow_remotely() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let text =
        config_text(&run_dir).replacen("[generator]\n", "[generator]\nnodes = [\"w1\"]\n", 1);
    let config = dir.path().join("plugins.toml");
    std::fs::write(&config, text).unwrap();
    // The launcher starts this binary as the head and as worker w1, so the worker knows the
    // crate's kinds: the multi-turn `clarify` workflow runs on the head, each turn's decoding
    // on the worker.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_grlhf-plugins"))
        .args(["launch", config.to_str().unwrap(), "--no-progress"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["learner_steps"], 4);
    assert_eq!(summary["ledger_balanced"], true);
    let remote = &summary["remote_roles"]["generator-0"];
    assert_eq!(remote["node"], "w1", "{summary}");
    assert!(remote["calls"].as_u64().unwrap() >= 2, "{remote}");
    // Trajectories are longer than one turn's 6 tokens: the continuations ran on the worker
    // (without them every batch would fail and nothing would train).
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let step: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            step["mean_response_tokens"].as_f64().unwrap() > 6.0,
            "{line}"
        );
    }
}
