//! The generator: owns a policy replica on its device thread, takes prompts from the source,
//! samples n responses per prompt in batches, and hands each group to its sink. Weight updates
//! arrive as messages and are applied between batches — the copy itself was made on the
//! learner's side into fresh tensors, so generation never waits for one to land.
//!
//! Each batch samples from a stream seeded by the generator's seed and the batch's first prompt
//! uid, not by a running count, so a prompt issued again after a restart or a resume is sampled
//! exactly as it would have been. A restarted generator takes no prompt until the learner's
//! current weights have arrived.

use std::sync::Arc;
use std::time::Instant;

use grlhf_models::generation::GenerationConfig;
use grlhf_models::sampling::SamplingParams;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::activity::{ActivityLog, Milestone};
use crate::device_worker::DeviceWorker;
use crate::ledger::Ledger;
use crate::prompt_source::PromptSourceMsg;
use crate::protocol::{GroupSink, Rollout, RolloutGroup, Version, WeightUpdate};
use crate::vl_engine::VlEngine;

/// Sampling settings of a generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Prompts per generation batch (each sampled `group_size` times).
    pub batch_prompts: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            batch_prompts: 2,
            max_new_tokens: 16,
            temperature: 1.0,
            top_p: None,
            top_k: None,
        }
    }
}

/// The prompt's token ids and its n rollouts, as a generation batch returns them.
type GeneratedGroup = (Vec<i64>, Vec<Rollout>);

pub enum GeneratorMsg {
    /// Take prompts and generate one batch (sent to itself, and by the source's waker).
    Step,
    Weights(WeightUpdate),
    Stop,
    /// Fail on purpose (fault injection): the next batch panics after taking its prompts, as a
    /// generator crashing mid-generation would.
    Fault,
}

#[derive(Clone)]
pub struct GeneratorArgs {
    pub name: String,
    pub model_dir: std::path::PathBuf,
    pub device: Device,
    pub kind: Kind,
    pub group_size: usize,
    pub config: GeneratorConfig,
    pub seed: u64,
    pub source: ActorRef<PromptSourceMsg>,
    pub sink: Arc<dyn GroupSink>,
    pub activity: ActivityLog,
    pub ledger: Ledger,
    /// Weights (a safetensors file) to load over `model_dir`'s, at this version (a resume).
    pub start_from: Option<(std::path::PathBuf, Version)>,
    /// Take no prompt until a weight update arrives (a restart: the learner sends its current
    /// weights).
    pub await_weights: bool,
}

pub struct GeneratorState {
    args: GeneratorArgs,
    worker: DeviceWorker<VlEngine>,
    version: Version,
    pending: Option<WeightUpdate>,
    batches: u64,
    stopped: bool,
    /// An injected fault is pending.
    fault: bool,
}

pub struct Generator;

/// Copies `tensors` into the engine's parameters in place (names must match).
pub fn apply_weights(
    engine: &mut VlEngine,
    tensors: &[(String, tch::Tensor)],
) -> Result<(), String> {
    crate::weight_sync::apply(engine.model.var_store(), tensors)
}

impl Generator {
    async fn apply_pending(state: &mut GeneratorState) -> Result<(), ActorProcessingErr> {
        let Some(update) = state.pending.take() else {
            return Ok(());
        };
        if update.version <= state.version && state.batches > 0 {
            tracing::warn!(generator = %state.args.name, "ignoring weights v{} (have v{})", update.version, state.version);
            return Ok(());
        }
        let start = state.args.activity.now();
        let version = update.version;
        let update = state
            .worker
            .run(move |engine: &mut VlEngine| {
                apply_weights(engine, &update.tensors).map(|()| update)
            })
            .await??;
        if let Some(recycle) = update.recycle {
            let _ = recycle.send(update.tensors);
        }
        state
            .args
            .activity
            .record(&state.args.name, "sync", start, state.args.activity.now());
        state.version = version;
        state.args.activity.note_version(&state.args.name, version);
        Ok(())
    }
}

