//! The TOML configuration of `grlhf run`: topology, placement, data, models and training.
//!
//! Unknown fields are rejected everywhere, and every error names the file and the field (and,
//! for TOML syntax errors, the line). Each key is documented where it is declared; defaults are
//! the values of the `Default` impls. The resolved configuration — every default filled in — is
//! written to the run directory as `config.toml`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use grlhf_actors::generator::GeneratorConfig;
use grlhf_actors::learner::LearnerConfig;
use grlhf_models::device::{DeviceName, DtypeName};
use serde::{Deserialize, Serialize};

/// `mode`: how generation and training are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// η = 0: generate → judge → train in lockstep (the synchronous baseline).
    Sync,
    /// η = `max_staleness`: rollout and judging overlap with training.
    Async,
}

/// `stage`: which of the method's two RL stages this run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Stage 1: train the GRM by GRPO on preference pairs (rule reward: the preferred response
    /// must get the strictly higher boxed score).
    GrmRl,
    /// Stage 2: train the policy by GRPO with the configured judge.
    PolicyRl,
}

/// `[data]`: where prompts come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `world` (the embedded world, generated in memory), `jsonl`, `parquet` (a Hugging Face
    /// preference dataset), or a registered prompt-source kind (`grlhf kinds`), whose settings
    /// go in `[data.settings]`.
    #[serde(default = "world")]
    pub source: String,
    /// parquet: column names where a dataset differs from the align-anything / RLAIF-V layouts
    /// (`[data.fields]`; grlhf_tasks::parquet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<grlhf_tasks::parquet::FieldNames>,
    /// A registered prompt-source kind's settings (not read by `world` and `jsonl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// world: how many training prompts (policy-rl) or pairs (grm-rl) to generate.
    #[serde(default = "two_hundred")]
    pub world_size: usize,
    /// world: its seed (defaults to the run's seed).
    #[serde(default)]
    pub world_seed: Option<u64>,
    /// jsonl: a prompt file (policy-rl) or a preference-pair file (grm-rl).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// jsonl: skip bad lines (counted in the summary) instead of stopping.
    #[serde(default)]
    pub skip_bad: bool,
    /// jsonl: the folder image paths must stay inside (default: the data file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_root: Option<PathBuf>,
    /// jsonl: let image paths leave the data root (`..`, absolute paths, links out of it).
    #[serde(default)]
    pub allow_images_outside_root: bool,
}

fn world() -> String {
    "world".to_string()
}
fn two_hundred() -> usize {
    200
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: world(),
            world_size: 200,
            world_seed: None,
            path: None,
            skip_bad: false,
            image_root: None,
            allow_images_outside_root: false,
            fields: None,
            settings: None,
        }
    }
}

/// `[model]`: checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model being trained: a Qwen2-VL / Qwen2.5-VL checkpoint directory, or `world:tiny` /
    /// `world:small` for a fresh model on the embedded world's vocabulary.
    pub policy: String,
    /// The GRM for `grm_judge` (a checkpoint directory).
    #[serde(default)]
    pub reward_model: Option<PathBuf>,
    /// `f32`, `bf16` or `f16`.
    #[serde(default = "f32_name")]
    pub dtype: DtypeName,
}

fn f32_name() -> DtypeName {
    DtypeName::from("f32")
}

/// `[generator]`: the generator pool and its sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorPoolConfig {
    pub count: usize,
    /// One device for all generators, or one per generator (`cpu`, `cuda:N`).
    pub devices: Vec<DeviceName>,
    /// Prompts per generation batch (each sampled `group_size` times).
    pub batch_prompts: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    /// Continuous batching: at most this many samples decode at once per generator, a finished
    /// one replaced by the next waiting sample; unset, a whole batch decodes together.
    pub slots: Option<usize>,
    /// Where each generator runs: a worker node's name (one for all, or one per generator;
    /// `head` is this process). Unset: every generator in the head's process. Remote
    /// generators need `grlhf run --listen` on the head and `--join --node NAME` on each worker
    /// (`crate::cluster_config`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

impl Default for GeneratorPoolConfig {
    fn default() -> Self {
        let sampling = GeneratorConfig::default();
        GeneratorPoolConfig {
            count: 1,
            devices: vec![DeviceName::from("cpu")],
            batch_prompts: sampling.batch_prompts,
            max_new_tokens: sampling.max_new_tokens,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: sampling.top_k,
            slots: sampling.slots,
            nodes: Vec::new(),
        }
    }
}

