//! A run config's topology with simulated engines: the same [`Topology`] a real run spawns —
//! prompt source, supervisor, judge pool with ledger holds, replay buffer, dropped-prompt
//! replacement, generator, judge and learner actors — with a [`CostModel`] engine in place of
//! every model. Generators and judges count as the config says (every `[[judge]]` table's
//! `count`, whatever its kind); prompts are synthetic.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use grlhf_actors::judge::Judge;
use grlhf_actors::learner::StepStats;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::registry::Registry;
use grlhf_actors::rollout_engine::{RolloutEngine, RolloutEngineBuilder};
use grlhf_actors::simulated::generator::SimRolloutEngine;
use grlhf_actors::simulated::judge::SimJudge;
use grlhf_actors::simulated::learner::SimTrainEngine;
use grlhf_actors::simulated::CostModel;
use grlhf_actors::supervisor::JudgeRebuild;
use grlhf_actors::train_engine::TrainEngine;
use grlhf_cluster::role_host::HostedRole;
use indicatif::ProgressBar;

use crate::cluster_config::{node_of, worker_node};
use crate::distributed::{ClusterRun, HeadCluster};
use crate::run::RunOutcome;
use crate::run_config::RunConfig;
use crate::topology::config_plan::{loss_of, workflow_of};
use crate::topology::{
    GeneratorPlan, JudgePlan, LearnerPlan, Placement, RemoteRoles, Restored, Topology, TopologyPlan,
};

/// Judges the config places (every table's `count`).
pub fn judge_count(config: &RunConfig) -> usize {
    config.judges.iter().map(|j| j.count).sum::<usize>().max(1)
}

/// Synthetic prompts: enough distinct ones that admission never repeats within a short run.
fn synthetic_prompts(count: usize) -> Vec<PromptSpec> {
    (0..count)
        .map(|i| PromptSpec {
            id: format!("sim-{i}"),
            question: format!("simulated question {i}"),
            system: "You are a helpful assistant.".into(),
            user: format!("simulated question {i}"),
            image: None,
            reference: None,
            world: None,
        })
        .collect()
}

/// A simulated generator's engine.
fn simulated_engine(cost: &CostModel) -> RolloutEngineBuilder {
    let cost = cost.clone();
    Arc::new(move |_weights| {
        Ok(Box::new(SimRolloutEngine { cost: cost.clone() }) as Box<dyn RolloutEngine>)
    })
}

/// A simulated judge.
fn simulated_judge(cost: &CostModel) -> JudgeRebuild {
    let cost = cost.clone();
    Arc::new(move || {
        let cost = cost.clone();
        Ok(Box::new(move || {
            Ok(Box::new(SimJudge { cost }) as Box<dyn Judge>)
        }))
    })
}

/// Every simulated judge: its name (`judge-T-I`, as a real run names the I-th judge of
/// `[[judge]]` table T) and the worker its table places it on. A config without judges gets one.
fn simulated_judges(config: &RunConfig) -> Vec<(String, Option<&str>)> {
    let judges: Vec<_> = config
        .judges
        .iter()
        .enumerate()
        .flat_map(|(t, table)| {
            (0..table.count).map(move |i| (format!("judge-{t}-{i}"), worker_node(&table.node)))
        })
        .collect();
    if judges.is_empty() {
        return vec![("judge-0-0".to_string(), None)];
    }
    judges
}

