//! The pipeline's TOML configuration (`grlhf pipeline CONFIG`, `grlhf reproduce CONFIG`).
//!
//! ```toml
//! run_dir = "runs/demo"
//! seed = 0
//! model = "world:tiny"         # where policy, GRM and score-only RM all start
//! world_size = 2000            # training prompts / pairs / demonstrations drawn from the world
//! variants = ["rm_grpo", "grm_rl_grouped"]   # stage-2 runs (reproduce runs all four)
//!
//! [warm_start]                 # policy SFT, GRM SFT, Bradley–Terry RM
//! [stage1]                     # a run config (see configs/*.toml) minus what the pipeline sets
//! [stage2]                     # the same, shared by every stage-2 variant
//! [judge]                      # stage 2's judge placement and GRM decoding
//! [eval]                       # held-out evaluation sizes
//! ```
//!
//! `[stage1]` and `[stage2]` take every key of a run config except `run_dir`, `stage`,
//! `model.policy`, `model.reward_model` and `[[judge]]`, which the pipeline sets per stage and
//! variant; setting one of those is an error that names it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use grlhf_actors::bradley_terry::BtConfig;
use grlhf_actors::grouped_comparison::{Aggregation, PairOrder};
use grlhf_actors::sft::SftConfig;
use grlhf_models::device::DeviceName;
use grlhf_tasks::world::HeldOut;
use serde::{Deserialize, Serialize};

use crate::run_config::{EvaluatorConfig, RunConfig, Stage};
use crate::run_layout::RunLayout;

pub use crate::variant::Variant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmStartConfig {
    /// Device for the three warm-start trainings.
    pub device: DeviceName,
    pub policy: SftConfig,
    pub grm: SftConfig,
    pub rm: BtConfig,
    /// Share of correct answers among the policy's demonstrations.
    pub sft_quality: f64,
    /// The grounding check after the warm start: does each model use its image?
    pub grounding: GroundingConfig,
}

/// `[warm_start.grounding]`: how the warm start checks that its models see (docs/world.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroundingConfig {
    /// Also train a blind twin of the policy and of the GRM (the same warm start on blank
    /// images) and compare. Doubles the policy and GRM warm-start time.
    pub blind_twin: bool,
    /// Held-out evaluation prompts per task family for the policy's check.
    pub prompts_per_family: usize,
    /// Held-out test pairs for the GRM's check.
    pub pairs: usize,
    /// A model whose share of answers (verdicts) changed by an image swap is below this is
    /// called blind, with a loud warning.
    pub min_swap_changed: f64,
    /// Make a blind model an error that stops the pipeline instead of a warning.
    pub fail_when_blind: bool,
}

impl Default for GroundingConfig {
    fn default() -> Self {
        GroundingConfig {
            blind_twin: true,
            prompts_per_family: 8,
            pairs: 50,
            min_swap_changed: 0.1,
            fail_when_blind: false,
        }
    }
}

impl Default for WarmStartConfig {
    fn default() -> Self {
        WarmStartConfig {
            device: DeviceName::from("cpu"),
            policy: SftConfig {
                steps: 300,
                ..SftConfig::default()
            },
            grm: SftConfig {
                steps: 300,
                ..SftConfig::default()
            },
            rm: BtConfig::default(),
            sft_quality: 1.0,
            grounding: GroundingConfig::default(),
        }
    }
}

/// Stage 2's judge: placement and decoding (the reward model comes from the variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgePlacement {
    pub device: DeviceName,
    pub count: usize,
    pub max_new_tokens: usize,
    pub pair_order: PairOrder,
    pub aggregation: Aggregation,
}