impl GeneratorPoolConfig {
    pub fn sampling(&self) -> GeneratorConfig {
        GeneratorConfig {
            batch_prompts: self.batch_prompts,
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            slots: self.slots,
        }
    }

    pub fn device_of(&self, index: usize) -> &DeviceName {
        if self.devices.len() == 1 {
            &self.devices[0]
        } else {
            &self.devices[index]
        }
    }
}

/// One `[[judge]]` or `[[stage]]` table: a registered kind, its placement, and its own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorTable {
    pub kind: String,
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default = "cpu")]
    pub device: DeviceName,
    /// Judges: the worker node they run on (`head`, or unset: this process;
    /// `crate::cluster_config`). Post-judge stages always run on the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Everything else: the kind's own settings (checked by its factory).
    #[serde(flatten)]
    pub settings: toml::Table,
}

fn one() -> usize {
    1
}

fn cpu() -> DeviceName {
    DeviceName::from("cpu")
}

/// `[evaluator]`: periodic held-out evaluation (off when the table is absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluatorConfig {
    /// Evaluate every `every` learner steps (and at the start and the end).
    pub every: u64,
    pub device: DeviceName,
    /// A registered metric kind: `oracle` (world prompts), `reference_overlap`, or a user's.
    pub metric: String,
    /// The metric kind's settings, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// world: held-out prompts per family.
    pub prompts_per_family: usize,
    /// world: `validation` (default; the curve settings are chosen on) or `evaluation` (the
    /// split the final report measures on; choosing settings from it overfits the report).
    pub split: grlhf_tasks::world::HeldOut,
    /// jsonl: a held-out prompt file instead of the world.
    pub path: Option<PathBuf>,
    pub max_new_tokens: usize,
    pub batch: usize,
    /// The worker node the evaluator runs on (`head`, or unset: this process;
    /// `crate::cluster_config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Default for EvaluatorConfig {
    fn default() -> Self {
        EvaluatorConfig {
            every: 10,
            device: DeviceName::from("cpu"),
            metric: "oracle".to_string(),
            metric_settings: None,
            prompts_per_family: 8,
            split: grlhf_tasks::world::HeldOut::Validation,
            path: None,
            max_new_tokens: 16,
            batch: 16,
            node: None,
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Serve Prometheus metrics on this loopback address (e.g. `127.0.0.1:9000`); off when unset.
    #[serde(default)]
    pub prometheus: Option<String>,
    /// How many of the newest busy spans and group events the run keeps for timelines and
    /// latencies (totals always cover the whole run); bounds telemetry memory in long runs.
    #[serde(default = "default_activity_window")]
    pub activity_window: usize,
    /// How many of the newest learner steps the run keeps in full in memory (for the caller of
    /// `run` and `grlhf bench`); `summary.json` covers every step, `metrics.jsonl` holds them.
    #[serde(default = "default_steps_window")]
    pub steps_window: usize,
    /// Stream every busy span and group event to `RUN_DIR/trace` (Chrome trace format; open it
    /// in ui.perfetto.dev). `grlhf bench` reads it back.
    #[serde(default = "yes")]
    pub trace: bool,
    /// Write TensorBoard event files to `RUN_DIR/tb/`.
    #[serde(default = "yes")]
    pub tensorboard: bool,
    /// Draw `RUN_DIR/plots/` when the run ends.
    #[serde(default = "yes")]
    pub plots: bool,
}

fn yes() -> bool {
    true
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            prometheus: None,
            activity_window: default_activity_window(),
            steps_window: default_steps_window(),
            trace: true,
            tensorboard: true,
            plots: true,
        }
    }
}

fn default_activity_window() -> usize {
    grlhf_actors::activity::DEFAULT_ACTIVITY_WINDOW
}

/// Learner steps kept in full by default (`[telemetry] steps_window`): every step of a bench or
/// test run, about 1 MB.
pub const DEFAULT_STEPS_WINDOW: usize = 1_000;

fn default_steps_window() -> usize {
    DEFAULT_STEPS_WINDOW
}