/// The plan of `config` with every engine simulated by `cost`, on the CPU. The config's workflow
/// and loss are the registry's kinds, as in a real run: a multi-turn workflow costs the cost
/// model's generation time for every turn it samples.
///
/// With `remote` (a multi-process bench's head), the generators and judges the config places
/// on workers get the head's stand-ins, and the workers host the simulated engines
/// ([`simulated_hosted_on`]); the learner then publishes real bytes, so the weight plane carries
/// `weight_bytes` per version. Without it, placements are ignored: everything runs here.
pub fn simulated_plan(
    config: &RunConfig,
    config_path: &Path,
    registry: &Registry,
    cost: &CostModel,
    remote: Option<Arc<dyn RemoteRoles>>,
) -> Result<TopologyPlan> {
    let workflow = workflow_of(config, config_path, registry)?;
    let loss = loss_of(config, config_path, registry)?;
    let here = Placement::Local(tch::Device::Cpu);
    let place = |node: Option<&str>| match (&remote, node) {
        (Some(remote), Some(node)) => Some((remote.clone(), node.to_string())),
        _ => None,
    };
    let judges = simulated_judges(config)
        .into_iter()
        .map(|(name, node)| {
            let (placement, rebuild) = match place(node) {
                Some((remote, node)) => (
                    Placement::Remote { node: node.clone() },
                    remote.judge(&name, &node),
                ),
                None => (here.clone(), simulated_judge(cost)),
            };
            JudgePlan {
                label: format!("simulated {name}"),
                name,
                placement,
                rebuild,
            }
        })
        .collect();
    let generators = (0..config.generator.count)
        .map(|g| {
            let name = format!("generator-{g}");
            let node = remote
                .as_ref()
                .and_then(|_| node_of(&config.generator.nodes, g));
            let (placement, engine) = match place(node) {
                Some((remote, node)) => (
                    Placement::Remote { node: node.clone() },
                    remote.engine(&name, &node),
                ),
                None => (here.clone(), simulated_engine(cost)),
            };
            GeneratorPlan {
                name,
                placement,
                engine,
                workflow: workflow.clone(),
                config: config.generator.sampling(),
                seed: config.seed.wrapping_add(g as u64 * 7919),
            }
        })
        .collect();
    let learner_cost = cost.clone();
    let carry_weights = remote.is_some();
    let learner = LearnerPlan {
        placement: here,
        engine: Box::new(move |_resume| {
            let mut engine = SimTrainEngine::new(learner_cost);
            engine.carry_weights = carry_weights;
            Ok(Box::new(engine) as Box<dyn TrainEngine>)
        }),
        config: config.learner.clone(),
        loss,
        save_dir: None,
        checkpoints: None,
        faults: config.faults.learner(config.seed),
    };
    let mut plan = TopologyPlan::new(config, synthetic_prompts(4096), judges, generators, learner);
    // `[faults]` apply as in a real run (a benchmark normally has none): kills go through the
    // supervisor, NaN steps through the learner's skip.
    plan.faults = config.faults.clone();
    // A stalled topology must fail, not hang: no step may take longer than the slowest stage
    // run back to back, with a wide margin.
    plan.patience = Duration::from_secs_f64(
        60.0 + 100.0
            * (cost.generate_s(config.batch_groups, config.group_size)
                + config.batch_groups as f64 * cost.judge_s(config.group_size)
                + cost.learn_s(config.batch_groups * config.group_size * cost.response_tokens)),
    );
    Ok(plan)
}

/// What worker `node` of a multi-process bench hosts: the simulated engines of the generators
/// and the simulated judges the config places there, named as the head's plan names them.
pub fn simulated_hosted_on(
    config: &RunConfig,
    node: &str,
    cost: &CostModel,
) -> Vec<(String, HostedRole, tch::Device)> {
    let cpu = tch::Device::Cpu;
    let generators = (0..config.generator.count)
        .filter(|&g| node_of(&config.generator.nodes, g) == Some(node))
        .map(|g| {
            let engine = HostedRole::Engine(simulated_engine(cost));
            (format!("generator-{g}"), engine, cpu)
        });
    let judges = simulated_judges(config)
        .into_iter()
        .filter(|(_, at)| *at == Some(node))
        .map(|(name, _)| (name, HostedRole::Judge(simulated_judge(cost)), cpu));
    generators.chain(judges).collect()
}

/// Runs `config` with every role simulated by `cost`; with `listen`, as the head of a
/// multi-process run whose workers host the roles the config places on them
/// (`super::processes`).
pub fn run_simulated(
    config: &RunConfig,
    config_path: &Path,
    registry: &Registry,
    cost: &CostModel,
    bar: ProgressBar,
    listen: Option<SocketAddr>,
) -> Result<RunOutcome> {
    std::fs::create_dir_all(&config.run_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Held until the run ends: dropping it ends the workers' sessions, and they exit.
        let head = match listen {
            Some(listen) => {
                let run = ClusterRun::new(config_path)?;
                Some(HeadCluster::start(run, listen, config).await?)
            }
            None => None,
        };
        let remote = head.as_ref().map(HeadCluster::remote_roles);
        let plan = simulated_plan(config, config_path, registry, cost, remote)?;
        let mut topology = Topology::spawn(plan, Restored::default()).await?;
        let mut on_step = |stats: &StepStats| -> Result<()> {
            bar.set_position(stats.step + 1);
            Ok(())
        };
        let driven = topology.drive_steps(&mut on_step, false).await?;
        let finished = topology.drain(driven, &mut |_| Ok(())).await?;
        if finished.steps.count() < config.steps {
            bail!(
                "the simulated learner stopped after {} of {} steps",
                finished.steps.count(),
                config.steps
            );
        }
        let mut summary = finished.summary(config);
        if let Some(head) = &head {
            summary.remote_roles = head.stats().snapshot();
            summary.weights_transport = Some(head.transport.clone());
        }
        Ok(RunOutcome {
            summary,
            steps: finished.steps.clone().into_recent(),
            evals: Vec::new(),
            activity: finished.activity,
            run_dir: config.run_dir.clone(),
        })
    })
}