impl Default for JudgePlacement {
    fn default() -> Self {
        JudgePlacement {
            device: DeviceName::from("cpu"),
            count: 1,
            max_new_tokens: 80,
            pair_order: PairOrder::Ordered,
            aggregation: Aggregation::Mean,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineEvalConfig {
    pub device: DeviceName,
    /// Held-out prompts per family for the policy table.
    pub prompts_per_family: usize,
    /// Held-out pairs per split for reward-model accuracy.
    pub pairs: usize,
    /// Policy answers' token budget (greedy).
    pub max_new_tokens: usize,
    /// GRM judgments' token budget.
    pub judge_max_new_tokens: usize,
    /// Groups of candidate answers for the reward/oracle correlation, and answers per group.
    pub correlation_groups: usize,
    pub correlation_n: usize,
}

impl Default for PipelineEvalConfig {
    fn default() -> Self {
        PipelineEvalConfig {
            device: DeviceName::from("cpu"),
            prompts_per_family: 16,
            pairs: 100,
            max_new_tokens: 64,
            judge_max_new_tokens: 80,
            correlation_groups: 28,
            correlation_n: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub run_dir: PathBuf,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "world_tiny")]
    pub model: String,
    #[serde(default = "two_thousand")]
    pub world_size: usize,
    #[serde(default = "default_variants")]
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub warm_start: WarmStartConfig,
    pub stage1: toml::Table,
    pub stage2: toml::Table,
    #[serde(default)]
    pub judge: JudgePlacement,
    #[serde(default)]
    pub eval: PipelineEvalConfig,
    /// Candidate counts for `reproduce --sweep-n` when the flag gives none.
    #[serde(default)]
    pub sweep_n: Vec<usize>,
}

fn world_tiny() -> String {
    "world:tiny".into()
}
fn two_thousand() -> usize {
    2000
}
fn default_variants() -> Vec<Variant> {
    vec![Variant::RmGrpo, Variant::GrmRlGrouped]
}

/// Keys of a stage table the pipeline owns.
const PIPELINE_OWNED: [&str; 3] = ["run_dir", "stage", "judge"];

impl PipelineConfig {
    pub fn from_file(path: &Path) -> Result<PipelineConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: PipelineConfig =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        // Stage-table errors already name the file.
        config.validate(path).map_err(|e| {
            let text = format!("{e:#}");
            if text.starts_with(&path.display().to_string()) {
                e
            } else {
                anyhow!("{}: {text}", path.display())
            }
        })?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if self.variants.is_empty() {
            bail!("variants = []: name at least one stage-2 run");
        }
        if self.world_size == 0 {
            bail!("world_size = 0");
        }
        crate::model_source::ModelSource::parse("model", &self.model)?;
        if !(0.0..=1.0).contains(&self.warm_start.sft_quality) {
            bail!(
                "warm_start.sft_quality = {}: a share between 0 and 1",
                self.warm_start.sft_quality
            );
        }
        let g = &self.warm_start.grounding;
        if g.prompts_per_family == 0 || g.pairs == 0 {
            bail!("warm_start.grounding: prompts_per_family and pairs must be positive");
        }
        if !(0.0..=1.0).contains(&g.min_swap_changed) {
            bail!(
                "warm_start.grounding.min_swap_changed = {}: a share between 0 and 1",
                g.min_swap_changed
            );
        }
        for (name, steps, batch) in [
            (
                "warm_start.policy",
                self.warm_start.policy.steps,
                self.warm_start.policy.batch,
            ),
            (
                "warm_start.grm",
                self.warm_start.grm.steps,
                self.warm_start.grm.batch,
            ),
            (
                "warm_start.rm",
                self.warm_start.rm.steps,
                self.warm_start.rm.batch,
            ),
        ] {
            if steps == 0 || batch == 0 {
                bail!("{name}: steps and batch must be positive");
            }
        }
        if self.judge.count == 0 || self.judge.max_new_tokens == 0 {
            bail!("judge: count and max_new_tokens must be positive");
        }
        let e = &self.eval;
        if e.prompts_per_family == 0
            || e.pairs == 0
            || e.max_new_tokens == 0
            || e.judge_max_new_tokens == 0
        {
            bail!("eval: prompts_per_family, pairs, max_new_tokens and judge_max_new_tokens must be positive");
        }
        if e.correlation_n < 2 {
            bail!(
                "eval.correlation_n = {}: need at least 2 answers per group",
                e.correlation_n
            );
        }
        for n in &self.sweep_n {
            if *n < 2 {
                bail!("sweep_n: {n} candidates; need at least 2");
            }
        }
        for (field, device) in [
            ("warm_start.device", &self.warm_start.device),
            ("judge.device", &self.judge.device),
            ("eval.device", &self.eval.device),
        ] {
            device.device().map_err(|e| anyhow!("{field}: {e}"))?;
        }
        // Build both stage configs once so their errors surface before any training.
        let probe = Path::new(".");
        self.stage1_config(path, probe)?;
        for v in &self.variants {
            self.stage2_config(path, *v, probe, probe, None)?;
        }
        Ok(())
    }

    /// A stage table completed with what the pipeline owns, checked like a run config.
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &self,
        origin: &Path,
        section: &str,
        table: &toml::Table,
        run_dir: &Path,
        stage: Stage,
        policy: &Path,
        reward_model: Option<&Path>,
        judge: toml::Table,
    ) -> Result<RunConfig> {
        let mut table = table.clone();
        for key in PIPELINE_OWNED {
            if table.contains_key(key) {
                bail!("[{section}].{key} is set by the pipeline; remove it (stage 2's judge is configured in [judge])");
            }
        }
        let mut model = match table.remove("model") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => bail!("[{section}].model must be a table"),
        };
        for key in ["policy", "reward_model"] {
            if model.contains_key(key) {
                bail!("[{section}].model.{key} is set by the pipeline; remove it");
            }
        }
        model.insert("policy".into(), policy.display().to_string().into());
        if let Some(rm) = reward_model {
            model.insert("reward_model".into(), rm.display().to_string().into());
        }
        table.insert("model".into(), model.into());
        table.insert("run_dir".into(), run_dir.display().to_string().into());
        let stage_name = match stage {
            Stage::GrmRl => "grm-rl",
            Stage::PolicyRl => "policy-rl",
        };
        table.insert("stage".into(), stage_name.into());
        table
            .entry("seed")
            .or_insert_with(|| (self.seed as i64).into());
        let data = table
            .entry("data")
            .or_insert_with(|| toml::Table::new().into());
        if let toml::Value::Table(data) = data {
            data.entry("world_size")
                .or_insert_with(|| (self.world_size as i64).into());
            data.entry("world_seed")
                .or_insert_with(|| (self.seed as i64).into());
        }
        table.insert("judge".into(), toml::Value::Array(vec![judge.into()]));
        let text = toml::to_string(&table).context("serialising a stage table")?;
        let config: RunConfig =
            toml::from_str(&text).map_err(|e| anyhow!("[{section}]: {}", e.message()))?;
        // The checkpoints exist only once earlier stages ran: checked when the stage starts.
        config
            .validate_settings()
            .map_err(|e| anyhow!("{}: [{section}]: {e:#}", origin.display()))?;
        Ok(config)
    }

