//! Spawn: turns a [`TopologyPlan`] and what was restored into running actors. Order matters:
//! the source and buffer first (everything talks to them), the supervisor, then post-judge
//! stages built from the buffer backwards, judges under the supervisor behind the pool,
//! generators under the supervisor, the evaluator, and last the learner, which starts asking for
//! batches at once.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use grlhf_actors::activity::ActivityLog;
use grlhf_actors::evaluator::{EvalStats, Evaluator, EvaluatorArgs, EvaluatorMsg};
use grlhf_actors::generator::{GeneratorArgs, GeneratorMsg};
use grlhf_actors::judge::{JudgeMsg, JudgePool};
use grlhf_actors::learner::{Learner, LearnerArgs, LearnerOutcome, StepStats, WeightSubscriber};
use grlhf_actors::ledger::Ledger;
use grlhf_actors::prompt_source::{PromptSource, PromptSourceArgs, PromptSourceMsg};
use grlhf_actors::protocol::{ScoredSink, Version};
use grlhf_actors::registry::StageContext;
use grlhf_actors::replay_buffer::{BufferArgs, ReplayBuffer};
use grlhf_actors::supervisor::{ActorSlot, JudgeSpec, Supervisor, SupervisorArgs, SupervisorMsg};
use ractor::{Actor, ActorRef};

use super::plan::{EvaluatorPlan, GeneratorPlan, JudgePlan, LearnerPlan, StagePlan};
use super::{Restored, StepHistory, Topology, TopologyPlan};

/// The actors every role talks to.
struct Core {
    activity: ActivityLog,
    ledger: Ledger,
    source: ActorRef<PromptSourceMsg>,
    supervisor: ActorRef<SupervisorMsg>,
}

impl Topology {
    /// Spawns every role of `plan`, starting from `restored` (empty for a fresh run).
    pub async fn spawn(mut plan: TopologyPlan, restored: Restored) -> Result<Topology> {
        let activity = ActivityLog::with_window(plan.activity_window);
        if let Some(path) = &plan.trace {
            open_trace(&activity, path, restored.learner.is_none())?;
        }
        let Restored {
            ledger,
            source: source_resume,
            buffer: restored_groups,
            learner: learner_resume,
            steps,
            reliability,
        } = restored;
        let start_version = learner_resume.as_ref().map_or(0, |r| r.version);
        let mut history = StepHistory::new(plan.steps_window);
        for stats in steps {
            history.push(stats);
        }
        let trained_at_start = ledger.snapshot().trained;
        let (core, source, buffer, supervisor) = spawn_core(
            &mut plan,
            &activity,
            &ledger,
            source_resume,
            restored_groups,
        )
        .await?;
        let buffer_sink: Arc<dyn ScoredSink> = Arc::new(buffer.0.clone());
        let sink = spawn_stages(&core, &plan.registry, plan.stages, buffer_sink).await?;
        let judges = spawn_judges(&core, plan.judges, sink).await?;
        let pool = Arc::new(JudgePool::new(judges).with_ledger(ledger.clone()));
        core.supervisor.cast(SupervisorMsg::Pool(pool.clone()))?;
        let start_weights = learner_resume
            .as_ref()
            .map(|r| (r.weights.clone(), r.version));
        let (generators, mut subscribers) = spawn_generators(
            &core,
            plan.generators,
            plan.group_size,
            &pool,
            &start_weights,
        )
        .await?;
        let (eval_tx, evals) = flume::unbounded::<EvalStats>();
        let (evaluator, every) = match plan.evaluator {
            Some(eval) => {
                let every = eval.every.max(1);
                let (evaluator, subscriber) =
                    spawn_evaluator(&core, eval, eval_tx, &start_weights).await?;
                subscribers.push(subscriber);
                (Some(evaluator), every)
            }
            None => (None, 1),
        };
        let evaluations_expected = match evaluator {
            Some(_) => {
                1 + (start_version + 1..=plan.steps)
                    .filter(|v| v % every == 0 || *v == plan.steps)
                    .count()
            }
            None => 0,
        };
        let (stats_tx, stats) = flume::unbounded::<StepStats>();
        let outcome = Arc::new(Mutex::new(LearnerOutcome::default()));
        let learner = spawn_learner(
            &core,
            plan.learner,
            LearnerWiring {
                steps: plan.steps,
                max_staleness: plan.max_staleness,
                buffer: buffer.0.clone(),
                subscribers,
                stats: stats_tx,
                resume: learner_resume,
                outcome: outcome.clone(),
            },
        )
        .await?;
        core.supervisor
            .cast(SupervisorMsg::Learner(learner.0.clone()))?;
        let stop_killing = Arc::new(AtomicBool::new(false));
        let kills = crate::faults::KillCounts::default();
        let killer = crate::faults::spawn_killer(
            &plan.faults,
            plan.seed,
            generators.clone(),
            pool.clone(),
            stop_killing.clone(),
            kills.clone(),
        );
        Ok(Topology {
            activity,
            ledger,
            source,
            buffer,
            supervisor,
            pool,
            generators,
            learner,
            evaluator,
            evaluations_expected,
            stats,
            evals,
            evals_seen: Vec::new(),
            evals_skipped: 0,
            outcome,
            killer,
            stop_killing,
            kills,
            start_version,
            trained_at_start,
            patience: plan.patience,
            steps: history,
            reliability,
        })
    }
}