/// `[checkpoint]`: what a run keeps so it can resume (`grlhf run CONFIG --resume RUN_DIR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// A checkpoint every this many learner steps; 0: only at the end, on Ctrl-C and when the
    /// run is stopped for an error.
    pub every: u64,
    /// How many of the newest checkpoints to keep (at least 1).
    pub keep_last: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            every: 10,
            keep_last: 2,
        }
    }
}

/// `[supervision]`: restarts of failed generators and judges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    /// More actor failures than this within `window_s` (a restart storm) stop the run with an
    /// error and a final checkpoint.
    pub max_restarts: usize,
    pub window_s: f64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            max_restarts: 5,
            window_s: 60.0,
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub mode: Mode,
    #[serde(default = "policy_rl")]
    pub stage: Stage,
    /// Learner steps (optimizer steps; the policy version after the run).
    pub steps: u64,
    #[serde(default)]
    pub seed: u64,
    /// Where the resolved config, metrics, summary and final weights go.
    pub run_dir: PathBuf,
    /// η: the oldest policy version a trained sample may come from, relative to the learner.
    /// Ignored in `sync` mode (η = 0 there).
    #[serde(default = "two")]
    pub max_staleness: u64,
    /// `drop` (default): groups that went stale are dropped and counted; `wait`: the learner
    /// waits for in-flight prompts that would otherwise go stale.
    #[serde(default)]
    pub stale_policy: grlhf_actors::replay_buffer::StalePolicy,
    /// n: responses sampled per prompt (at least 2, so advantages are defined).
    pub group_size: usize,
    /// B: prompt groups per learner step.
    pub batch_groups: usize,
    /// The system prompt of policy requests (default: the world's).
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub data: DataConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub generator: GeneratorPoolConfig,
    /// `[workflow]`: how generators roll out a trajectory — a registered workflow kind and its
    /// settings (`kind = "single_turn"`, the default, or a user's multi-turn workflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<grlhf_actors::registry::KindTable>,
    #[serde(default, rename = "judge")]
    pub judges: Vec<ActorTable>,
    #[serde(default, rename = "post_judge")]
    pub stages: Vec<ActorTable>,
    #[serde(default)]
    pub learner: LearnerConfig,
    #[serde(default)]
    pub evaluator: Option<EvaluatorConfig>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub supervision: SupervisionConfig,
    /// `[cluster]`: deadlines between a head and its workers (`crate::cluster_config`).
    #[serde(default)]
    pub cluster: crate::cluster_config::ClusterConfig,
    /// `[weights]`: how weights reach generators on workers.
    #[serde(default)]
    pub weights: crate::cluster_config::WeightsConfig,
    /// `[faults]`: injected failures (off by default; see `crate::faults`).
    #[serde(default)]
    pub faults: crate::faults::FaultsConfig,
    /// `[bench]`: read by `grlhf bench` only (see `crate::bench_settings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench: Option<crate::bench_settings::BenchSettings>,
}

fn policy_rl() -> Stage {
    Stage::PolicyRl
}
fn two() -> u64 {
    2
}

impl RunConfig {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<RunConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `origin` names the file in errors. Paths written as
    /// `env:NAME` are read from that environment variable first ([`expand_env`]).
    pub fn from_toml(text: &str, origin: &Path) -> Result<RunConfig> {
        let mut config: RunConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", origin.display()))?;
        config
            .expand_env_paths()
            .and_then(|()| config.validate())
            .map_err(|e| anyhow::anyhow!("{}: {e}", origin.display()))?;
        Ok(config)
    }

    /// Resolves `env:NAME` in the fields that name checkpoints, data and TLS files:
    /// `model.policy`, `model.reward_model`, `data.path`, `data.image_root`, `evaluator.path`,
    /// `cluster.tls_cert`, `tls_key`, `tls_ca`.
    fn expand_env_paths(&mut self) -> Result<()> {
        self.model.policy = expand_env("model.policy", &self.model.policy)?;
        let path = |field: &str, value: &mut Option<PathBuf>| -> Result<()> {
            if let Some(p) = value {
                *p = PathBuf::from(expand_env(field, &p.to_string_lossy())?);
            }
            Ok(())
        };
        path("model.reward_model", &mut self.model.reward_model)?;
        path("data.path", &mut self.data.path)?;
        path("data.image_root", &mut self.data.image_root)?;
        if let Some(eval) = &mut self.evaluator {
            path("evaluator.path", &mut eval.path)?;
        }
        path("cluster.tls_cert", &mut self.cluster.tls_cert)?;
        path("cluster.tls_key", &mut self.cluster.tls_key)?;
        path("cluster.tls_ca", &mut self.cluster.tls_ca)?;
        Ok(())
    }

