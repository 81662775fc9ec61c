//! Generative RLHF-V end to end at CI size: every stage (warm start, stage 1, stage 2 for all
//! four variants, the n sweep, evaluation, report) runs on tiny models, and the report's numbers
//! are checked to come from the run — they are recomputed from the saved judgments and policy
//! evaluations, they change with the seed, and `--stage eval` alone reproduces them from the
//! saved checkpoints.

use std::collections::BTreeMap;
use std::path::Path;

use grlhf::pipeline::{accuracies_from_verdicts, run_pipeline, PipelineRequest, PipelineStage};
use grlhf::pipeline_config::{PipelineConfig, Variant};
use grlhf::report::Report;
use grlhf::reward_model_eval::PairVerdict;
use grlhf_actors::registry::Registry;

fn config(run_dir: &Path, seed: u64) -> (PipelineConfig, std::path::PathBuf) {
    let text = format!(
        r#"
run_dir = "{}"
seed = {seed}
world_size = 200

[warm_start.policy]
steps = 30
[warm_start.grm]
steps = 30
[warm_start.rm]
steps = 30

[stage1]
mode = "async"
steps = 3
group_size = 4
batch_groups = 2
generator = {{ batch_prompts = 2, max_new_tokens = 40 }}

[stage2]
mode = "async"
steps = 3
group_size = 3
batch_groups = 2
generator = {{ batch_prompts = 2, max_new_tokens = 24 }}

[judge]
max_new_tokens = 40

[eval]
prompts_per_family = 1
pairs = 8
max_new_tokens = 24
judge_max_new_tokens = 40
correlation_groups = 4
"#,
        run_dir.display()
    );
    let path = run_dir.with_extension("toml");
    std::fs::write(&path, text).unwrap();
    (PipelineConfig::from_file(&path).unwrap(), path)
}

fn reproduce(run_dir: &Path, seed: u64, only: Option<PipelineStage>) -> Report {
    let (config, path) = config(run_dir, seed);
    let request = PipelineRequest {
        config,
        config_path: path,
        only,
        variants: Variant::ALL.to_vec(),
        sweep_n: vec![2, 3],
        progress: false,
    };
    run_pipeline(&request, &Registry::with_builtins)
        .unwrap()
        .expect("evaluation ran")
}

fn read_verdicts(run_dir: &Path) -> Vec<PairVerdict> {
    std::fs::read_to_string(run_dir.join("eval/judgments.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_stage_runs_and_the_report_comes_from_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("seed0");
    let report = reproduce(&run_dir, 0, None);

    // The keys the issue asks for.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    for model in ["score_only_rm", "grm", "grm_sft", "grm_rl"] {
        for split in ["in_dist", "ood_combo", "ood_error", "ood_family"] {
            assert!(
                json["rm_accuracy"][model][split].is_number(),
                "rm_accuracy.{model}.{split} missing"
            );
        }
    }
    let families = [
        "counting",
        "attribute",
        "spatial",
        "existence",
        "description",
        "instruction",
        "safety",
    ];
    for policy in [
        "base",
        "rm_grpo",
        "grm_sft_grouped",
        "grm_rl_single",
        "grm_rl_grouped",
    ] {
        let row = &json["policy_eval"][policy];
        assert!(
            row["average"].is_number(),
            "policy_eval.{policy}.average missing"
        );
        let present = families.iter().filter(|f| row[**f].is_number()).count();
        assert_eq!(present, 7, "policy_eval.{policy}: {row}");
    }

    // The warm start's grounding check, for the policy and the GRM, with their blind twins.
    for model in ["policy", "grm"] {
        for key in ["image_swap_changed", "average", "blind_average"] {
            assert!(
                json["grounding"][model][key].is_number(),
                "grounding.{model}.{key} missing: {}",
                json["grounding"]
            );
        }
    }
    assert_eq!(report.grounding["policy"].items, 7 * 8);
    assert!(run_dir
        .join("warm/policy_blind/model/model.safetensors")
        .is_file());
    assert!(run_dir
        .join("warm/grm_blind/model/model.safetensors")
        .is_file());
    // Over-refusal is watched: a share of the safe requests, for every policy.
    for (policy, watch) in &report.reward_hacking {
        let refused = watch.safe_refused.expect("safe requests were asked");
        assert!((0.0..=1.0).contains(&refused), "{policy}: {refused}");
    }

    // Accuracies are recomputed from the saved verdicts: 4 models × 4 splits × 8 pairs.
    let verdicts = read_verdicts(&run_dir);
    assert_eq!(verdicts.len(), 4 * 4 * 8);
    let recomputed = accuracies_from_verdicts(&verdicts);
    for (model, splits) in &report.rm_accuracy {
        for (split, accuracy) in splits {
            assert_eq!(
                *accuracy, recomputed[model][split].accuracy,
                "{model}/{split}"
            );
        }
    }
    // Policy numbers are the saved evaluations × 100, gains against the base.
    let evals: BTreeMap<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("eval/policy_eval.json")).unwrap(),
    )
    .unwrap();
    let base = evals["base"]["mean"].as_f64().unwrap() * 100.0;
    for (policy, row) in &report.policy_eval {
        let mean = evals[policy]["mean"].as_f64().unwrap() * 100.0;
        assert!((row["average"] - mean).abs() < 1e-9, "{policy}");
        if policy != "base" {
            assert!((report.policy_gain[policy] - (mean - base)).abs() < 1e-9);
        }
    }
    // The sweep ran both variants at both n, and the claims are judged, not hard-coded.
    assert_eq!(report.sweep.len(), 4);
    assert_eq!(report.claims.len(), 3);
    assert!(
        report.claims.iter().all(|c| c.holds.is_some()),
        "{:?}",
        report.claims
    );
    // Curves and plots.
    assert_eq!(report.reward_curves["stage1"].len(), 3);
    assert_eq!(report.reward_curves["grm_rl_grouped"].len(), 3);
    for plot in &report.plots {
        let bytes = std::fs::read(run_dir.join(plot)).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG", "{plot}");
    }
    assert_eq!(report.plots.len(), 4, "{:?}", report.plots);
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("Table 2 analogue") && md.contains("Table 1 analogue"));
    assert!(md.contains("## Grounding") && md.contains("safe refused"));

    // Evaluation alone, from the saved checkpoints, gives the same numbers (greedy decoding).
    let again = reproduce(&run_dir, 0, Some(PipelineStage::Eval));
    assert_eq!(again.rm_accuracy, report.rm_accuracy);
    assert_eq!(again.policy_eval, report.policy_eval);
    assert_eq!(again.grounding, report.grounding);
    assert_eq!(read_verdicts(&run_dir), verdicts);

    // Another seed: another world sample and other models, so other verdicts.
    let other_dir = dir.path().join("seed1");
    reproduce(&other_dir, 1, None);
    let other = read_verdicts(&other_dir);
    let scores = |vs: &[PairVerdict]| -> Vec<Option<f64>> {
        vs.iter()
            .filter(|v| v.model == "score_only_rm")
            .map(|v| v.score_1)
            .collect()
    };
    assert_ne!(scores(&verdicts), scores(&other));
}

