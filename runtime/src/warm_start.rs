//! `grlhf sft`: the warm start — supervised fine-tuning of a policy on answers, or of a GRM on
//! judgments — with a held-out measurement before and after:
//!
//! - policy: greedy answers to the world's evaluation prompts, scored by the oracle (0–1);
//! - GRM: greedy judgments of held-out preference pairs: the share that parse, and pairwise
//!   accuracy against the oracle's order (a judgment that does not parse counts as wrong).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use grlhf_actors::evaluator::{evaluate_prompts, EvalMetric, EvalStats};
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::sft::{train_sft, SftConfig, SftExample, SftStats};
use grlhf_actors::vl_engine::{init_world_model, VlEngine, WorldModelSize};
use grlhf_models::generation::GenerationConfig;
use grlhf_tasks::grm_format::{
    grm_user_message, policy_user_message, GRM_SYSTEM_PROMPT, POLICY_SYSTEM_PROMPT,
};
use grlhf_tasks::records::{PreferenceRecord, WorldKey};
use grlhf_tasks::render::render;
use grlhf_tasks::score_parser::parse_scores;
use grlhf_tasks::world::{Split, SplitRecords, SplitSizes, WorldConfig};
use serde::Serialize;
use tch::{Device, Kind};

use crate::run::{policy_spec, to_rgb, world_eval_records};

/// What is warm-started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Policy,
    Grm,
}

/// A GRM's held-out judging quality.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GrmEval {
    pub pairs: usize,
    /// Share of judgments with a usable `\boxed{s1,s2}`.
    pub parsed: f64,
    /// Share of pairs where the oracle-preferred response got the strictly higher score.
    pub accuracy: f64,
}

/// `sft.json`: the run's record.
#[derive(Debug, Clone, Serialize)]
pub struct SftReport {
    pub target: Target,
    pub examples: usize,
    pub config: SftConfig,
    pub loss_first: f64,
    pub loss_last: f64,
    pub policy_before: Option<EvalStats>,
    pub policy_after: Option<EvalStats>,
    /// GRM: in-distribution test pairs.
    pub grm_before: Option<GrmEval>,
    pub grm_after: Option<GrmEval>,
    /// GRM after SFT on each out-of-distribution split (`pairs_ood_combo`, `_error`, `_family`).
    pub grm_after_ood: std::collections::BTreeMap<String, GrmEval>,
    pub wall_s: f64,
    pub out: PathBuf,
}

fn image_of(world: &WorldKey) -> Result<Arc<grlhf_models::image_processor::RgbImage>> {
    to_rgb(&render(&world.scene))
}

fn world(seed: u64, size: usize, sft_quality: f64) -> WorldConfig {
    WorldConfig {
        seed,
        sft_quality,
        sizes: SplitSizes {
            policy_sft: size,
            grm_sft: size,
            ..SplitSizes::scaled(28)
        },
        ..WorldConfig::default()
    }
}

/// Demonstrations from the embedded world.
pub fn world_examples(
    target: Target,
    seed: u64,
    size: usize,
    sft_quality: f64,
) -> Result<Vec<SftExample>> {
    let config = world(seed, size, sft_quality);
    match target {
        Target::Policy => match config.generate(Split::SftPolicy).map_err(|e| anyhow!(e))? {
            SplitRecords::Sft(records) => records
                .into_iter()
                .map(|r| {
                    Ok(SftExample {
                        system: POLICY_SYSTEM_PROMPT.to_string(),
                        user: policy_user_message(&r.question),
                        image: Some(image_of(r.world.as_ref().expect("world records"))?),
                        answer: r.answer,
                    })
                })
                .collect(),
            _ => unreachable!("sft_policy holds SFT records"),
        },
        Target::Grm => match config.generate(Split::SftGrm).map_err(|e| anyhow!(e))? {
            SplitRecords::Pairs(records) => records
                .into_iter()
                .map(|r| {
                    Ok(SftExample {
                        system: GRM_SYSTEM_PROMPT.to_string(),
                        user: grm_user_message(&r.question, &r.response_1, &r.response_2),
                        image: Some(image_of(r.world.as_ref().expect("world records"))?),
                        answer: r.judgment.clone().expect("sft_grm records carry judgments"),
                    })
                })
                .collect(),
            _ => unreachable!("sft_grm holds pairs"),
        },
    }
}