type Spawned<M> = (ActorRef<M>, tokio::task::JoinHandle<()>);

/// The prompt source (whose replaceable drops the ledger reports back to it), the replay buffer
/// and the supervisor.
async fn spawn_core(
    plan: &mut TopologyPlan,
    activity: &ActivityLog,
    ledger: &Ledger,
    source_resume: Option<(grlhf_actors::prompt_source::SourceCheckpoint, Vec<u64>)>,
    restored_groups: Vec<grlhf_actors::protocol::ScoredGroup>,
) -> Result<(
    Core,
    Spawned<PromptSourceMsg>,
    Spawned<grlhf_actors::replay_buffer::BufferMsg>,
    Spawned<SupervisorMsg>,
)> {
    let source = Actor::spawn(
        None,
        PromptSource,
        PromptSourceArgs {
            prompts: std::mem::take(&mut plan.prompts),
            order: plan.prompt_order,
            batch_groups: plan.batch_groups,
            max_staleness: plan.max_staleness,
            seed: plan.seed,
            ledger: ledger.clone(),
            resume: source_resume,
        },
    )
    .await
    .map_err(|e| anyhow!("starting the prompt source: {e}"))?;
    // A prompt dropped before it could be trained is replaced, so no step waits for it.
    let replace = source.0.clone();
    ledger.on_replaceable_drop(Arc::new(move |_| {
        let _ = replace.cast(PromptSourceMsg::Replace(1));
    }));
    let buffer = Actor::spawn(
        None,
        ReplayBuffer,
        BufferArgs {
            batch_groups: plan.batch_groups,
            max_staleness: plan.max_staleness,
            stale_policy: plan.stale_policy,
            ledger: ledger.clone(),
            restore: restored_groups,
        },
    )
    .await?;
    let supervisor = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            policy: plan.supervision,
            source: source.0.clone(),
            ledger: ledger.clone(),
        },
    )
    .await?;
    let core = Core {
        activity: activity.clone(),
        ledger: ledger.clone(),
        source: source.0.clone(),
        supervisor: supervisor.0.clone(),
    };
    Ok((core, source, buffer, supervisor))
}

/// Post-judge stages, built from the buffer backwards so each knows its downstream; returns
/// the sink the judges hand scored groups to.
async fn spawn_stages(
    core: &Core,
    registry: &grlhf_actors::registry::Registry,
    stages: Vec<StagePlan>,
    mut sink: Arc<dyn ScoredSink>,
) -> Result<Arc<dyn ScoredSink>> {
    let count = stages.len();
    for (offset, stage) in stages.into_iter().rev().enumerate() {
        let i = count - 1 - offset;
        let context = StageContext {
            name: format!("{}-{i}", stage.kind),
            downstream: sink,
            ledger: core.ledger.clone(),
            activity: core.activity.clone(),
        };
        sink = registry
            .stage(&stage.kind, &stage.table, context)
            .map_err(|e| anyhow!("{}: {e}", stage.label))?
            .await
            .map_err(|e| anyhow!("{}: {e}", stage.label))?;
    }
    Ok(sink)
}

/// Streams `activity` to the trace at `path`: a fresh run in a used directory starts its own
/// trace, a resume continues it.
fn open_trace(activity: &ActivityLog, path: &std::path::Path, fresh: bool) -> Result<()> {
    if fresh && path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("removing the old trace {}", path.display()))?;
    }
    let label = format!("grlhf run (pid {})", std::process::id());
    activity
        .stream_to(path, &label)
        .with_context(|| format!("opening the trace file {}", path.display()))
}

/// Judges, each started by the supervisor (which restarts it from its plan's `rebuild`).
async fn spawn_judges(
    core: &Core,
    plans: Vec<JudgePlan>,
    sink: Arc<dyn ScoredSink>,
) -> Result<Vec<ActorRef<JudgeMsg>>> {
    let mut judges = Vec::new();
    for plan in plans {
        grlhf_actors::metric_series::register_actor(&plan.name);
        let spec = JudgeSpec {
            name: plan.name,
            rebuild: plan.rebuild,
            sink: sink.clone(),
            activity: core.activity.clone(),
            ledger: core.ledger.clone(),
        };
        let index = judges.len();
        let judge = ractor::call!(core.supervisor, |reply| SupervisorMsg::Judge {
            index,
            spec,
            reply
        })?
        .map_err(|e| anyhow!("{}: {e}", plan.label))?;
        judges.push(judge);
    }
    Ok(judges)
}