    /// η as used: 0 in sync mode.
    pub fn effective_staleness(&self) -> u64 {
        match self.mode {
            Mode::Sync => 0,
            Mode::Async => self.max_staleness,
        }
    }

    fn validate(&self) -> Result<()> {
        self.validate_settings()?;
        self.validate_checkpoints()
    }

    /// The model and reward-model checkpoints exist.
    pub fn validate_checkpoints(&self) -> Result<()> {
        crate::model_source::ModelSource::parse("model.policy", &self.model.policy)?;
        if let Some(rm) = &self.model.reward_model {
            if !rm.is_dir() {
                bail!(
                    "model.reward_model: {} is not a checkpoint directory",
                    rm.display()
                );
            }
        }
        Ok(())
    }

    /// `[generator]`: counts, sampling and devices.
    fn validate_generator(&self) -> Result<()> {
        if self.generator.count == 0 {
            bail!("generator.count = 0: a run needs a generator");
        }
        if self.generator.batch_prompts == 0 {
            bail!("generator.batch_prompts = 0");
        }
        if self.generator.max_new_tokens == 0 {
            bail!("generator.max_new_tokens = 0");
        }
        if self.generator.slots == Some(0) {
            bail!("generator.slots = 0: continuous batching needs at least one slot (leave it unset to decode each batch whole)");
        }
        if self.generator.temperature.is_nan() || self.generator.temperature <= 0.0 {
            bail!(
                "generator.temperature = {}: RL needs sampling (> 0)",
                self.generator.temperature
            );
        }
        if self.generator.top_p.is_some() || self.generator.top_k.is_some() {
            // Allowed, but the importance ratio then ignores the filter (actors/src/grpo.rs).
            tracing::warn!(
                "generator.top_p / top_k set: behaviour and learner log-probs come from the \
                 unfiltered distribution, so the ratio ignores the truncation (see grpo.rs); \
                 RL normally leaves both unset"
            );
        }
        if self.generator.devices.is_empty()
            || (self.generator.devices.len() != 1
                && self.generator.devices.len() != self.generator.count)
        {
            bail!(
                "generator.devices: give one device, or one per generator ({})",
                self.generator.count
            );
        }
        for device in &self.generator.devices {
            check_device("generator.devices", device)?;
        }
        crate::cluster_config::validate_nodes(&self.generator.nodes, self.generator.count)?;
        if self.weights.bucket_mib == 0 || self.weights.bucket_mib > 1 << 20 {
            anyhow::bail!(
                "weights.bucket_mib = {}: give 1 to 1048576 (MiB)",
                self.weights.bucket_mib
            );
        }
        self.cluster.validate()
    }

    /// `[data]`: the source and what it reads.
    fn validate_data(&self) -> Result<()> {
        match self.data.source.as_str() {
            "world" if self.data.world_size == 0 => bail!("data.world_size = 0"),
            "jsonl" if self.data.image_root.as_ref().is_some_and(|r| !r.is_dir()) => {
                bail!(
                    "data.image_root: {} is not a directory",
                    self.data.image_root.as_ref().unwrap().display()
                );
            }
            "jsonl" | "parquet" => match &self.data.path {
                None => bail!("data.path: the {} source needs a file", self.data.source),
                Some(p) if !p.is_file() => bail!("data.path: {} not found", p.display()),
                _ => {}
            },
            // A registered kind: checked against the registry when the run starts.
            _ => {}
        }
        if self.data.fields.is_some() && self.data.source != "parquet" {
            bail!("data.fields: column names are for the parquet source");
        }
        if self.data.settings.is_some()
            && matches!(self.data.source.as_str(), "world" | "jsonl" | "parquet")
        {
            bail!(
                "data.settings: the `{}` source reads the [data] fields themselves; [data.settings] is for registered prompt-source kinds",
                self.data.source
            );
        }
        Ok(())
    }