/// The world's evaluation prompts as policy requests.
pub fn world_eval_prompts(seed: u64, per_family: usize) -> Result<Vec<PromptSpec>> {
    world_eval_records(seed, per_family)?
        .into_iter()
        .map(|p| policy_spec(p, POLICY_SYSTEM_PROMPT))
        .collect()
}

/// Held-out preference pairs of a split (oracle labels), for GRM accuracy.
pub fn world_pairs(seed: u64, split: Split, size: usize) -> Result<Vec<PreferenceRecord>> {
    let config = WorldConfig {
        seed,
        sizes: SplitSizes {
            test_pairs: size,
            ..SplitSizes::scaled(28)
        },
        ..WorldConfig::default()
    };
    match config.generate(split).map_err(|e| anyhow!(e))? {
        SplitRecords::Pairs(records) => Ok(records),
        _ => Err(anyhow!("{} does not hold pairs", split.name())),
    }
}

/// Greedy judgments of `pairs`: parse rate and accuracy against each pair's label.
pub fn grm_accuracy(
    engine: &VlEngine,
    pairs: &[PreferenceRecord],
    max_new_tokens: usize,
) -> Result<GrmEval> {
    let config = GenerationConfig {
        stop_token_ids: engine.stop_ids.clone(),
        ..GenerationConfig::greedy(max_new_tokens)
    };
    let (mut parsed, mut correct) = (0usize, 0usize);
    for chunk in pairs.chunks(16) {
        let mut encoded = Vec::new();
        for p in chunk {
            let image = match &p.world {
                Some(w) => Some(image_of(w)?),
                None => Some(Arc::new(grlhf_models::image_processor::RgbImage::open(
                    &p.image,
                )?)),
            };
            let user = grm_user_message(&p.question, &p.response_1, &p.response_2);
            encoded.push(
                engine
                    .encode(GRM_SYSTEM_PROMPT, &user, image.as_deref())
                    .map_err(|e| anyhow!(e))?,
            );
        }
        let refs: Vec<_> = encoded.iter().collect();
        let outputs = engine.generate(&refs, &config).map_err(|e| anyhow!(e))?;
        for (p, out) in chunk.iter().zip(outputs) {
            if let Ok((s1, s2)) = parse_scores(&engine.decode(&out.tokens)) {
                parsed += 1;
                correct +=
                    usize::from((p.preferred == 1 && s1 > s2) || (p.preferred == 2 && s2 > s1));
            }
        }
    }
    let n = pairs.len().max(1) as f64;
    Ok(GrmEval {
        pairs: pairs.len(),
        parsed: parsed as f64 / n,
        accuracy: correct as f64 / n,
    })
}

/// Everything `grlhf sft` needs.
pub struct SftRequest {
    pub target: Target,
    /// A checkpoint directory, or `world:<preset>` for a fresh world model.
    pub model: String,
    pub out: PathBuf,
    pub config: SftConfig,
    pub world_size: usize,
    pub sft_quality: f64,
    pub eval_per_family: usize,
    pub eval_pairs: usize,
    pub max_new_tokens: usize,
}

