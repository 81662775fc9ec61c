//! The plan of a real run: every role of a run config, with Qwen2-VL engines for generators and
//! learner, and the registry's factories for judges and post-judge stages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use grlhf_actors::eval_engine::{local_eval_engine, EvalEngineBuilder, EvalSettings};
use grlhf_actors::grpo::Grpo;
use grlhf_actors::learner::{CheckpointPlan, LearnerConfig};
use grlhf_actors::policy_loss::PolicyLoss;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::registry::{JudgeContext, LossContext, MetricContext, Registry, WorkflowContext};
use grlhf_actors::rollout_engine::{vl_rollout_engine, RolloutEngineBuilder};
use grlhf_actors::rollout_workflow::RolloutWorkflow;
use grlhf_actors::supervisor::JudgeRebuild;
use grlhf_actors::train_engine::GrpoTrainer;
use tch::{Device, Kind};

use super::plan::{
    EvaluatorPlan, GeneratorPlan, JudgePlan, LearnerPlan, Placement, StagePlan, TopologyPlan,
};
use crate::cluster_config::{judge_table, node_of, worker_node};
use crate::run_config::{EvaluatorConfig, RunConfig};

/// Every device a config names, parsed (errors name the field).
pub struct Devices {
    pub learner: Device,
    pub generators: Vec<Device>,
    /// Per `[[judge]]` table.
    pub judges: Vec<Device>,
    pub evaluator: Option<Device>,
}

