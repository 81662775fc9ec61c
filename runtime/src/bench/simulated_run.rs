//! A run config's topology with simulated engines: the same [`Topology`] a real run spawns —
//! prompt source, supervisor, judge pool with ledger holds, replay buffer, dropped-prompt
//! replacement, generator, judge and learner actors — with a [`CostModel`] engine in place of
//! every model. Generators and judges count as the config says (every `[[judge]]` table's
//! `count`, whatever its kind); prompts are synthetic.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use grlhf_actors::judge::Judge;
use grlhf_actors::learner::StepStats;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::registry::Registry;
use grlhf_actors::rollout_engine::RolloutEngine;
use grlhf_actors::simulated::generator::SimRolloutEngine;
use grlhf_actors::simulated::judge::SimJudge;
use grlhf_actors::simulated::learner::SimTrainEngine;
use grlhf_actors::simulated::CostModel;
use grlhf_actors::train_engine::TrainEngine;
use indicatif::ProgressBar;

use crate::run::RunOutcome;
use crate::run_config::RunConfig;
use crate::topology::config_plan::{loss_of, workflow_of};
use crate::topology::{
    GeneratorPlan, JudgePlan, LearnerPlan, Placement, Restored, Topology, TopologyPlan,
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

/// The plan of `config` with every engine simulated by `cost`, on the CPU. The config's workflow
/// and loss are the registry's kinds, as in a real run: a multi-turn workflow costs the cost
/// model's generation time for every turn it samples.
pub fn simulated_plan(
    config: &RunConfig,
    config_path: &Path,
    registry: &Registry,
    cost: &CostModel,
) -> Result<TopologyPlan> {
    let workflow = workflow_of(config, config_path, registry)?;
    let loss = loss_of(config, config_path, registry)?;
    let here = Placement::Local(tch::Device::Cpu);
    let judges = (0..judge_count(config))
        .map(|j| {
            let judge_cost = cost.clone();
            JudgePlan {
                name: format!("judge-0-{j}"),
                placement: here.clone(),
                rebuild: Arc::new(move || {
                    let cost = judge_cost.clone();
                    Ok(Box::new(move || {
                        Ok(Box::new(SimJudge { cost }) as Box<dyn Judge>)
                    }))
                }),
                label: format!("simulated judge-{j}"),
            }
        })
        .collect();
    let generators = (0..config.generator.count)
        .map(|g| {
            let generator_cost = cost.clone();
            GeneratorPlan {
                name: format!("generator-{g}"),
                placement: here.clone(),
                engine: Arc::new(move |_weights| {
                    Ok(Box::new(SimRolloutEngine {
                        cost: generator_cost.clone(),
                    }) as Box<dyn RolloutEngine>)
                }),
                workflow: workflow.clone(),
                config: config.generator.sampling(),
                seed: config.seed.wrapping_add(g as u64 * 7919),
            }
        })
        .collect();
    let learner_cost = cost.clone();
    let learner = LearnerPlan {
        placement: here,
        engine: Box::new(move |_resume| {
            Ok(Box::new(SimTrainEngine { cost: learner_cost }) as Box<dyn TrainEngine>)
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

/// Runs `config` with every role simulated by `cost`.
pub fn run_simulated(
    config: &RunConfig,
    config_path: &Path,
    registry: &Registry,
    cost: &CostModel,
    bar: ProgressBar,
) -> Result<RunOutcome> {
    std::fs::create_dir_all(&config.run_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let plan = simulated_plan(config, config_path, registry, cost)?;
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
        let summary = finished.summary(config);
        Ok(RunOutcome {
            summary,
            steps: finished.steps.clone().into_recent(),
            evals: Vec::new(),
            activity: finished.activity,
            run_dir: config.run_dir.clone(),
        })
    })
}