    /// Stage 1: the GRM (after SFT) trained by GRPO on preference pairs.
    pub fn stage1_config(&self, origin: &Path, root: &Path) -> Result<RunConfig> {
        let mut judge = toml::Table::new();
        judge.insert("kind".into(), "rule_judge".into());
        judge.insert("rule".into(), "grm_preference".into());
        self.complete(
            origin,
            "stage1",
            &self.stage1,
            RunLayout::new(root).stage1().dir(),
            Stage::GrmRl,
            &RunLayout::new(root).warm_grm().model(),
            None,
            judge,
        )
    }

    /// Stage 2 for one variant; `group_size` overrides n (the sweep).
    pub fn stage2_config(
        &self,
        origin: &Path,
        variant: Variant,
        root: &Path,
        run_dir: &Path,
        group_size: Option<usize>,
    ) -> Result<RunConfig> {
        let layout = RunLayout::new(root);
        let mut judge = toml::Table::new();
        judge.insert("device".into(), self.judge.device.to_string().into());
        judge.insert("count".into(), (self.judge.count as i64).into());
        let reward_model = match variant {
            Variant::RmGrpo => {
                judge.insert("kind".into(), "scalar_rm_judge".into());
                Some(layout.warm_rm().model())
            }
            Variant::OracleGrpo => {
                judge.insert("kind".into(), "rule_judge".into());
                judge.insert("rule".into(), "oracle".into());
                None
            }
            _ => {
                judge.insert("kind".into(), "grm_judge".into());
                judge.insert(
                    "max_new_tokens".into(),
                    (self.judge.max_new_tokens as i64).into(),
                );
                judge.insert(
                    "pair_order".into(),
                    serde_name(&self.judge.pair_order).into(),
                );
                judge.insert(
                    "aggregation".into(),
                    serde_name(&self.judge.aggregation).into(),
                );
                judge.insert(
                    "single_comparison".into(),
                    (variant == Variant::GrmRlSingle).into(),
                );
                judge.insert("seed".into(), (self.seed as i64).into());
                Some(if variant == Variant::GrmSftGrouped {
                    layout.warm_grm().model()
                } else {
                    layout.stage1().policy()
                })
            }
        };
        let mut config = self.complete(
            origin,
            "stage2",
            &self.stage2,
            run_dir,
            Stage::PolicyRl,
            &layout.warm_policy().model(),
            reward_model.as_deref(),
            judge,
        )?;
        if let Some(n) = group_size {
            config.group_size = n;
        }
        Ok(config)
    }

