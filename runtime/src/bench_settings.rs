//! `[bench]`: how `grlhf bench` measures a run config. Every key is optional; `grlhf run`
//! ignores the table.
//!
//! The table is part of `RunConfig`, so it lives here, beside `run_config`, rather than in the
//! `bench` module (which reads `RunConfig` and re-exports this module as `bench::settings`):
//! the config depends on its settings, never on the bench itself.
//!
//! ```toml
//! [bench]
//! steps = 40              # learner steps per measured run (default: the config's `steps`)
//! warmup_steps = 4        # left out of the steady window (default: a tenth, at least 1)
//! check_simulator = true  # replay a real run in the simulator with its fitted cost model
//! scale = [4, 16, 64, 256]  # simulated runs with this many actors in all
//!
//! [bench.sweep]           # one run per value; sync and async at every η are always run
//! max_staleness = [1, 2, 4]
//! generators = [1, 2]
//! judges = [1, 2]
//! group_size = [4, 8]
//! batch_groups = [4, 8]
//!
//! [bench.simulate]        # present: every role simulated with these costs, no model loaded
//! response_tokens = 64
//! generate_s_per_token = 1e-4
//! # … every field of grlhf_actors::simulated::CostModel
//! ```

use grlhf_actors::simulated::CostModel;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchSettings {
    pub steps: Option<u64>,
    pub warmup_steps: Option<u64>,
    pub check_simulator: bool,
    /// Total actor counts (generators + judges + the learner) of the simulated scale runs.
    pub scale: Vec<usize>,
    pub sweep: SweepSettings,
    pub simulate: Option<CostModel>,
}

impl Default for BenchSettings {
    fn default() -> Self {
        BenchSettings {
            steps: None,
            warmup_steps: None,
            check_simulator: true,
            scale: Vec::new(),
            sweep: SweepSettings::default(),
            simulate: None,
        }
    }
}

/// Values to sweep, one axis at a time from the config's own values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSettings {
    /// η values of the async runs (a sync run is always added).
    pub max_staleness: Vec<u64>,
    pub generators: Vec<usize>,
    pub judges: Vec<usize>,
    pub group_size: Vec<usize>,
    pub batch_groups: Vec<usize>,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            max_staleness: vec![1, 2, 4],
            generators: Vec::new(),
            judges: Vec::new(),
            group_size: Vec::new(),
            batch_groups: Vec::new(),
        }
    }
}

impl BenchSettings {
    /// Problems with the values, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.steps == Some(0) {
            out.push("bench.steps must be at least 1".to_string());
        }
        for (key, values) in [
            ("bench.sweep.generators", &self.sweep.generators),
            ("bench.sweep.judges", &self.sweep.judges),
            ("bench.sweep.batch_groups", &self.sweep.batch_groups),
        ] {
            if values.contains(&0) {
                out.push(format!("{key} must hold counts of at least 1"));
            }
        }
        if self.sweep.group_size.iter().any(|&n| n < 2) {
            out.push("bench.sweep.group_size values must be at least 2".to_string());
        }
        if self.scale.iter().any(|&a| a < 3) {
            out.push(
                "bench.scale values count every actor (at least a generator, a judge and the learner: 3)"
                    .to_string(),
            );
        }
        if let Some(c) = &self.simulate {
            out.extend(cost_model_problems(c, "bench.simulate."));
        }
        out
    }
}

/// Problems with a cost model's values, each naming its key (after `prefix`).
pub fn cost_model_problems(c: &CostModel, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let costs = [
        ("generate_s_per_call", c.generate_s_per_call),
        ("generate_s_per_token", c.generate_s_per_token),
        ("judge_s_per_group", c.judge_s_per_group),
        ("judge_s_per_pair", c.judge_s_per_pair),
        ("learn_s_per_step", c.learn_s_per_step),
        ("learn_s_per_token", c.learn_s_per_token),
        ("sync_s_per_subscriber", c.sync_s_per_subscriber),
    ];
    for (key, v) in costs {
        if !(v.is_finite() && v >= 0.0) {
            out.push(format!(
                "{prefix}{key} = {v}: a cost is a finite number of seconds ≥ 0"
            ));
        }
    }
    if c.response_tokens == 0 {
        out.push(format!("{prefix}response_tokens must be at least 1"));
    }
    out
}