#[test]
fn a_stage_alone_names_the_missing_stage_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("empty");
    let (config, path) = config(&run_dir, 0);
    let request = PipelineRequest {
        config,
        config_path: path,
        only: Some(PipelineStage::Stage1),
        variants: vec![Variant::GrmRlGrouped],
        sweep_n: vec![],
        progress: false,
    };
    let err =
        run_pipeline(&request, &Registry::with_builtins).expect_err("stage 1 needs the warm start");
    let text = format!("{err:#}");
    assert!(text.contains("--stage warm-start"), "{text}");
}

#[test]
fn the_pipeline_owns_run_dir_and_judges_of_stage_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "run_dir = \"x\"\n[stage1]\nmode = \"sync\"\nsteps = 1\ngroup_size = 2\nbatch_groups = 1\n[stage2]\nmode = \"sync\"\nsteps = 1\ngroup_size = 2\nbatch_groups = 1\n[[stage2.judge]]\nkind = \"rule_judge\"\n",
    )
    .unwrap();
    let err = format!("{:#}", PipelineConfig::from_file(&path).unwrap_err());
    assert!(
        err.contains("bad.toml") && err.contains("[stage2].judge"),
        "{err}"
    );

    std::fs::write(
        &path,
        "run_dir = \"x\"\n[stage1]\nmode = \"sync\"\nsteps = 1\ngroup_size = 1\nbatch_groups = 1\n[stage2]\nmode = \"sync\"\nsteps = 1\ngroup_size = 2\nbatch_groups = 1\n",
    )
    .unwrap();
    let err = format!("{:#}", PipelineConfig::from_file(&path).unwrap_err());
    assert!(
        err.contains("[stage1]") && err.contains("group_size"),
        "{err}"
    );

    std::fs::write(
        &path,
        "run_dir = \"x\"\nvariants = [\"dpo\"]\n[stage1]\n[stage2]\n",
    )
    .unwrap();
    let err = format!("{:#}", PipelineConfig::from_file(&path).unwrap_err());
    assert!(err.contains("variants") && err.contains("line"), "{err}");
}

#[test]
fn shipped_pipeline_configs_load() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    for name in ["demo.toml", "reproduce.toml"] {
        let config = PipelineConfig::from_file(&configs.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(config.variants.contains(&Variant::GrmRlGrouped), "{name}");
        assert!(config.variants.contains(&Variant::RmGrpo), "{name}");
    }
    // The GPU configs load where their GPUs exist; elsewhere their error names the field.
    match PipelineConfig::from_file(&configs.join("gpu-smoke.toml")) {
        Ok(config) => {
            assert!(tch::Cuda::device_count() >= 1);
            assert!(config.variants.contains(&Variant::GrmRlGrouped));
        }
        Err(e) => {
            let text = format!("{e:#}");
            assert!(
                text.contains("warm_start.device") && text.contains("cuda:0"),
                "{text}"
            );
            // Everything but the placement is checked here too: the same file on the CPU.
            let tmp = tempfile::tempdir().unwrap();
            let on_cpu = std::fs::read_to_string(configs.join("gpu-smoke.toml"))
                .unwrap()
                .replace("\"cuda:0\"", "\"cpu\"");
            std::fs::write(tmp.path().join("smoke.toml"), on_cpu).unwrap();
            PipelineConfig::from_file(&tmp.path().join("smoke.toml"))
                .unwrap_or_else(|e| panic!("gpu-smoke.toml on the CPU: {e:#}"));
        }
    }
    match PipelineConfig::from_file(&configs.join("reproduce-multi-gpu.toml")) {
        Ok(_) => assert!(tch::Cuda::device_count() >= 4),
        Err(e) => {
            let text = format!("{e:#}");
            assert!(
                text.contains("warm_start.device") && text.contains("cuda:0"),
                "{text}"
            );
        }
    }
}