    /// The held-out set stage 2's periodic evaluator measures: `[stage2.evaluator] split`, or
    /// the default evaluator's (validation) when the table sets none.
    pub fn stage2_eval_split(&self) -> Result<HeldOut> {
        Ok(match self.stage2.get("evaluator") {
            None => EvaluatorConfig::default().split,
            Some(table) => {
                let evaluator: EvaluatorConfig = table
                    .clone()
                    .try_into()
                    .map_err(|e| anyhow!("[stage2.evaluator]: {e}"))?;
                evaluator.split
            }
        })
    }
}

/// An enum value as its serde spelling, for building judge tables.
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use std::path::Path;

    use grlhf_tasks::world::HeldOut;

    use super::{serde_name, PipelineConfig, Variant};

    #[test]
    fn variant_names_agree_on_the_command_line_and_in_the_config() {
        for v in Variant::ALL {
            let value = v.to_possible_value().expect("every variant is selectable");
            assert_eq!(value.get_name(), v.name());
            assert_eq!(serde_name(&v), v.name());
            assert_eq!(Variant::parse(v.name()), Some(v));
        }
        assert_eq!(Variant::value_variants(), Variant::ALL);
    }

    /// The split the eval curves are titled with is the one stage 2's run config measures.
    #[test]
    fn stage2_eval_split_follows_the_evaluator_table() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo.toml");
        let mut config: PipelineConfig =
            toml::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap();
        let probe = Path::new(".");
        let ran = |config: &PipelineConfig| {
            let run = config
                .stage2_config(probe, Variant::GrmRlGrouped, probe, probe, None)
                .unwrap();
            run.evaluator.map(|e| e.split).unwrap_or_default()
        };
        assert_eq!(config.stage2_eval_split().unwrap(), HeldOut::Validation);
        assert_eq!(ran(&config), HeldOut::Validation);
        let evaluator = config.stage2["evaluator"].as_table_mut().unwrap();
        evaluator.insert("split".into(), "evaluation".into());
        assert_eq!(config.stage2_eval_split().unwrap(), HeldOut::Evaluation);
        assert_eq!(ran(&config), HeldOut::Evaluation);
        config.stage2.remove("evaluator");
        assert_eq!(config.stage2_eval_split().unwrap(), HeldOut::Validation);
    }
}
