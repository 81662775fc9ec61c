//! The kind registry: configuration kinds (`"rule_judge"`, `"grpo"`, a user's `"rloo"`) mapped
//! to factories, one table per role. Built-in kinds register through the same calls a user's
//! crate makes, so adding a kind never means changing grlhf.
//!
//! | role | config | builds |
//! |---|---|---|
//! | judge | `[[judge]] kind = …` | a [`Judge`], on the judge's device thread |
//! | post-judge stage | `[[post_judge]] kind = …` | a [`ScoredSink`] between judges and buffer |
//! | workflow | `[workflow] kind = …` | a [`RolloutWorkflow`]: what a trajectory is |
//! | prompt source | `[data] source = …` (+ `[data.settings]`) | the run's prompts |
//! | loss | `[learner.loss] kind = …` | a [`PolicyLoss`] |
//! | metric | `[evaluator] metric = …` (+ `[evaluator.metric_settings]`) | an [`AnswerMetric`] |
//!
//! Each kind declares its settings as a serde type. The registry parses the kind's table into
//! it — an error names the field, and the caller adds the file and the table — and traces the
//! type's fields for `grlhf kinds`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{Device, Kind};

use crate::activity::ActivityLog;
use crate::eval_metric::{AnswerMetric, OracleMetric, ReferenceOverlapMetric};
use crate::grm_judge::{GrmJudge, GrmJudgeConfig};
use crate::grpo::{Grpo, GrpoConfig};
use crate::judge::{Judge, JudgeBuilder};
use crate::ledger::Ledger;
use crate::policy_loss::PolicyLoss;
use crate::prompt_source::PromptSet;
use crate::protocol::ScoredSink;
use crate::rollout_workflow::{RolloutWorkflow, SingleTurn};
use crate::rule_judge::{Rule, RuleJudge};
use crate::scalar_rm_judge::{ScalarRewardModel, ScalarRmConfig, ScalarRmJudge};
use crate::vl_engine::VlEngine;

/// What a judge factory gets besides its settings: its name and placement.
pub struct JudgeContext {
    pub name: String,
    pub device: Device,
    pub kind: Kind,
    /// The run's reward model, when the config names one.
    pub reward_model: Option<PathBuf>,
    pub seed: u64,
}

/// What a post-judge stage factory gets besides its settings.
pub struct StageContext {
    pub name: String,
    /// Where the stage sends what it passes on.
    pub downstream: Arc<dyn ScoredSink>,
    pub ledger: Ledger,
    pub activity: ActivityLog,
}

/// What a workflow factory gets besides its settings.
#[derive(Debug, Clone)]
pub struct WorkflowContext {
    /// n: trajectories per prompt.
    pub group_size: usize,
    /// Tokens the generator samples per policy turn.
    pub max_new_tokens: usize,
    pub seed: u64,
}

/// What a prompt-source factory gets besides its settings.
#[derive(Debug, Clone)]
pub struct PromptSourceContext {
    /// The run config's folder: relative paths in settings are read from here.
    pub config_dir: PathBuf,
    /// The system prompt of policy requests (`system_prompt`, or the world's).
    pub system_prompt: String,
    pub seed: u64,
}

/// What a loss factory gets besides its settings.
#[derive(Debug, Clone)]
pub struct LossContext {
    pub group_size: usize,
    /// Tokens the generator samples per policy turn (a length normaliser's natural constant).
    pub max_new_tokens: usize,
}

/// What a metric factory gets besides its settings (nothing yet; kept for growth).
#[derive(Debug, Clone, Default)]
pub struct MetricContext {}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A started post-judge stage: resolves to the sink judges (or the stage in front) send to.
pub type StageStart = BoxFuture<Result<Arc<dyn ScoredSink>, String>>;

/// A settings check: parses a table, keeps nothing.
type Check = Box<dyn Fn(&Value) -> Result<(), SettingsError> + Send + Sync>;

/// A role's factory after the registry wrapped it: settings as JSON, then the context.
type Factory<C, T> = Box<dyn Fn(&Value, C) -> Result<T, String> + Send + Sync>;

/// A registered kind: its factory, a check of its settings alone, and its description.
struct Entry<C, T> {
    factory: Factory<C, T>,
    check: Check,
    info: KindInfo,
}

