//! The evaluator: periodic held-out evaluation of the policy with a pluggable metric.
//!
//! It holds its own policy replica (on its device thread), receives weights like a generator —
//! every `every` learner steps — and answers each held-out prompt greedily, scored by an
//! [`AnswerMetric`] (built in: the world's oracle, word F1 with the reference; or a user's kind). It
//! evaluates the starting weights (version 0, or a resumed checkpoint's) when it starts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use grlhf_models::generation::GenerationConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::activity::ActivityLog;
use crate::device_worker::DeviceWorker;
use crate::eval_metric::AnswerMetric;
use crate::prompt_source::PromptSpec;
use crate::protocol::{Version, WeightUpdate};
use crate::vl_engine::VlEngine;

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
}

pub enum EvaluatorMsg {
    Weights(WeightUpdate),
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for EvaluatorMsg {}

pub struct EvaluatorArgs {
    pub name: String,
    pub model_dir: std::path::PathBuf,
    pub device: Device,
    pub kind: Kind,
    pub prompts: Vec<PromptSpec>,
    pub metric: Arc<dyn AnswerMetric>,
    pub max_new_tokens: usize,
    pub batch: usize,
    pub activity: ActivityLog,
    pub results: flume::Sender<EvalStats>,
    /// Weights (a safetensors file) to load over `model_dir`'s, at this version (a resume).
    pub start_from: Option<(std::path::PathBuf, Version)>,
}

pub struct EvaluatorState {
    args: EvaluatorArgs,
    worker: DeviceWorker<VlEngine>,
}

pub struct Evaluator;

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
    })
}

impl Evaluator {
    async fn evaluate(
        state: &mut EvaluatorState,
        version: Version,
    ) -> Result<(), ActorProcessingErr> {
        let start = state.args.activity.now();
        let prompts = state.args.prompts.clone();
        let (metric, max_new_tokens, batch) = (
            state.args.metric.clone(),
            state.args.max_new_tokens,
            state.args.batch,
        );
        let stats = state
            .worker
            .run(move |engine: &mut VlEngine| {
                evaluate_prompts(
                    engine,
                    &prompts,
                    metric.as_ref(),
                    max_new_tokens,
                    batch,
                    version,
                )
            })
            .await??;
        state.args.activity.record(
            &state.args.name,
            "evaluate",
            start,
            state.args.activity.now(),
        );
        metrics::gauge!(crate::metric_series::EVAL_SCORE, "family" => "all").set(stats.mean);
        for (family, score) in &stats.per_family {
            metrics::gauge!(crate::metric_series::EVAL_SCORE, "family" => family.clone())
                .set(*score);
        }
        let _ = state.args.results.send(stats);
        Ok(())
    }
}

impl Actor for Evaluator {
    type Msg = EvaluatorMsg;
    type State = EvaluatorState;
    type Arguments = EvaluatorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        if args.prompts.is_empty() {
            return Err("the evaluator has no prompts".into());
        }
        let (dir, device, kind) = (args.model_dir.clone(), args.device, args.kind);
        let start_from = args.start_from.clone();
        let worker = DeviceWorker::spawn(&args.name, move || {
            let weights = start_from.as_ref().map(|(path, _)| path.as_path());
            VlEngine::load_with(&dir, device, kind, weights)
        })?;
        let version = args.start_from.as_ref().map_or(0, |(_, v)| *v);
        let mut state = EvaluatorState { args, worker };
        Self::evaluate(&mut state, version).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let EvaluatorMsg::Weights(update) = message;
        let version = update.version;
        state
            .worker
            .run(move |engine: &mut VlEngine| {
                crate::weight_sync::apply(engine.model.var_store(), &update.tensors)
            })
            .await??;
        Self::evaluate(state, version).await
    }
}
