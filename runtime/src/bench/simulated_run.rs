//! A run config's topology with simulated generators, judges and learner: the real prompt
//! source, judge actors, judge pool, replay buffer, ledger and activity log, with a
//! [`CostModel`] in place of every model. Generators and judges count as the config says
//! (every `[[judge]]` table's `count`, whatever its kind); prompts are synthetic.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use grlhf_actors::activity::ActivityLog;
use grlhf_actors::generator::GeneratorMsg;
use grlhf_actors::judge::{Judge, JudgeActor, JudgeArgs, JudgePool};
use grlhf_actors::learner::{StepStats, WeightSubscriber};
use grlhf_actors::ledger::Ledger;
use grlhf_actors::prompt_source::{PromptSource, PromptSourceArgs, PromptSourceMsg, PromptSpec};
use grlhf_actors::protocol::{Control, ScoredSink};
use grlhf_actors::replay_buffer::{BufferArgs, BufferMsg, ReplayBuffer};
use grlhf_actors::simulated::generator::{SimGenerator, SimGeneratorArgs};
use grlhf_actors::simulated::judge::SimJudge;
use grlhf_actors::simulated::learner::{SimLearner, SimLearnerArgs};
use grlhf_actors::simulated::CostModel;
use indicatif::ProgressBar;
use ractor::Actor;

use crate::run::{summarize, RunOutcome};
use crate::run_config::RunConfig;

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

/// Runs `config` with every role simulated by `cost`.
pub fn run_simulated(config: &RunConfig, cost: &CostModel, bar: ProgressBar) -> Result<RunOutcome> {
    std::fs::create_dir_all(&config.run_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(topology(config, cost, bar))
}

async fn topology(config: &RunConfig, cost: &CostModel, bar: ProgressBar) -> Result<RunOutcome> {
    let ledger = Ledger::new();
    let activity = ActivityLog::new();
    let eta = config.effective_staleness();
    let (source, source_handle) = Actor::spawn(
        None,
        PromptSource,
        PromptSourceArgs {
            prompts: synthetic_prompts(4096),
            batch_groups: config.batch_groups,
            max_staleness: eta,
            seed: config.seed,
            ledger: ledger.clone(),
            resume: None,
        },
    )
    .await?;
    let (buffer, buffer_handle) = Actor::spawn(
        None,
        ReplayBuffer,
        BufferArgs {
            batch_groups: config.batch_groups,
            max_staleness: eta,
            stale_policy: config.stale_policy,
            ledger: ledger.clone(),
            restore: Vec::new(),
        },
    )
    .await?;
    let sink: Arc<dyn ScoredSink> = Arc::new(buffer.clone());
    let mut judges = Vec::new();
    let mut judge_handles = Vec::new();
    for j in 0..judge_count(config) {
        let judge_cost = cost.clone();
        let (judge, handle) = Actor::spawn(
            None,
            JudgeActor,
            JudgeArgs {
                name: format!("judge-0-{j}"),
                build: Box::new(move || {
                    Ok(Box::new(SimJudge { cost: judge_cost }) as Box<dyn Judge>)
                }),
                sink: sink.clone(),
                activity: activity.clone(),
                ledger: ledger.clone(),
            },
        )
        .await
        .map_err(|e| anyhow!("starting simulated judge-{j}: {e}"))?;
        judges.push(judge);
        judge_handles.push(handle);
    }
    let pool = Arc::new(JudgePool::new(judges.clone()));
    let mut generators = Vec::new();
    let mut generator_handles = Vec::new();
    for g in 0..config.generator.count {
        let (generator, handle) = Actor::spawn(
            None,
            SimGenerator,
            SimGeneratorArgs {
                name: format!("generator-{g}"),
                cost: cost.clone(),
                group_size: config.group_size,
                batch_prompts: config.generator.batch_prompts,
                source: source.clone(),
                sink: pool.clone(),
                activity: activity.clone(),
                ledger: ledger.clone(),
            },
        )
        .await
        .map_err(|e| anyhow!("starting simulated generator-{g}: {e}"))?;
        generators.push(generator);
        generator_handles.push(handle);
    }
    let subscribers = generators
        .iter()
        .enumerate()
        .map(|(g, actor)| {
            WeightSubscriber::generator(&format!("generator-{g}"), actor.clone(), tch::Device::Cpu)
        })
        .collect();
    let (stats_tx, stats_rx) = flume::unbounded::<StepStats>();
    let (_learner, learner_handle) = Actor::spawn(
        None,
        SimLearner,
        SimLearnerArgs {
            name: "learner".into(),
            cost: cost.clone(),
            total_steps: config.steps,
            buffer: buffer.clone(),
            source: source.clone(),
            subscribers,
            ledger: ledger.clone(),
            activity: activity.clone(),
            stats: stats_tx,
        },
    )
    .await?;
    let mut steps = Vec::new();
    // A stalled topology must fail, not hang: no step may take longer than the slowest stage
    // run back to back, with a wide margin.
    let patience = Duration::from_secs_f64(
        60.0 + 100.0
            * (cost.generate_s(config.batch_groups, config.group_size)
                + config.batch_groups as f64 * cost.judge_s(config.group_size)
                + cost.learn_s(config.batch_groups * config.group_size * cost.response_tokens)),
    );
    loop {
        match tokio::time::timeout(patience, stats_rx.recv_async()).await {
            Ok(Ok(stats)) => {
                bar.set_position(stats.step + 1);
                steps.push(stats);
            }
            Ok(Err(_)) => break,
            Err(_) => bail!(
                "simulated run stalled: no learner step in {:.0} s after step {}",
                patience.as_secs_f64(),
                steps.len()
            ),
        }
    }
    let _ = learner_handle.await;
    let end = activity.now();
    source.cast(PromptSourceMsg::Control(Control::Drain))?;
    for generator in &generators {
        let _ = generator.cast(GeneratorMsg::Stop);
    }
    for handle in generator_handles {
        let _ = tokio::time::timeout(Duration::from_secs(120), handle).await;
    }
    for judge in &judges {
        judge.stop(None);
    }
    for handle in judge_handles {
        let _ = tokio::time::timeout(Duration::from_secs(120), handle).await;
    }
    let buffer_stats = ractor::call!(buffer, BufferMsg::Stats).ok();
    buffer.stop(None);
    source.stop(None);
    let _ = buffer_handle.await;
    let _ = source_handle.await;
    if steps.len() < config.steps as usize {
        bail!(
            "the simulated learner stopped after {} of {} steps",
            steps.len(),
            config.steps
        );
    }
    let summary = summarize(
        config,
        &steps,
        &ledger.snapshot(),
        ledger.violations(),
        &activity,
        end,
        false,
        buffer_stats.map(|s| s.max_staleness_served),
    );
    Ok(RunOutcome {
        summary,
        steps,
        evals: Vec::new(),
        activity,
        run_dir: config.run_dir.clone(),
    })
}
