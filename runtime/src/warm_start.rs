//! `grlhf sft`: the warm start — supervised fine-tuning of a policy on answers, or of a GRM on
//! judgments — with a held-out measurement before and after:
//!
//! - policy: greedy answers to the world's evaluation prompts, scored by the oracle (0–1);
//! - GRM: greedy judgments of held-out preference pairs: the share that parse, and pairwise
//!   accuracy against the oracle's order (a judgment that does not parse counts as wrong).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use grlhf_actors::bradley_terry::{train_bradley_terry, BtConfig, BtPair, BtStats};
use grlhf_actors::eval_metric::OracleMetric;
use grlhf_actors::evaluator::{evaluate_prompts, EvalStats};
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::scalar_rm_judge::ScalarRewardModel;
use grlhf_actors::sft::{train_sft, SftConfig, SftExample, SftStats};
use grlhf_actors::vl_engine::VlEngine;
use grlhf_tasks::grm_format::{
    grm_user_message, policy_user_message, GRM_SYSTEM_PROMPT, POLICY_SYSTEM_PROMPT,
};
use grlhf_tasks::records::{PreferenceRecord, WorldKey};
use grlhf_tasks::render::render;
use grlhf_tasks::world::{HeldOut, Split, SplitRecords, SplitSizes, WorldConfig};
use serde::Serialize;
use tch::{Device, Kind};

use crate::model_source::ModelSource;
use crate::reward_model_eval::{grm_verdicts_with_images, PairAccuracy};
use crate::run::{policy_spec, to_rgb, world_held_out_records};
use crate::run_layout::WarmStartDir;

/// What is warm-started (`grlhf sft --target policy|grm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Target {
    Policy,
    Grm,
}

/// A GRM's held-out judging quality.
pub type GrmEval = crate::reward_model_eval::PairAccuracy;

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
    /// The image-swap check after training (not for a blind twin, whose images are all blank).
    pub grounding: Option<crate::grounding::Grounding>,
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
    world_held_out_prompts(seed, HeldOut::Evaluation, per_family)
}