/// Generators under the supervisor, and their weight subscriptions (through the slot, so a
/// restarted generator gets the next update).
async fn spawn_generators(
    core: &Core,
    plans: Vec<GeneratorPlan>,
    group_size: usize,
    pool: &Arc<JudgePool>,
    start_from: &Option<(std::path::PathBuf, Version)>,
) -> Result<(Vec<ActorSlot<GeneratorMsg>>, Vec<WeightSubscriber>)> {
    let mut slots = Vec::new();
    let mut subscribers = Vec::new();
    for plan in plans {
        grlhf_actors::metric_series::register_actor(&plan.name);
        let device = plan.placement.device();
        let args = GeneratorArgs {
            name: plan.name.clone(),
            engine: plan.engine,
            workflow: plan.workflow,
            device,
            group_size,
            config: plan.config,
            seed: plan.seed,
            source: core.source.clone(),
            sink: pool.clone(),
            activity: core.activity.clone(),
            ledger: core.ledger.clone(),
            start_from: start_from.clone(),
            await_weights: false,
        };
        let slot = ractor::call!(core.supervisor, |reply| SupervisorMsg::Generator {
            args,
            reply
        })?
        .map_err(|e| anyhow!("starting {}: {e}", plan.name))?;
        let through = slot.clone();
        subscribers.push(WeightSubscriber {
            name: plan.name,
            device,
            every: 1,
            send: Box::new(move |update| {
                let actor = through.read().unwrap().clone();
                actor
                    .cast(GeneratorMsg::Weights(update))
                    .map_err(|e| e.to_string())
            }),
        });
        slots.push(slot);
    }
    Ok((slots, subscribers))
}

/// The held-out evaluator and its weight subscription (every `every`-th version).
async fn spawn_evaluator(
    core: &Core,
    plan: EvaluatorPlan,
    results: flume::Sender<EvalStats>,
    start_from: &Option<(std::path::PathBuf, Version)>,
) -> Result<(
    (ActorRef<EvaluatorMsg>, tokio::task::JoinHandle<()>),
    WeightSubscriber,
)> {
    let device = plan.placement.device();
    let (evaluator, handle) = Actor::spawn(
        None,
        Evaluator,
        EvaluatorArgs {
            name: "evaluator".into(),
            engine: plan.engine,
            activity: core.activity.clone(),
            results,
            start_from: start_from.clone(),
        },
    )
    .await
    .map_err(|e| anyhow!("starting the evaluator: {e}"))?;
    let address = evaluator.clone();
    let subscriber = WeightSubscriber {
        name: "evaluator".into(),
        device,
        every: plan.every,
        send: Box::new(move |update| {
            address
                .cast(EvaluatorMsg::Weights(update))
                .map_err(|e| e.to_string())
        }),
    };
    Ok(((evaluator, handle), subscriber))
}

/// What the learner is wired to, besides its own plan.
struct LearnerWiring {
    steps: u64,
    max_staleness: u64,
    buffer: ActorRef<grlhf_actors::replay_buffer::BufferMsg>,
    subscribers: Vec<WeightSubscriber>,
    stats: flume::Sender<StepStats>,
    resume: Option<grlhf_actors::learner::LearnerResume>,
    outcome: Arc<Mutex<LearnerOutcome>>,
}

async fn spawn_learner(
    core: &Core,
    plan: LearnerPlan,
    wiring: LearnerWiring,
) -> Result<(
    ActorRef<grlhf_actors::learner::LearnerMsg>,
    tokio::task::JoinHandle<()>,
)> {
    let (build, resume) = (plan.engine, wiring.resume.clone());
    Actor::spawn(
        None,
        Learner,
        LearnerArgs {
            name: "learner".into(),
            engine: Box::new(move || build(resume)),
            config: plan.config,
            loss: plan.loss,
            total_steps: wiring.steps,
            max_staleness: wiring.max_staleness,
            buffer: wiring.buffer,
            source: core.source.clone(),
            subscribers: wiring.subscribers,
            ledger: core.ledger.clone(),
            activity: core.activity.clone(),
            stats: wiring.stats,
            save_dir: plan.save_dir,
            checkpoints: plan.checkpoints,
            resume: wiring.resume,
            faults: plan.faults,
            outcome: wiring.outcome,
        },
    )
    .await
    .map_err(|e| anyhow!("starting the learner: {e}"))
}
