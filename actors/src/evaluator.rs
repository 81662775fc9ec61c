//! The evaluator: periodic held-out evaluation of the policy with a pluggable metric.
//!
//! It drives an [`EvalEngine`] on its device thread — its own policy replica, or one on a
//! worker node — which receives weights like a generator, every `every` learner steps, and
//! answers each held-out prompt greedily, scored by an
//! [`AnswerMetric`](crate::eval_metric::AnswerMetric) (built in: the world's
//! oracle, word F1 with the reference; or a user's kind). It evaluates the starting weights
//! (version 0, or a resumed checkpoint's) when it starts. When a remote engine's worker is
//! unreachable, that version's evaluation is skipped with a warning (the next one tries again):
//! evaluation watches the run, it must not stop it.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::activity::ActivityLog;
use crate::device_worker::DeviceWorker;
use crate::error::ActorError;
pub use crate::eval_engine::{evaluate_prompts, EvalStats};
use crate::eval_engine::{EvalEngine, EvalEngineBuilder};
use crate::protocol::{Version, WeightUpdate};

pub enum EvaluatorMsg {
    Weights(WeightUpdate),
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for EvaluatorMsg {}

pub struct EvaluatorArgs {
    pub name: String,
    /// Builds the engine on the evaluator's device thread.
    pub engine: EvalEngineBuilder,
    pub activity: ActivityLog,
    pub results: flume::Sender<EvalStats>,
    /// Weights (a safetensors file) to load over `model_dir`'s, at this version (a resume).
    pub start_from: Option<(std::path::PathBuf, Version)>,
}

pub struct EvaluatorState {
    args: EvaluatorArgs,
    worker: DeviceWorker<Box<dyn EvalEngine>>,
}

pub struct Evaluator;

impl Evaluator {
    /// Tells the run that `version` will not be evaluated (it counts the evaluations it waits
    /// for), and why.
    fn skip(state: &EvaluatorState, version: Version, why: String) {
        tracing::warn!(
            "{}: evaluation of v{version} skipped: {why}",
            state.args.name
        );
        let _ = state.args.results.send(EvalStats {
            version,
            skipped: Some(why),
            ..EvalStats::default()
        });
    }

    async fn evaluate(
        state: &mut EvaluatorState,
        version: Version,
    ) -> Result<(), ActorProcessingErr> {
        let start = state.args.activity.now();
        let evaluated = state
            .worker
            .run(move |engine: &mut Box<dyn EvalEngine>| engine.evaluate(version))
            .await?;
        let stats = match evaluated {
            Ok(stats) => stats,
            Err(ActorError::Unreachable(why)) => {
                Self::skip(state, version, why);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
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
        let (build, start_from) = (args.engine.clone(), args.start_from.clone());
        let worker = DeviceWorker::spawn(&args.name, move || {
            build(start_from.as_ref().map(|(path, _)| path.as_path()))
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
        let applied = state
            .worker
            .run(move |engine: &mut Box<dyn EvalEngine>| engine.apply_weights(&update.tensors))
            .await?;
        match applied {
            Ok(()) => Self::evaluate(state, version).await,
            Err(ActorError::Unreachable(why)) => {
                Self::skip(state, version, why);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
