//! What a run places: every role, how many of each, where, and with which engine. A plan is data
//! plus engine builders; [`super::Topology::spawn`] turns it into running actors. Real runs build
//! theirs from a config ([`super::config_plan`]); simulated runs put cost-model engines in the
//! same slots (`crate::bench::simulated_run`), so both get the same supervision, ledger and
//! routing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grlhf_actors::error::ActorError;
use grlhf_actors::eval_engine::EvalEngineBuilder;
use grlhf_actors::learner::{CheckpointPlan, LearnerConfig, LearnerFaults};
use grlhf_actors::policy_loss::PolicyLoss;
use grlhf_actors::prompt_source::{PromptOrder, PromptSpec};
use grlhf_actors::registry::Registry;
use grlhf_actors::replay_buffer::StalePolicy;
use grlhf_actors::rollout_engine::{GeneratorConfig, RolloutEngineBuilder};
use grlhf_actors::rollout_workflow::RolloutWorkflow;
use grlhf_actors::supervisor::{JudgeRebuild, RestartPolicy};
use grlhf_actors::train_engine::{LearnerResume, TrainEngine};
use tch::Device;

use crate::faults::FaultsConfig;
use crate::run_config::RunConfig;

/// Where a role runs: in this process on a device, or (generators) on a worker node, whose
/// engine the role's actor here drives over the cluster (`grlhf_cluster::remote_engine`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Local(Device),
    /// On worker `node` (its device is the worker's business: the same config names it).
    Remote {
        node: String,
    },
}

impl Placement {
    /// The device this process hands the role's weight updates over on: a remote role's
    /// updates are held on the CPU here and sent over the weight data plane.
    pub fn device(&self) -> Device {
        match self {
            Placement::Local(device) => *device,
            Placement::Remote { .. } => Device::Cpu,
        }
    }
}

/// One generator.
pub struct GeneratorPlan {
    pub name: String,
    pub placement: Placement,
    pub engine: RolloutEngineBuilder,
    /// What a trajectory is (`[workflow]`; single turn by default).
    pub workflow: Arc<dyn RolloutWorkflow>,
    pub config: GeneratorConfig,
    pub seed: u64,
}

/// One judge: rebuilt from `rebuild` whenever it (re)starts.
pub struct JudgePlan {
    pub name: String,
    pub placement: Placement,
    pub rebuild: JudgeRebuild,
    /// Names the judge in errors (`judge[i] (kind)`).
    pub label: String,
}

/// A post-judge stage, built by the registry's factory for `kind`.
pub struct StagePlan {
    pub kind: String,
    pub table: serde_json::Value,
    /// Names the stage in errors (`post_judge[i] (kind)`).
    pub label: String,
}

/// Builds the learner's engine on its device thread, resuming from the checkpoint if any.
pub type TrainEngineFactory =
    Box<dyn FnOnce(Option<LearnerResume>) -> Result<Box<dyn TrainEngine>, ActorError> + Send>;

/// The learner.
pub struct LearnerPlan {
    pub placement: Placement,
    pub engine: TrainEngineFactory,
    pub config: LearnerConfig,
    /// The loss kind (`[learner.loss]`; GRPO by default).
    pub loss: Arc<dyn PolicyLoss>,
    /// Where the final weights go.
    pub save_dir: Option<PathBuf>,
    pub checkpoints: Option<CheckpointPlan>,
    pub faults: LearnerFaults,
}

/// The held-out evaluator, fed every `every`-th version.
pub struct EvaluatorPlan {
    pub placement: Placement,
    /// Its policy replica, prompts and metric (here), or its stand-in for one on a worker.
    pub engine: EvalEngineBuilder,
    pub every: u64,
}

/// Everything [`super::Topology::spawn`] needs.
pub struct TopologyPlan {
    pub prompts: Vec<PromptSpec>,
    /// Shuffled per epoch, or as given (a prompt source kind's curriculum).
    pub prompt_order: PromptOrder,
    pub batch_groups: usize,
    pub group_size: usize,
    /// η as used (0 in a synchronous run).
    pub max_staleness: u64,
    pub stale_policy: StalePolicy,
    pub seed: u64,
    /// Learner steps to reach.
    pub steps: u64,
    pub supervision: RestartPolicy,
    pub registry: Arc<Registry>,
    /// Post-judge stages, in order from the judges to the buffer.
    pub stages: Vec<StagePlan>,
    pub judges: Vec<JudgePlan>,
    pub generators: Vec<GeneratorPlan>,
    pub learner: LearnerPlan,
    pub evaluator: Option<EvaluatorPlan>,
    pub faults: FaultsConfig,
    /// No learner step for this long means the topology is stuck: the run fails.
    pub patience: Duration,
    /// Busy spans and group events the activity log keeps (`[telemetry] activity_window`).
    pub activity_window: usize,
    /// Learner steps kept in full (`[telemetry] steps_window`).
    pub steps_window: usize,
    /// Where every span and group event is streamed (`RUN_DIR/trace`; `[telemetry] trace`).
    pub trace: Option<PathBuf>,
}

impl TopologyPlan {
    /// A plan with `config`'s run settings (batch, group size, η, staleness policy, seed, steps,
    /// supervision) and these roles; no post-judge stages, evaluator or faults, and an hour's
    /// patience. Callers set what else they place.
    pub fn new(
        config: &RunConfig,
        prompts: Vec<PromptSpec>,
        judges: Vec<JudgePlan>,
        generators: Vec<GeneratorPlan>,
        learner: LearnerPlan,
    ) -> TopologyPlan {
        TopologyPlan {
            prompts,
            prompt_order: PromptOrder::Shuffled,
            batch_groups: config.batch_groups,
            group_size: config.group_size,
            max_staleness: config.effective_staleness(),
            stale_policy: config.stale_policy,
            seed: config.seed,
            steps: config.steps,
            supervision: RestartPolicy {
                max_restarts: config.supervision.max_restarts,
                window: Duration::from_secs_f64(config.supervision.window_s),
            },
            registry: Arc::new(Registry::default()),
            stages: Vec::new(),
            judges,
            generators,
            learner,
            evaluator: None,
            faults: FaultsConfig::default(),
            patience: Duration::from_secs(3600),
            activity_window: config.telemetry.activity_window,
            steps_window: config.telemetry.steps_window,
            trace: config.telemetry.trace.then(|| config.run_dir.join("trace")),
        }
    }
}
