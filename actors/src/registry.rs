//! The actor-kind registry: configuration kinds (`"rule_judge"`, `"grm_judge"`, a user's
//! `"length_penalty"`) mapped to factories. Built-in kinds register through the same calls a
//! user's crate makes, so adding a kind never means changing grlhf.
//!
//! Two roles take plug-ins today: **judges** (a [`Judge`] built on the judge's device thread)
//! and **stages** (anything that receives scored groups and passes them on — filters, reward
//! shaping — spawned between the judges and the replay buffer).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tch::{Device, Kind};

use crate::activity::ActivityLog;
use crate::grm_judge::{GrmJudge, GrmJudgeConfig};
use crate::judge::{Judge, JudgeBuilder};
use crate::ledger::Ledger;
use crate::protocol::ScoredSink;
use crate::rule_judge::{Rule, RuleJudge};
use crate::scalar_rm_judge::{ScalarRewardModel, ScalarRmConfig, ScalarRmJudge};
use crate::vl_engine::VlEngine;

/// What a judge factory gets: its own table (kind-specific fields only) and its placement.
pub struct JudgeContext {
    pub name: String,
    pub table: Value,
    pub device: Device,
    pub kind: Kind,
    /// The run's reward model, when the config names one.
    pub reward_model: Option<PathBuf>,
    pub seed: u64,
}

/// What a stage factory gets.
pub struct StageContext {
    pub name: String,
    pub table: Value,
    /// Where the stage sends what it passes on.
    pub downstream: Arc<dyn ScoredSink>,
    pub ledger: Ledger,
    pub activity: ActivityLog,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type JudgeFactory = Box<dyn Fn(JudgeContext) -> Result<JudgeBuilder, String> + Send + Sync>;
pub type StageFactory =
    Box<dyn Fn(StageContext) -> BoxFuture<Result<Arc<dyn ScoredSink>, String>> + Send + Sync>;

/// Kind name → factory, per role.
#[derive(Default)]
pub struct Registry {
    judges: BTreeMap<String, JudgeFactory>,
    stages: BTreeMap<String, StageFactory>,
}

/// Parses a kind's table into its settings type; errors name the field.
pub fn parse_table<T: DeserializeOwned>(table: &Value) -> Result<T, String> {
    serde_json::from_value(table.clone()).map_err(|e| e.to_string())
}

impl Registry {
    /// A registry with the built-in kinds.
    pub fn with_builtins() -> Registry {
        let mut registry = Registry::default();
        registry.register_judge("rule_judge", Box::new(rule_judge_factory));
        registry.register_judge("grm_judge", Box::new(grm_judge_factory));
        registry.register_judge("scalar_rm_judge", Box::new(scalar_rm_judge_factory));
        registry
    }

    pub fn register_judge(&mut self, kind: &str, factory: JudgeFactory) {
        self.judges.insert(kind.to_string(), factory);
    }

    pub fn register_stage(&mut self, kind: &str, factory: StageFactory) {
        self.stages.insert(kind.to_string(), factory);
    }

    pub fn judge(&self, kind: &str) -> Option<&JudgeFactory> {
        self.judges.get(kind)
    }

    pub fn stage(&self, kind: &str) -> Option<&StageFactory> {
        self.stages.get(kind)
    }

    /// Every kind, by role (`generator` and `replay_buffer` are built into the topology).
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds = vec!["generator".to_string()];
        kinds.extend(self.judges.keys().cloned());
        kinds.extend(self.stages.keys().cloned());
        kinds
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJudgeTable {
    rule: Rule,
}

fn rule_judge_factory(context: JudgeContext) -> Result<JudgeBuilder, String> {
    let table: RuleJudgeTable = parse_table(&context.table)?;
    Ok(Box::new(move || {
        Ok(Box::new(RuleJudge { rule: table.rule }) as Box<dyn Judge>)
    }))
}

fn grm_judge_factory(context: JudgeContext) -> Result<JudgeBuilder, String> {
    let mut config: GrmJudgeConfig = parse_table(&context.table)?;
    config.seed ^= context.seed;
    let dir = context
        .reward_model
        .clone()
        .ok_or("grm_judge needs `model.reward_model` (a GRM checkpoint directory)")?;
    let (device, kind) = (context.device, context.kind);
    Ok(Box::new(move || {
        let engine = VlEngine::load(&dir, device, kind)?;
        Ok(Box::new(GrmJudge::new(engine, config)) as Box<dyn Judge>)
    }))
}

fn scalar_rm_judge_factory(context: JudgeContext) -> Result<JudgeBuilder, String> {
    let config: ScalarRmConfig = parse_table(&context.table)?;
    let dir = context.reward_model.clone().ok_or(
        "scalar_rm_judge needs `model.reward_model` (a reward-model checkpoint directory)",
    )?;
    let (device, kind) = (context.device, context.kind);
    Ok(Box::new(move || {
        let model = ScalarRewardModel::load(&dir, device, kind)?;
        Ok(Box::new(ScalarRmJudge { model, config }) as Box<dyn Judge>)
    }))
}