    /// Every setting is usable (checkpoints aside: a pipeline creates them as it goes).
    pub fn validate_settings(&self) -> Result<()> {
        if self.group_size < 2 {
            bail!(
                "group_size = {}: need at least 2 responses per prompt (advantages compare them)",
                self.group_size
            );
        }
        if self.batch_groups == 0 {
            bail!("batch_groups = 0: the learner needs at least one group per step");
        }
        if self.steps == 0 {
            bail!("steps = 0: nothing to train");
        }
        self.validate_generator()?;
        check_device("learner.device", &self.learner.device)?;
        if let Some(e) = &self.evaluator {
            check_device("evaluator.device", &e.device)?;
            if let Some(node) = &e.node {
                crate::cluster_config::validate_node("evaluator.node", node)?;
            }
            if e.every == 0 || e.max_new_tokens == 0 || e.batch == 0 {
                bail!("evaluator: every, max_new_tokens and batch must be positive");
            }
            if let Some(p) = &e.path {
                if !p.is_file() {
                    bail!("evaluator.path: {} not found", p.display());
                }
            }
        }
        for (i, judge) in self.judges.iter().enumerate() {
            check_device(&format!("judge[{i}].device"), &judge.device)?;
            if let Some(node) = &judge.node {
                crate::cluster_config::validate_node(&format!("judge[{i}].node"), node)?;
            }
            if judge.count == 0 {
                bail!("judge[{i}].count = 0");
            }
        }
        for (i, stage) in self.stages.iter().enumerate() {
            if stage.node.is_some() {
                bail!("post_judge[{i}].node: post-judge stages run on the head (generators, judges and the evaluator can be placed on a worker)");
            }
        }
        if self.judges.is_empty() {
            bail!("no [[judge]]: a run needs at least one judge");
        }
        self.validate_data()?;
        self.model
            .dtype
            .kind()
            .map_err(|e| anyhow::anyhow!("model.dtype: {e}"))?;
        let lr = self.learner.lr;
        if !(lr > 0.0 && lr.is_finite()) {
            bail!("learner.lr = {lr}: must be positive");
        }
        if self.learner.micro_batch == 0 {
            bail!("learner.micro_batch = 0");
        }
        if self.learner.loss.is_some()
            && self.learner.grpo != grlhf_actors::grpo::GrpoConfig::default()
        {
            bail!(
                "learner.grpo: these settings belong to the built-in GRPO loss; with [learner.loss], set the loss's own fields in that table"
            );
        }
        if self.checkpoint.keep_last == 0 {
            bail!("checkpoint.keep_last = 0: keep at least one checkpoint");
        }
        let window = self.supervision.window_s;
        if !(window > 0.0 && window.is_finite()) {
            bail!("supervision.window_s = {window}: must be positive");
        }
        if let Some(problem) = self.faults.problem() {
            bail!("{problem}");
        }
        if let Some(problem) = self
            .bench
            .as_ref()
            .and_then(|b| b.problems().into_iter().next())
        {
            bail!("{problem}");
        }
        if let Some(addr) = &self.telemetry.prometheus {
            let parsed: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| anyhow::anyhow!("telemetry.prometheus = `{addr}`: {e}"))?;
            if !parsed.ip().is_loopback() {
                bail!("telemetry.prometheus = `{addr}`: the metrics endpoint binds to loopback only (127.0.0.1)");
            }
        }
        if self.telemetry.steps_window == 0 {
            bail!("telemetry.steps_window = 0: the run must keep at least its last step");
        }
        if self.telemetry.activity_window == 0 {
            bail!("telemetry.activity_window = 0: the activity log must keep at least 1 span");
        }
        Ok(())
    }
}

/// `env:NAME` → the value of the environment variable NAME (so a shared config can point at a
/// checkpoint or dataset each machine keeps elsewhere); anything else as it is. An unset or
/// empty variable is an error naming the field and the variable.
pub fn expand_env(field: &str, value: &str) -> Result<String> {
    let Some(name) = value.strip_prefix("env:") else {
        return Ok(value.to_string());
    };
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!(
            "{field} = `{value}`: the environment variable {name} is not set; set it to the path this field needs"
        ),
    }
}

/// Checks a device string's form (`cpu`, `cuda`, `cuda:N`); availability is checked at start.
fn check_device(field: &str, device: &DeviceName) -> Result<()> {
    if !device.well_formed() {
        bail!("{field} = `{device}`: not a device (use cpu, cuda or cuda:N)");
    }
    Ok(())
}