/// The world's validation or evaluation prompts, rendered into policy requests.
pub fn world_held_out_prompts(
    seed: u64,
    held_out: HeldOut,
    per_family: usize,
) -> Result<Vec<PromptSpec>> {
    world_held_out_records(seed, held_out, per_family)?
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

/// Greedy judgments of `pairs`: parse rate and accuracy against each pair's label; `blank`
/// shows every pair a blank image (a blind twin's evaluation).
pub fn grm_accuracy(
    engine: &VlEngine,
    pairs: &[PreferenceRecord],
    max_new_tokens: usize,
    blank: bool,
) -> Result<GrmEval> {
    let mut images = pairs
        .iter()
        .map(crate::reward_model_eval::pair_image)
        .collect::<Result<Vec<_>>>()?;
    if blank {
        images = crate::grounding::blank_images(&images)?;
    }
    Ok(PairAccuracy::of(&grm_verdicts_with_images(
        engine,
        "grm",
        "",
        pairs,
        &images,
        max_new_tokens,
    )?))
}

/// The preference pairs the reward models learn from: `pairs_train` and the pairs behind
/// `sft_grm` (the GRM sees both, as judgments to imitate and as RL prompts), labels with the
/// world's label noise.
pub fn world_preference_pairs(seed: u64, size: usize) -> Result<Vec<BtPair>> {
    let config = WorldConfig {
        seed,
        sizes: SplitSizes {
            train_pairs: size,
            grm_sft: size,
            ..SplitSizes::scaled(28)
        },
        ..WorldConfig::default()
    };
    let mut out = Vec::new();
    for split in [Split::PairsTrain, Split::SftGrm] {
        let SplitRecords::Pairs(records) = config.generate(split).map_err(|e| anyhow!(e))? else {
            unreachable!("{} holds pairs", split.name())
        };
        for r in records {
            let (chosen, rejected) = if r.preferred == 1 {
                (r.response_1, r.response_2)
            } else {
                (r.response_2, r.response_1)
            };
            out.push(BtPair {
                system: POLICY_SYSTEM_PROMPT.to_string(),
                user: policy_user_message(&r.question),
                image: Some(image_of(r.world.as_ref().expect("world records"))?),
                chosen,
                rejected,
            });
        }
    }
    Ok(out)
}

/// `rm.json`: the score-only reward model's warm start.
#[derive(Debug, Clone, Serialize)]
pub struct BtReport {
    pub pairs: usize,
    pub config: BtConfig,
    pub loss_first: f64,
    pub loss_last: f64,
    /// Training-batch accuracy over the first and last tenth of the steps.
    pub train_accuracy_first: f64,
    pub train_accuracy_last: f64,
    pub wall_s: f64,
    pub out: PathBuf,
}

/// Trains the score-only Bradley–Terry reward model from `model` (a checkpoint or
/// `world:<preset>`) on the world's preference pairs; writes `out/model` (backbone, head,
/// tokenizer, processor) and `out/rm.json`.
pub fn run_bt_rm(
    model: &str,
    out: &Path,
    config: &BtConfig,
    world_size: usize,
    device: Device,
    mut on_step: impl FnMut(&BtStats),
) -> Result<BtReport> {
    let started = std::time::Instant::now();
    let out = WarmStartDir::new(out);
    let source = ModelSource::parse("model", model)?.materialise(&out.init(), config.seed)?;
    let engine = VlEngine::load(&source, device, Kind::Float).map_err(|e| anyhow!(e))?;
    let hidden = engine.model.config().text_config.hidden_size;
    tch::manual_seed(config.seed as i64);
    let mut rm = ScalarRewardModel {
        engine,
        score: tch::Tensor::randn([1, hidden], (Kind::Float, device)) * 0.02,
    };
    let pairs = world_preference_pairs(config.seed, world_size)?;
    let history =
        train_bradley_terry(&mut rm, &pairs, config, &mut on_step).map_err(|e| anyhow!(e))?;
    let model_dir = out.model();
    rm.save(&model_dir).map_err(|e| anyhow!(e))?;
    copy_processing_files(&source, &model_dir)?;
    let window = (history.len() / 10).max(1);
    let mean = |xs: &[BtStats], f: fn(&BtStats) -> f64| {
        xs.iter().map(f).sum::<f64>() / xs.len().max(1) as f64
    };
    let (head, tail) = (&history[..window], &history[history.len() - window..]);
    let report = BtReport {
        pairs: pairs.len(),
        config: config.clone(),
        loss_first: mean(head, |s| s.loss),
        loss_last: mean(tail, |s| s.loss),
        train_accuracy_first: mean(head, |s| s.accuracy),
        train_accuracy_last: mean(tail, |s| s.accuracy),
        wall_s: started.elapsed().as_secs_f64(),
        out: model_dir,
    };
    std::fs::write(out.rm_record(), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

/// Copies the tokenizer and image-processor files a saved model needs next to its weights.
pub fn copy_processing_files(from: &Path, to: &Path) -> Result<()> {
    for file in ["tokenizer.json", "preprocessor_config.json"] {
        std::fs::copy(from.join(file), to.join(file)).with_context(|| {
            format!("copying {} to {}", from.join(file).display(), to.display())
        })?;
    }
    Ok(())
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
    /// The held-out set measured before and after: `validation` when choosing settings.
    pub eval_split: HeldOut,
    pub max_new_tokens: usize,
    pub device: Device,
    /// Measure on held-out data before and after (the pipeline measures separately).
    pub evaluate: bool,
    /// Train a blind twin: every image replaced by a blank one of the same size (the grounding
    /// check's control; its evaluation is blank too).
    pub blind: bool,
}

fn evaluate(
    engine: &VlEngine,
    request: &SftRequest,
    version: u64,
) -> Result<(Option<EvalStats>, Option<GrmEval>)> {
    let seed = request.config.seed;
    Ok(match request.target {
        Target::Policy => {
            let mut prompts =
                world_held_out_prompts(seed, request.eval_split, request.eval_per_family)?;
            if request.blind {
                prompts = crate::grounding::blank_prompts(&prompts)?;
            }
            let stats = evaluate_prompts(
                engine,
                &prompts,
                &OracleMetric,
                request.max_new_tokens,
                16,
                version,
            )
            .map_err(|e| anyhow!(e))?;
            (Some(stats), None)
        }
        Target::Grm => {
            let pairs = world_pairs(seed, request.eval_split.pairs(), request.eval_pairs)?;
            (
                None,
                Some(grm_accuracy(
                    engine,
                    &pairs,
                    request.max_new_tokens,
                    request.blind,
                )?),
            )
        }
    })
}

/// Runs the warm start and writes the model (with tokenizer and processor) and `sft.json`.
pub fn run_sft(request: &SftRequest, mut on_step: impl FnMut(&SftStats)) -> Result<SftReport> {
    let started = std::time::Instant::now();
    let out = WarmStartDir::new(&request.out);
    let source = ModelSource::parse("--model", &request.model)?
        .materialise(&out.init(), request.config.seed)?;
    let mut engine =
        VlEngine::load(&source, request.device, Kind::Float).map_err(|e| anyhow!(e))?;
    let mut examples = world_examples(
        request.target,
        request.config.seed,
        request.world_size,
        request.sft_quality,
    )?;
    if request.blind {
        for e in &mut examples {
            if let Some(image) = &e.image {
                e.image = Some(crate::grounding::blank_like(image)?);
            }
        }
    }
    let (policy_before, grm_before) = if request.evaluate {
        evaluate(&engine, request, 0)?
    } else {
        (None, None)
    };
    let history =
        train_sft(&mut engine, &examples, &request.config, &mut on_step).map_err(|e| anyhow!(e))?;
    let (policy_after, grm_after) = if request.evaluate {
        evaluate(&engine, request, request.config.steps)?
    } else {
        (None, None)
    };
    let mut grm_after_ood = std::collections::BTreeMap::new();
    // The out-of-distribution splits have no validation counterpart: they are measured only when
    // the run reports on the evaluation sets.
    if request.target == Target::Grm
        && request.evaluate
        && request.eval_split == HeldOut::Evaluation
    {
        for split in [
            Split::PairsOodCombo,
            Split::PairsOodError,
            Split::PairsOodFamily,
        ] {
            let pairs = world_pairs(request.config.seed, split, request.eval_pairs)?;
            grm_after_ood.insert(
                split.name().to_string(),
                grm_accuracy(&engine, &pairs, request.max_new_tokens, request.blind)?,
            );
        }
    }
    let grounding = if request.evaluate && !request.blind {
        let settings = crate::grounding::GroundingSettings {
            max_new_tokens: request.max_new_tokens,
            min_swap_changed: crate::pipeline_config::GroundingConfig::default().min_swap_changed,
        };
        let seed = request.config.seed;
        Some(match request.target {
            Target::Policy => crate::grounding::policy_grounding(
                &engine,
                None,
                &world_held_out_prompts(seed, request.eval_split, request.eval_per_family)?,
                settings,
            )?,
            Target::Grm => crate::grounding::grm_grounding(
                &engine,
                None,
                &world_pairs(seed, request.eval_split.pairs(), request.eval_pairs)?,
                settings,
            )?,
        })
    } else {
        None
    };
    let model_dir = out.model();
    engine
        .model
        .save(&model_dir)
        .map_err(|e| anyhow!(e.to_string()))?;
    copy_processing_files(&source, &model_dir)?;
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
        grounding,
        wall_s: started.elapsed().as_secs_f64(),
        out: model_dir,
    };
    std::fs::write(out.sft_record(), serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

/// Where `run_sft` writes the model.
pub fn model_dir(out: &Path) -> PathBuf {
    WarmStartDir::new(out).model()
}

/// A GRM's parse rate and pairwise accuracy on the world's held-out pairs: the validation pairs
/// (where settings are chosen), or the test pairs and the three out-of-distribution splits.
pub fn grm_eval_all(
    engine: &VlEngine,
    seed: u64,
    held_out: HeldOut,
    pairs: usize,
    max_new_tokens: usize,
) -> Result<std::collections::BTreeMap<String, GrmEval>> {
    let splits: &[Split] = match held_out {
        HeldOut::Validation => &[Split::PairsVal],
        HeldOut::Evaluation => &[
            Split::PairsTest,
            Split::PairsOodCombo,
            Split::PairsOodError,
            Split::PairsOodFamily,
        ],
    };
    let mut out = std::collections::BTreeMap::new();
    for &split in splits {
        let records = world_pairs(seed, split, pairs)?;
        out.insert(
            split.name().to_string(),
            grm_accuracy(engine, &records, max_new_tokens, false)?,
        );
    }
    Ok(out)
}