fn evaluate(
    engine: &VlEngine,
    request: &SftRequest,
    version: u64,
) -> Result<(Option<EvalStats>, Option<GrmEval>)> {
    let seed = request.config.seed;
    Ok(match request.target {
        Target::Policy => {
            let prompts = world_eval_prompts(seed, request.eval_per_family)?;
            let stats = evaluate_prompts(
                engine,
                &prompts,
                EvalMetric::Oracle,
                request.max_new_tokens,
                16,
                version,
            )
            .map_err(|e| anyhow!(e))?;
            (Some(stats), None)
        }
        Target::Grm => {
            let pairs = world_pairs(seed, Split::PairsTest, request.eval_pairs)?;
            (
                None,
                Some(grm_accuracy(engine, &pairs, request.max_new_tokens)?),
            )
        }
    })
}

/// Runs the warm start and writes the model (with tokenizer and processor) and `sft.json`.
pub fn run_sft(request: &SftRequest, mut on_step: impl FnMut(&SftStats)) -> Result<SftReport> {
    let started = std::time::Instant::now();
    let source: PathBuf = match request.model.strip_prefix("world:") {
        Some(preset) => {
            let dir = request.out.join("init");
            let size = WorldModelSize::preset(preset).map_err(|e| anyhow!("--model: {e}"))?;
            init_world_model(&dir, size, request.config.seed as i64).map_err(|e| anyhow!(e))?;
            dir
        }
        None => PathBuf::from(&request.model),
    };
    let mut engine = VlEngine::load(&source, Device::Cpu, Kind::Float).map_err(|e| anyhow!(e))?;
    let examples = world_examples(
        request.target,
        request.config.seed,
        request.world_size,
        request.sft_quality,
    )?;
    let (policy_before, grm_before) = evaluate(&engine, request, 0)?;
    let history =
        train_sft(&mut engine, &examples, &request.config, &mut on_step).map_err(|e| anyhow!(e))?;
    let (policy_after, grm_after) = evaluate(&engine, request, request.config.steps)?;
    let mut grm_after_ood = std::collections::BTreeMap::new();
    if request.target == Target::Grm {
        for split in [
            Split::PairsOodCombo,
            Split::PairsOodError,
            Split::PairsOodFamily,
        ] {
            let pairs = world_pairs(request.config.seed, split, request.eval_pairs)?;
            grm_after_ood.insert(
                split.name().to_string(),
                grm_accuracy(&engine, &pairs, request.max_new_tokens)?,
            );
        }
    }
    let model_dir = request.out.join("model");
    engine
        .model
        .save(&model_dir)
        .map_err(|e| anyhow!(e.to_string()))?;
    for file in ["tokenizer.json", "preprocessor_config.json"] {
        std::fs::copy(source.join(file), model_dir.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    let window = (history.len() / 10).max(1);
    let mean = |xs: &[SftStats]| xs.iter().map(|s| s.loss).sum::<f64>() / xs.len().max(1) as f64;
    let report = SftReport {
        target: request.target,
        examples: examples.len(),
        config: request.config.clone(),
        loss_first: mean(&history[..window]),
        loss_last: mean(&history[history.len() - window..]),
        policy_before,
        policy_after,
        grm_before,
        grm_after,
        grm_after_ood,
        wall_s: started.elapsed().as_secs_f64(),
        out: model_dir,
    };
    std::fs::write(
        request.out.join("sft.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

/// Where `run_sft` writes the model.
pub fn model_dir(out: &Path) -> PathBuf {
    out.join("model")
}

/// Held-out judging quality of a GRM on the test split and every OOD split.
pub fn grm_eval_all(
    engine: &VlEngine,
    seed: u64,
    pairs: usize,
    max_new_tokens: usize,
) -> Result<std::collections::BTreeMap<String, GrmEval>> {
    let mut out = std::collections::BTreeMap::new();
    for split in [
        Split::PairsTest,
        Split::PairsOodCombo,
        Split::PairsOodError,
        Split::PairsOodFamily,
    ] {
        let records = world_pairs(seed, split, pairs)?;
        out.insert(
            split.name().to_string(),
            grm_accuracy(engine, &records, max_new_tokens)?,
        );
    }
    Ok(out)
}