/// A config table that names a kind: `kind = "…"` and the kind's own settings beside it
/// (`[workflow]`, `[learner.loss]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindTable {
    pub kind: String,
    /// Everything else: the kind's settings (parsed by the kind's own type).
    #[serde(flatten)]
    pub settings: serde_json::Map<String, Value>,
}

impl KindTable {
    /// The settings as one JSON object (what factories parse).
    pub fn settings_value(&self) -> Value {
        Value::Object(self.settings.clone())
    }
}

/// The roles that take kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Judge,
    PostJudge,
    Workflow,
    PromptSource,
    Loss,
    Metric,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Judge,
        Role::PostJudge,
        Role::Workflow,
        Role::PromptSource,
        Role::Loss,
        Role::Metric,
    ];

    /// The role's name (as `grlhf kinds` prints it).
    pub fn name(self) -> &'static str {
        match self {
            Role::Judge => "judge",
            Role::PostJudge => "post_judge",
            Role::Workflow => "workflow",
            Role::PromptSource => "prompt_source",
            Role::Loss => "loss",
            Role::Metric => "metric",
        }
    }

    /// Where a config chooses the role's kind.
    pub fn config_key(self) -> &'static str {
        match self {
            Role::Judge => "[[judge]] kind",
            Role::PostJudge => "[[post_judge]] kind",
            Role::Workflow => "[workflow] kind",
            Role::PromptSource => "[data] source",
            Role::Loss => "[learner.loss] kind",
            Role::Metric => "[evaluator] metric",
        }
    }
}

/// One settings field of a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldInfo {
    pub name: String,
    /// Its type, as a config writer reads it (`f64`, `string`, `option<u64>`, `one of a | b`).
    pub format: String,
}

/// A kind as `grlhf kinds` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindInfo {
    pub role: Role,
    pub kind: String,
    /// One line on what it does.
    pub about: String,
    pub fields: Vec<FieldInfo>,
}

/// Settings of a kind that has none (its table must be empty).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// Kind name → factory, per role.
#[derive(Default)]
pub struct Registry {
    judges: BTreeMap<String, Entry<JudgeContext, JudgeBuilder>>,
    stages: BTreeMap<String, Entry<StageContext, StageStart>>,
    workflows: BTreeMap<String, Entry<WorkflowContext, Arc<dyn RolloutWorkflow>>>,
    prompt_sources: BTreeMap<String, Entry<PromptSourceContext, PromptSet>>,
    losses: BTreeMap<String, Entry<LossContext, Arc<dyn PolicyLoss>>>,
    metrics: BTreeMap<String, Entry<MetricContext, Arc<dyn AnswerMetric>>>,
    /// Kinds served outside the registry (the runtime's `world` and `jsonl` prompt sources),
    /// listed so `grlhf kinds` shows every choice.
    described: Vec<KindInfo>,
}

/// Why a kind's table does not parse, and the field it is about (none when the table as a
/// whole is wrong, e.g. an unknown field: serde's message names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Parses a kind's table into its settings type, naming the field on error.
pub fn parse_settings<T: DeserializeOwned>(table: &Value) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        SettingsError {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }
    })
}

/// [`parse_settings`] with the error as text (`rule: unknown variant …`).
pub fn parse_table<T: DeserializeOwned>(table: &Value) -> Result<T, String> {
    parse_settings(table).map_err(|e| e.to_string())
}