impl Devices {
    pub fn parse(config: &RunConfig) -> Result<Devices> {
        let learner =
            (config.learner.device.device()).map_err(|e| anyhow!("learner.device: {e}"))?;
        let generators = (0..config.generator.count)
            .map(|i| {
                (config.generator.device_of(i).device())
                    .map_err(|e| anyhow!("generator.devices: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let judges = config
            .judges
            .iter()
            .enumerate()
            .map(|(i, t)| (t.device.device()).map_err(|e| anyhow!("judge[{i}].device: {e}")))
            .collect::<Result<Vec<_>>>()?;
        let evaluator = match &config.evaluator {
            Some(eval) => {
                Some((eval.device.device()).map_err(|e| anyhow!("evaluator.device: {e}"))?)
            }
            None => None,
        };
        Ok(Devices {
            learner,
            generators,
            judges,
            evaluator,
        })
    }
}

/// A TOML table as the JSON object kind factories parse.
pub fn json_table(table: &toml::Table) -> Result<serde_json::Value> {
    use anyhow::Context;
    serde_json::to_value(table).context("converting a TOML table")
}

/// What a real run needs beyond its config.
pub struct RealRun<'a> {
    pub config: &'a RunConfig,
    /// Names the config file in errors.
    pub config_path: &'a Path,
    pub registry: Arc<Registry>,
    pub prompts: Vec<PromptSpec>,
    /// The policy checkpoint every generator, the learner and the evaluator start from.
    pub policy: PathBuf,
    pub kind: Kind,
    pub devices: Devices,
    /// Held-out prompts for the evaluator (with `[evaluator]`).
    pub eval_prompts: Vec<PromptSpec>,
    /// What a resumed run must agree on (written into every checkpoint).
    pub shape: grlhf_actors::checkpoint::RunShape,
    /// The head of a multi-process run: builds the stand-ins of roles placed on workers.
    /// `None`: one process, and the config must not place any role elsewhere.
    pub remote: Option<Arc<dyn RemoteRoles>>,
}

/// Builds the head's stand-ins for roles hosted on worker nodes (`crate::distributed`).
pub trait RemoteRoles {
    /// The engine of generator `generator`, hosted on worker `node`.
    fn engine(&self, generator: &str, node: &str) -> RolloutEngineBuilder;
    /// The judge `judge`, hosted on worker `node`.
    fn judge(&self, judge: &str, node: &str) -> JudgeRebuild;
    /// The evaluator's engine, hosted on worker `node`.
    fn evaluator(&self, node: &str) -> EvalEngineBuilder;
}

/// The error for a role placed on a worker in a one-process run.
fn needs_head(config_path: &Path, field: &str, role: &str, node: &str) -> anyhow::Error {
    anyhow!(
        "{}: {field} places {role} on node `{node}`: start this process as the head (`grlhf run CONFIG --listen ADDR:PORT`) and the worker with `--join ADDR:PORT --node {node}`",
        config_path.display()
    )
}

/// The plan of `run`'s config.
pub fn config_plan(run: RealRun<'_>) -> Result<TopologyPlan> {
    let RealRun {
        config,
        config_path,
        registry,
        prompts,
        policy,
        kind,
        devices,
        eval_prompts,
        shape,
        remote,
    } = run;
    let stages = config
        .stages
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(StagePlan {
                kind: t.kind.clone(),
                table: json_table(&t.settings)?,
                label: format!("{}: post_judge[{i}] ({})", config_path.display(), t.kind),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let judges = judge_plans(config, config_path, &registry, &devices.judges, kind)?;
    let judges = place_judges(config, config_path, judges, remote.as_deref())?;
    let workflow = workflow_of(config, config_path, &registry)?;
    let generators = devices
        .generators
        .iter()
        .enumerate()
        .map(|(g, &device)| {
            let name = format!("generator-{g}");
            let (placement, engine) = match node_of(&config.generator.nodes, g) {
                None => (
                    Placement::Local(device),
                    vl_rollout_engine(policy.clone(), device, kind),
                ),
                Some(node) => {
                    let Some(remote) = &remote else {
                        return Err(needs_head(config_path, "generator.nodes", &name, node));
                    };
                    let engine = remote.engine(&name, node);
                    let node = node.to_string();
                    (Placement::Remote { node }, engine)
                }
            };
            Ok(GeneratorPlan {
                name,
                placement,
                engine,
                workflow: workflow.clone(),
                config: config.generator.sampling(),
                seed: config.seed.wrapping_add(g as u64 * 7919),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let loss = loss_of(config, config_path, &registry)?;
    let learner = learner_plan(config, &policy, devices.learner, kind, shape, loss);
    let evaluator = match (&config.evaluator, devices.evaluator) {
        (Some(eval), Some(device)) => {
            let (placement, engine) = match worker_node(&eval.node) {
                None => {
                    let local = (eval, config_path, registry.as_ref(), eval_prompts);
                    let engine = evaluator_engine(local, &policy, device, kind)?;
                    (Placement::Local(device), engine)
                }
                Some(node) => {
                    let Some(remote) = &remote else {
                        return Err(needs_head(
                            config_path,
                            "evaluator.node",
                            "the evaluator",
                            node,
                        ));
                    };
                    let node = node.to_string();
                    (
                        Placement::Remote { node: node.clone() },
                        remote.evaluator(&node),
                    )
                }
            };
            Some(EvaluatorPlan {
                placement,
                engine,
                every: eval.every,
            })
        }
        _ => None,
    };
    let mut plan = TopologyPlan::new(config, prompts, judges, generators, learner);
    plan.registry = registry;
    plan.stages = stages;
    plan.evaluator = evaluator;
    plan.faults = config.faults.clone();
    Ok(plan)
}

/// The evaluator's own engine (a policy replica in the process that runs it: the head, or the
/// worker its `node` names), with its prompts and the registry's metric.
pub fn evaluator_engine(
    (eval, config_path, registry, prompts): (&EvaluatorConfig, &Path, &Registry, Vec<PromptSpec>),
    policy: &Path,
    device: Device,
    kind: Kind,
) -> Result<EvalEngineBuilder> {
    let settings = serde_json::Value::Object(eval.metric_settings.clone().unwrap_or_default());
    let metric = registry
        .metric(&eval.metric, &settings, MetricContext::default())
        .map_err(|e| anyhow!("{}: evaluator.metric: {e}", config_path.display()))?;
    let settings = EvalSettings {
        prompts,
        metric,
        max_new_tokens: eval.max_new_tokens,
        batch: eval.batch,
    };
    Ok(local_eval_engine(
        policy.to_path_buf(),
        device,
        kind,
        settings,
    ))
}

/// Judges of every `[[judge]]` table, `count` each; a restart asks the registry's factory again.
fn judge_plans(
    config: &RunConfig,
    config_path: &Path,
    registry: &Arc<Registry>,
    devices: &[Device],
    kind: Kind,
) -> Result<Vec<JudgePlan>> {
    let mut plans = Vec::new();
    for (i, table) in config.judges.iter().enumerate() {
        let device = devices[i];
        for c in 0..table.count {
            let name = format!("judge-{i}-{c}");
            let (registry, kind_name, settings) = (
                registry.clone(),
                table.kind.clone(),
                json_table(&table.settings)?,
            );
            let (context_name, reward_model) = (name.clone(), config.model.reward_model.clone());
            let seed = config.seed + c as u64;
            plans.push(JudgePlan {
                name,
                placement: Placement::Local(device),
                rebuild: Arc::new(move || {
                    let context = JudgeContext {
                        name: context_name.clone(),
                        device,
                        kind,
                        reward_model: reward_model.clone(),
                        seed,
                    };
                    registry.judge(&kind_name, &settings, context)
                }),
                label: format!("{}: judge[{i}] ({})", config_path.display(), table.kind),
            });
        }
    }
    Ok(plans)
}

/// Judges of a `[[judge]]` table with a `node` get the head's stand-in instead of their own
/// rebuild (which the worker runs).
fn place_judges(
    config: &RunConfig,
    config_path: &Path,
    mut plans: Vec<JudgePlan>,
    remote: Option<&dyn RemoteRoles>,
) -> Result<Vec<JudgePlan>> {
    for plan in &mut plans {
        let table = judge_table(&plan.name).map(|i| &config.judges[i]);
        let Some(node) = table.and_then(|t| worker_node(&t.node)) else {
            continue;
        };
        let Some(remote) = remote else {
            return Err(needs_head(config_path, "judge.node", &plan.name, node));
        };
        plan.rebuild = remote.judge(&plan.name, node);
        plan.placement = Placement::Remote {
            node: node.to_string(),
        };
    }
    Ok(plans)
}

/// The judges of `config` placed on worker `node`: their names and rebuilds (what the worker
/// hosts).
pub fn judges_on(
    config: &RunConfig,
    config_path: &Path,
    registry: &Arc<Registry>,
    devices: &Devices,
    kind: Kind,
    node: &str,
) -> Result<Vec<(String, JudgeRebuild, Device)>> {
    let plans = judge_plans(config, config_path, registry, &devices.judges, kind)?;
    Ok(plans
        .into_iter()
        .filter_map(|plan| {
            let i = judge_table(&plan.name)?;
            (worker_node(&config.judges[i].node) == Some(node))
                .then(|| (plan.name, plan.rebuild, devices.judges[i]))
        })
        .collect())
}

/// The config's `[workflow]` (single turn when unset).
pub fn workflow_of(
    config: &RunConfig,
    config_path: &Path,
    registry: &Registry,
) -> Result<Arc<dyn RolloutWorkflow>> {
    let (kind, table) = match &config.workflow {
        Some(t) => (t.kind.as_str(), t.settings_value()),
        None => ("single_turn", serde_json::json!({})),
    };
    let context = WorkflowContext {
        group_size: config.group_size,
        max_new_tokens: config.generator.max_new_tokens,
        seed: config.seed,
    };
    registry
        .workflow(kind, &table, context)
        .map_err(|e| anyhow!("{}: workflow: {e}", config_path.display()))
}

/// The config's loss: `[learner.loss]`, else GRPO with `[learner.grpo]`.
pub fn loss_of(
    config: &RunConfig,
    config_path: &Path,
    registry: &Registry,
) -> Result<Arc<dyn PolicyLoss>> {
    let Some(table) = &config.learner.loss else {
        return Ok(Arc::new(Grpo(config.learner.grpo)));
    };
    let context = LossContext {
        group_size: config.group_size,
        max_new_tokens: config.generator.max_new_tokens,
    };
    registry
        .loss(&table.kind, &table.settings_value(), context)
        .map_err(|e| anyhow!("{}: learner.loss: {e}", config_path.display()))
}

fn learner_plan(
    config: &RunConfig,
    policy: &Path,
    device: Device,
    kind: Kind,
    shape: grlhf_actors::checkpoint::RunShape,
    loss: Arc<dyn PolicyLoss>,
) -> LearnerPlan {
    let (model_dir, learner_config): (PathBuf, LearnerConfig) =
        (policy.to_path_buf(), config.learner.clone());
    let engine_config = learner_config.clone();
    let kl_beta = loss.kl_beta();
    LearnerPlan {
        placement: Placement::Local(device),
        engine: Box::new(move |resume| {
            GrpoTrainer::builder(model_dir, device, kind, engine_config, kl_beta, resume)()
        }),
        config: learner_config,
        loss,
        save_dir: Some(config.run_dir.join("policy")),
        checkpoints: Some(CheckpointPlan {
            dir: config.run_dir.join("checkpoints"),
            every: config.checkpoint.every,
            keep_last: config.checkpoint.keep_last,
            shape,
        }),
        faults: config.faults.learner(config.seed),
    }
}
