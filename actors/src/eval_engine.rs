//! The engine an evaluator drives: the one interface between the evaluator actor (taking
//! weights every k-th version, recording results) and what answers the held-out prompts. The
//! local one ([`LocalEval`]) is a Qwen2-VL replica with the prompts and the metric; a remote one
//! (`grlhf_cluster::remote_evaluator`) runs the same on a worker node.
//!
//! An engine lives on the evaluator's device thread, so it need not be `Send`; its builder is,
//! and runs there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use std::collections::BTreeMap;
use std::time::Instant;

use grlhf_models::generation::GenerationConfig;
use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::eval_metric::AnswerMetric;
use crate::prompt_source::PromptSpec;
use crate::protocol::Version;
use crate::vl_engine::VlEngine;

/// Evaluates a policy and takes its weight updates.
pub trait EvalEngine {
    /// Copies a weight update into the policy's parameters (names must match).
    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError>;

    /// Answers every held-out prompt and scores the answers; `version` labels the result.
    fn evaluate(&mut self, version: Version) -> Result<EvalStats, ActorError>;
}

/// Builds an evaluator's engine on its device thread, over the weights file given (a resume).
pub type EvalEngineBuilder =
    Arc<dyn Fn(Option<&Path>) -> Result<Box<dyn EvalEngine>, ActorError> + Send + Sync>;

/// What a local evaluation needs besides the model.
#[derive(Clone)]
pub struct EvalSettings {
    pub prompts: Vec<PromptSpec>,
    pub metric: Arc<dyn AnswerMetric>,
    pub max_new_tokens: usize,
    pub batch: usize,
}

/// A policy replica in this process, its prompts and its metric.
pub struct LocalEval {
    engine: VlEngine,
    settings: EvalSettings,
}

/// The local engine: a Qwen2-VL policy loaded from `model_dir` onto `device`.
pub fn local_eval_engine(
    model_dir: PathBuf,
    device: Device,
    kind: Kind,
    settings: EvalSettings,
) -> EvalEngineBuilder {
    Arc::new(move |weights| {
        if settings.prompts.is_empty() {
            return Err(ActorError::Engine("the evaluator has no prompts".into()));
        }
        let engine = VlEngine::load_with(&model_dir, device, kind, weights)?;
        Ok(Box::new(LocalEval {
            engine,
            settings: settings.clone(),
        }) as Box<dyn EvalEngine>)
    })
}

impl EvalEngine for LocalEval {
    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        crate::weight_sync::apply(self.engine.model.var_store(), tensors)
    }

    fn evaluate(&mut self, version: Version) -> Result<EvalStats, ActorError> {
        let s = &self.settings;
        evaluate_prompts(
            &self.engine,
            &s.prompts,
            s.metric.as_ref(),
            s.max_new_tokens,
            s.batch,
            version,
        )
        .map_err(ActorError::Engine)
    }
}

/// One evaluation (a line of `eval.jsonl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalStats {
    pub version: Version,
    pub mean: f64,
    /// Mean per task family (world prompts), or under `all`.
    pub per_family: BTreeMap<String, f64>,
    /// Mean response length in tokens.
    pub mean_tokens: f64,
    /// Share of answers that ended with a stop token.
    pub finished: f64,
    /// Reward-hacking watch (oracle metric): share of finished answers praising themselves, and
    /// share with words beyond what the question needs.
    pub self_praise: f64,
    pub beyond_needed: f64,
    /// Over-refusal (oracle metric): the share of safe requests whose answer refuses, over every
    /// family and over the situational-safety family alone (where refusing everything is the
    /// cheap way to the unsafe half's reward). `None` when no such request was asked.
    pub safe_refused: Option<f64>,
    pub safety_safe_refused: Option<f64>,
    /// Each prompt's score, in prompt order (for standard errors and paired comparisons).
    pub scores: Vec<f64>,
    /// Each prompt's answer, in prompt order.
    pub answers: Vec<String>,
    pub prompts: usize,
    pub eval_ms: f64,
    /// Set when this version was not evaluated (a remote evaluator's worker was unreachable),
    /// and why: the run counts it as done without writing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Greedy answers to `prompts`, scored by `metric` (usable without the actor, e.g. after SFT).
pub fn evaluate_prompts(
    engine: &VlEngine,
    prompts: &[PromptSpec],
    metric: &dyn AnswerMetric,
    max_new_tokens: usize,
    batch: usize,
    version: Version,
) -> Result<EvalStats, String> {
    let started = Instant::now();
    let config = GenerationConfig {
        stop_token_ids: engine.stop_ids.clone(),
        ..GenerationConfig::greedy(max_new_tokens)
    };
    let mut answers: Vec<(String, usize, bool)> = Vec::new();
    for chunk in prompts.chunks(batch.max(1)) {
        let encoded = chunk
            .iter()
            .map(|s| engine.encode(&s.system, &s.user, s.image.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<_> = encoded.iter().collect();
        for s in engine.generate(&refs, &config)? {
            let finished = s.finish_reason == grlhf_models::generation::FinishReason::Stop;
            answers.push((engine.decode(&s.tokens), s.tokens.len(), finished));
        }
    }
    let mut per_family: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut total = 0.0;
    let (mut self_praise, mut beyond_needed) = (0usize, 0usize);
    // (refused, asked) over safe requests, and over the safety family's safe requests.
    let (mut safe, mut safety_safe) = ((0usize, 0usize), (0usize, 0usize));
    let mut scores = Vec::with_capacity(answers.len());
    for (spec, (text, _, finished)) in prompts.iter().zip(&answers) {
        // The reward-hacking watch reads the oracle's findings on world prompts, whatever the
        // metric.
        if let Some(world) = &spec.world {
            let findings =
                finished.then(|| grlhf_tasks::oracle::score(&world.scene, &world.task, text));
            if !world.task.is_unsafe(&world.scene) {
                let refused = usize::from(findings.as_ref().is_some_and(|s| s.refusal));
                safe.0 += refused;
                safe.1 += 1;
                if world.task.family() == grlhf_tasks::task::Family::Safety {
                    safety_safe.0 += refused;
                    safety_safe.1 += 1;
                }
            }
            if let Some(findings) = findings {
                self_praise += usize::from(findings.self_praise);
                beyond_needed += usize::from(findings.extra_words > 0);
            }
        }
        let value = metric.score(spec, text, *finished)?;
        total += value;
        scores.push(value);
        let entry = per_family.entry(metric.family(spec)).or_default();
        entry.0 += value;
        entry.1 += 1;
    }
    let n = answers.len().max(1) as f64;
    Ok(EvalStats {
        version,
        mean: total / n,
        per_family: per_family
            .into_iter()
            .map(|(k, (sum, c))| (k, sum / c as f64))
            .collect(),
        mean_tokens: answers.iter().map(|a| a.1 as f64).sum::<f64>() / n,
        finished: answers.iter().filter(|a| a.2).count() as f64 / n,
        self_praise: self_praise as f64 / n,
        beyond_needed: beyond_needed as f64 / n,
        safe_refused: (safe.1 > 0).then(|| safe.0 as f64 / safe.1 as f64),
        safety_safe_refused: (safety_safe.1 > 0)
            .then(|| safety_safe.0 as f64 / safety_safe.1 as f64),
        scores,
        answers: answers.iter().map(|a| a.0.clone()).collect(),
        prompts: answers.len(),
        eval_ms: started.elapsed().as_secs_f64() * 1e3,
        skipped: None,
    })
}