impl Actor for Generator {
    type Msg = GeneratorMsg;
    type State = GeneratorState;
    type Arguments = GeneratorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (dir, device, kind) = (args.model_dir.clone(), args.device, args.kind);
        let start_from = args.start_from.clone();
        let worker = DeviceWorker::spawn(&args.name, move || {
            let weights = start_from.as_ref().map(|(path, _)| path.as_path());
            VlEngine::load_with(&dir, device, kind, weights)
        })?;
        if !args.await_weights {
            myself.cast(GeneratorMsg::Step)?;
        }
        Ok(GeneratorState {
            version: args.start_from.as_ref().map_or(0, |(_, v)| *v),
            args,
            worker,
            pending: None,
            batches: 0,
            stopped: false,
            fault: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GeneratorMsg::Weights(update) => {
                metrics::histogram!("grlhf_weight_sync_ms").record(update.copy_ms);
                // A newer update replaces one not yet applied (double buffering).
                state.pending = Some(update);
                if state.args.await_weights {
                    state.args.await_weights = false;
                    myself.cast(GeneratorMsg::Step)?;
                }
            }
            GeneratorMsg::Fault => state.fault = true,
            GeneratorMsg::Stop => {
                state.stopped = true;
                myself.stop(None);
            }
            GeneratorMsg::Step => {
                if state.stopped {
                    return Ok(());
                }
                Self::apply_pending(state).await?;
                let me = myself.clone();
                let waker: crate::prompt_source::Waker = Box::new(move || {
                    let _ = me.cast(GeneratorMsg::Step);
                });
                let max = state.args.config.batch_prompts;
                let prompts = ractor::call!(state.args.source, |reply| PromptSourceMsg::Take {
                    max,
                    waker,
                    reply
                })?;
                if prompts.is_empty() {
                    return Ok(()); // the waker brings us back
                }
                for (item, _) in &prompts {
                    state.args.ledger.hold(item.uid, myself.get_id());
                    state.args.activity.mark(item.uid, Milestone::Taken);
                }
                if state.fault {
                    panic!(
                        "injected fault: generator {} fails holding {} prompts",
                        state.args.name,
                        prompts.len()
                    );
                }
                let n = state.args.group_size;
                let config = state.args.config.clone();
                let seed = state
                    .args
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add(prompts[0].0.uid);
                let version = state.version;
                let started = Instant::now();
                let start = state.args.activity.now();
                let specs: Vec<_> = prompts.iter().map(|(_, s)| s.clone()).collect();
                let result = state
                    .worker
                    .run(
                        move |engine: &mut VlEngine| -> Result<Vec<GeneratedGroup>, String> {
                            let encoded = specs
                                .iter()
                                .map(|s| engine.encode(&s.system, &s.user, s.image.as_deref()))
                                .collect::<Result<Vec<_>, _>>()?;
                            let batch: Vec<_> = encoded
                                .iter()
                                .flat_map(|e| std::iter::repeat_n(e, n))
                                .collect();
                            let generation = GenerationConfig {
                                max_new_tokens: config.max_new_tokens,
                                sampling: SamplingParams {
                                    temperature: config.temperature,
                                    top_k: config.top_k,
                                    top_p: config.top_p,
                                },
                                stop_token_ids: engine.stop_ids.clone(),
                                seed,
                            };
                            let sequences = engine.generate(&batch, &generation)?;
                            let mut out = Vec::new();
                            for (i, e) in encoded.iter().enumerate() {
                                let rollouts = sequences[i * n..(i + 1) * n]
                                    .iter()
                                    .map(|s| Rollout {
                                        text: engine.decode(&s.tokens),
                                        tokens: s.tokens.clone(),
                                        logprobs: s.logprobs.clone(),
                                        finish_reason: s.finish_reason,
                                    })
                                    .collect();
                                out.push((e.prompt.tokens.clone(), rollouts));
                            }
                            Ok(out)
                        },
                    )
                    .await?;
                let end = state.args.activity.now();
                state
                    .args
                    .activity
                    .record(&state.args.name, "generate", start, end);
                state.batches += 1;
                let generate_ms = started.elapsed().as_secs_f64() * 1e3;
                match result {
                    Ok(groups) => {
                        let tokens: usize = groups
                            .iter()
                            .flat_map(|g| g.1.iter())
                            .map(|r| r.tokens.len())
                            .sum();
                        metrics::counter!("grlhf_generated_tokens").increment(tokens as u64);
                        state.args.activity.add("generated_tokens", tokens as u64);
                        state
                            .args
                            .activity
                            .add("generated_samples", (groups.len() * n) as u64);
                        for ((item, spec), (prompt_tokens, rollouts)) in
                            prompts.into_iter().zip(groups)
                        {
                            let group = RolloutGroup {
                                prompt: item,
                                system: spec.system,
                                user: spec.user,
                                prompt_tokens,
                                rollouts,
                                policy_version: version,
                                generator: state.args.name.clone(),
                                generate_ms,
                                temperature: state.args.config.temperature,
                            };
                            let uid = group.prompt.uid;
                            state.args.activity.mark(uid, Milestone::Generated);
                            if let Err(e) = state.args.sink.send_group(group) {
                                tracing::warn!(
                                    "generator {}: sink refused a group: {e}",
                                    state.args.name
                                );
                                state.args.ledger.dropped(uid, "sink_closed");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!("generator {}: generation failed: {e}", state.args.name);
                        for (item, _) in prompts {
                            state.args.ledger.dropped(item.uid, "generation_error");
                        }
                    }
                }
                myself.cast(GeneratorMsg::Step)?;
            }
        }
        Ok(())
    }
}