/// The fields of settings type `S`, traced through its serde implementation.
pub fn fields_of<S: DeserializeOwned>() -> Vec<FieldInfo> {
    use serde_reflection::{ContainerFormat, Format, Tracer, TracerConfig};
    static SAMPLES: std::sync::LazyLock<serde_reflection::Samples> =
        std::sync::LazyLock::new(serde_reflection::Samples::new);
    // The tracer walks one variant of a nested enum per pass, and only once that enum is
    // marked complete again; a first pass finds the enums' names so later passes can do so.
    let enum_names: Vec<String> = {
        let mut scout = Tracer::new(TracerConfig::default());
        let _ = scout.trace_type_once::<S>(&SAMPLES);
        scout
            .registry_unchecked()
            .into_iter()
            .filter(|(_, c)| matches!(c, ContainerFormat::Enum(_)))
            .map(|(name, _)| name)
            .collect()
    };
    let mut tracer = Tracer::new(TracerConfig::default());
    let mut root = None;
    for _ in 0..64 {
        match tracer.trace_type_once::<S>(&SAMPLES) {
            Ok((format, _)) => root = Some(format),
            Err(_) => break,
        }
        let mut incomplete = false;
        for name in &enum_names {
            incomplete |= tracer.check_incomplete_enum(name).is_some();
        }
        if !incomplete {
            break;
        }
    }
    let registry = tracer.registry_unchecked();
    fn show(format: &Format, registry: &serde_reflection::Registry) -> String {
        match format {
            Format::TypeName(name) => match registry.get(name) {
                Some(ContainerFormat::Enum(variants)) => {
                    let names: Vec<&str> = variants.values().map(|v| v.name.as_str()).collect();
                    format!("one of {}", names.join(" | "))
                }
                Some(ContainerFormat::NewTypeStruct(inner)) => show(inner, registry),
                _ => name.clone(),
            },
            Format::Str => "string".into(),
            Format::Bool => "bool".into(),
            Format::F32 => "f32".into(),
            Format::F64 => "f64".into(),
            Format::I8 | Format::I16 | Format::I32 | Format::I64 | Format::I128 => "int".into(),
            Format::U8 | Format::U16 | Format::U32 | Format::U64 | Format::U128 => {
                "unsigned int".into()
            }
            Format::Option(inner) => format!("option<{}>", show(inner, registry)),
            Format::Seq(inner) => format!("list<{}>", show(inner, registry)),
            Format::Map { key, value } => {
                format!("map<{}, {}>", show(key, registry), show(value, registry))
            }
            Format::Tuple(items) => format!(
                "({})",
                items
                    .iter()
                    .map(|f| show(f, registry))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => format!("{other:?}").to_lowercase(),
        }
    }
    let Some(Format::TypeName(name)) = root else {
        return Vec::new();
    };
    match registry.get(&name) {
        Some(ContainerFormat::Struct(fields)) => fields
            .iter()
            .map(|f| FieldInfo {
                name: f.name.clone(),
                format: show(&f.value, &registry),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Wraps a typed factory: parse the settings, then build.
fn entry<S, C, T, F>(role: Role, kind: &str, about: &str, factory: F) -> Entry<C, T>
where
    S: DeserializeOwned + 'static,
    F: Fn(S, C) -> Result<T, String> + Send + Sync + 'static,
{
    Entry {
        factory: Box::new(move |table: &Value, context: C| factory(parse_table(table)?, context)),
        check: Box::new(|table: &Value| parse_settings::<S>(table).map(|_| ())),
        info: KindInfo {
            role,
            kind: kind.to_string(),
            about: about.to_string(),
            fields: fields_of::<S>(),
        },
    }
}

fn build<C, T>(
    entries: &BTreeMap<String, Entry<C, T>>,
    role: Role,
    kind: &str,
    table: &Value,
    context: C,
) -> Result<T, String> {
    let entry = entries.get(kind).ok_or_else(|| {
        format!(
            "no {} kind `{kind}` (known: {})",
            role.name(),
            entries.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    (entry.factory)(table, context)
}

impl Registry {
    /// A registry with the built-in kinds.
    pub fn with_builtins() -> Registry {
        let mut registry = Registry::default();
        registry.register_judge(
            "rule_judge",
            "a rule reward: reference overlap, the world's oracle, or GRM-RL's preference rule",
            |settings: RuleJudgeSettings, _context| {
                let rule = settings.rule;
                Ok(
                    Box::new(move || Ok(Box::new(RuleJudge { rule }) as Box<dyn Judge>))
                        as JudgeBuilder,
                )
            },
        );
        registry.register_judge(
            "grm_judge",
            "the generative reward model: grouped (every ordered pair) or single comparison",
            grm_judge_factory,
        );
        registry.register_judge(
            "scalar_rm_judge",
            "a score-only Bradley–Terry reward model, each response scored alone",
            scalar_rm_judge_factory,
        );
        registry.register_workflow(
            "single_turn",
            "one policy turn per trajectory, n sampled per prompt in one batch (the default)",
            |_: NoSettings, _context| Ok(Arc::new(SingleTurn) as Arc<dyn RolloutWorkflow>),
        );
        registry.register_loss(
            "grpo",
            "GRPO: group-normalised advantages, token-level clipped surrogate, k3 KL (the default; [learner.grpo])",
            |settings: GrpoConfig, _context| Ok(Arc::new(Grpo(settings)) as Arc<dyn PolicyLoss>),
        );
        registry.register_metric(
            "oracle",
            "the embedded world's oracle score / 10 (world prompts; the default)",
            |_: NoSettings, _context| Ok(Arc::new(OracleMetric) as Arc<dyn AnswerMetric>),
        );
        registry.register_metric(
            "reference_overlap",
            "word F1 with the reference answer",
            |_: NoSettings, _context| Ok(Arc::new(ReferenceOverlapMetric) as Arc<dyn AnswerMetric>),
        );
        registry
    }

    pub fn register_judge<S, F>(&mut self, kind: &str, about: &str, factory: F)
    where
        S: DeserializeOwned + 'static,
        F: Fn(S, JudgeContext) -> Result<JudgeBuilder, String> + Send + Sync + 'static,
    {
        let entry = entry(Role::Judge, kind, about, factory);
        self.judges.insert(kind.to_string(), entry);
    }

    /// A post-judge stage: the factory spawns whatever it needs and returns the sink judges
    /// (or the stage in front) send to.
    pub fn register_stage<S, F>(&mut self, kind: &str, about: &str, factory: F)
    where
        S: DeserializeOwned + Send + 'static,
        F: Fn(S, StageContext) -> StageStart + Send + Sync + 'static,
    {
        let entry = entry(
            Role::PostJudge,
            kind,
            about,
            move |settings: S, context: StageContext| Ok(factory(settings, context)),
        );
        self.stages.insert(kind.to_string(), entry);
    }

    pub fn register_workflow<S, F>(&mut self, kind: &str, about: &str, factory: F)
    where
        S: DeserializeOwned + 'static,
        F: Fn(S, WorkflowContext) -> Result<Arc<dyn RolloutWorkflow>, String>
            + Send
            + Sync
            + 'static,
    {
        let entry = entry(Role::Workflow, kind, about, factory);
        self.workflows.insert(kind.to_string(), entry);
    }

    /// A prompt source: the factory returns the run's whole prompt set and its order (the prompt
    /// source actor issues it epoch after epoch, admits under the staleness rule, and
    /// checkpoints its position in it).
    pub fn register_prompt_source<S, F>(&mut self, kind: &str, about: &str, factory: F)
    where
        S: DeserializeOwned + 'static,
        F: Fn(S, PromptSourceContext) -> Result<PromptSet, String> + Send + Sync + 'static,
    {
        let entry = entry(Role::PromptSource, kind, about, factory);
        self.prompt_sources.insert(kind.to_string(), entry);
    }

    pub fn register_loss<S, F>(&mut self, kind: &str, about: &str, factory: F)
    where
        S: DeserializeOwned + 'static,
        F: Fn(S, LossContext) -> Result<Arc<dyn PolicyLoss>, String> + Send + Sync + 'static,
    {
        let entry = entry(Role::Loss, kind, about, factory);
        self.losses.insert(kind.to_string(), entry);
    }

    pub fn register_metric<S, F>(&mut self, kind: &str, about: &str, factory: F)
    where
        S: DeserializeOwned + 'static,
        F: Fn(S, MetricContext) -> Result<Arc<dyn AnswerMetric>, String> + Send + Sync + 'static,
    {
        let entry = entry(Role::Metric, kind, about, factory);
        self.metrics.insert(kind.to_string(), entry);
    }

    /// Lists a kind that is served outside the registry, with the settings type `S` it reads.
    pub fn describe<S: DeserializeOwned>(&mut self, role: Role, kind: &str, about: &str) {
        self.described.push(KindInfo {
            role,
            kind: kind.to_string(),
            about: about.to_string(),
            fields: fields_of::<S>(),
        });
    }

    /// A judge's builder from its table (an error names the field, or the unknown kind).
    pub fn judge(
        &self,
        kind: &str,
        table: &Value,
        context: JudgeContext,
    ) -> Result<JudgeBuilder, String> {
        build(&self.judges, Role::Judge, kind, table, context)
    }

    /// Starts a post-judge stage.
    pub fn stage(
        &self,
        kind: &str,
        table: &Value,
        context: StageContext,
    ) -> Result<StageStart, String> {
        build(&self.stages, Role::PostJudge, kind, table, context)
    }

    pub fn workflow(
        &self,
        kind: &str,
        table: &Value,
        context: WorkflowContext,
    ) -> Result<Arc<dyn RolloutWorkflow>, String> {
        build(&self.workflows, Role::Workflow, kind, table, context)
    }

    pub fn prompt_source(
        &self,
        kind: &str,
        table: &Value,
        context: PromptSourceContext,
    ) -> Result<PromptSet, String> {
        build(
            &self.prompt_sources,
            Role::PromptSource,
            kind,
            table,
            context,
        )
    }

    pub fn loss(
        &self,
        kind: &str,
        table: &Value,
        context: LossContext,
    ) -> Result<Arc<dyn PolicyLoss>, String> {
        build(&self.losses, Role::Loss, kind, table, context)
    }

    pub fn metric(
        &self,
        kind: &str,
        table: &Value,
        context: MetricContext,
    ) -> Result<Arc<dyn AnswerMetric>, String> {
        build(&self.metrics, Role::Metric, kind, table, context)
    }

    /// Checks a table against `kind`'s settings type without building anything: an unknown
    /// field or a wrong type is refused, naming the field. A kind that is not registered (or
    /// is served outside the registry) passes: ask [`Registry::has`] first.
    pub fn check(&self, role: Role, kind: &str, table: &Value) -> Result<(), SettingsError> {
        fn check_in<C, T>(
            entries: &BTreeMap<String, Entry<C, T>>,
            kind: &str,
            table: &Value,
        ) -> Result<(), SettingsError> {
            entries
                .get(kind)
                .map_or(Ok(()), |entry| (entry.check)(table))
        }
        match role {
            Role::Judge => check_in(&self.judges, kind, table),
            Role::PostJudge => check_in(&self.stages, kind, table),
            Role::Workflow => check_in(&self.workflows, kind, table),
            Role::PromptSource => check_in(&self.prompt_sources, kind, table),
            Role::Loss => check_in(&self.losses, kind, table),
            Role::Metric => check_in(&self.metrics, kind, table),
        }
    }

    /// Whether `kind` is registered (or described) for `role`.
    pub fn has(&self, role: Role, kind: &str) -> bool {
        self.kinds_of(role).iter().any(|k| k == kind)
    }

    /// The kinds of one role, sorted.
    pub fn kinds_of(&self, role: Role) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .describe_all()
            .into_iter()
            .filter(|info| info.role == role)
            .map(|info| info.kind)
            .collect();
        kinds.sort();
        kinds
    }

    /// Every kind of every role, with its settings fields, by role then kind.
    pub fn describe_all(&self) -> Vec<KindInfo> {
        fn infos<C, T>(
            entries: &BTreeMap<String, Entry<C, T>>,
        ) -> impl Iterator<Item = KindInfo> + '_ {
            entries.values().map(|e| e.info.clone())
        }
        let mut all: Vec<KindInfo> = infos(&self.judges)
            .chain(infos(&self.stages))
            .chain(infos(&self.workflows))
            .chain(infos(&self.prompt_sources))
            .chain(infos(&self.losses))
            .chain(infos(&self.metrics))
            .chain(self.described.iter().cloned())
            .collect();
        all.sort_by(|a, b| (a.role, &a.kind).cmp(&(b.role, &b.kind)));
        all
    }
}

/// `rule_judge`'s settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJudgeSettings {
    rule: Rule,
}

fn grm_judge_factory(
    mut config: GrmJudgeConfig,
    context: JudgeContext,
) -> Result<JudgeBuilder, String> {
    config.seed ^= context.seed;
    let dir = context
        .reward_model
        .clone()
        .ok_or("grm_judge needs `model.reward_model` (a GRM checkpoint directory)")?;
    let (device, kind) = (context.device, context.kind);
    Ok(Box::new(move || {
        let engine = VlEngine::load(&dir, device, kind)?;
        Ok(Box::new(GrmJudge::new(engine, config.clone())) as Box<dyn Judge>)
    }))
}

fn scalar_rm_judge_factory(
    config: ScalarRmConfig,
    context: JudgeContext,
) -> Result<JudgeBuilder, String> {
    let dir = context.reward_model.clone().ok_or(
        "scalar_rm_judge needs `model.reward_model` (a reward-model checkpoint directory)",
    )?;
    let (device, kind) = (context.device, context.kind);
    Ok(Box::new(move || {
        let model = ScalarRewardModel::load(&dir, device, kind)?;
        Ok(Box::new(ScalarRmJudge {
            model,
            config: config.clone(),
        }) as Box<dyn Judge>)
    }))
}
