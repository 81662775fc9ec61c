//! Per-node load of a multi-process run: which actors each process runs and how busy they were,
//! so a head's `summary.json` and `grlhf bench` show which machine is the bottleneck, not only
//! which actor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node_placement::node_of_actor;
use crate::run_config::RunConfig;

/// One node's actors and their busy shares (of the run's wall time in `summary.json`, of the
/// steady window in `grlhf bench`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// The actors the node runs (remote roles are counted on their worker, although their
    /// actor lives on the head: the worker does their work).
    pub actors: Vec<String>,
    /// Mean busy share over those actors.
    pub busy_mean: f64,
    /// The busiest actor's share.
    pub busy_max: f64,
    /// 1 − `busy_mean`.
    pub idle_mean: f64,
}

/// `busy` (per actor) grouped by the node each actor's work runs on. Empty when every actor is
/// on the head: a one-process run has one node, and its per-actor figures say it all.
pub fn node_loads(config: &RunConfig, busy: &BTreeMap<String, f64>) -> BTreeMap<String, NodeLoad> {
    let mut by_node: BTreeMap<String, Vec<(&String, f64)>> = BTreeMap::new();
    for (actor, &share) in busy {
        let node = node_of_actor(config, actor).to_string();
        by_node.entry(node).or_default().push((actor, share));
    }
    if by_node.len() < 2 {
        return BTreeMap::new();
    }
    by_node
        .into_iter()
        .map(|(node, actors)| {
            let busy_mean = actors.iter().map(|(_, b)| b).sum::<f64>() / actors.len() as f64;
            let busy_max = actors.iter().map(|(_, b)| *b).fold(0.0, f64::max);
            let load = NodeLoad {
                actors: actors.into_iter().map(|(a, _)| a.clone()).collect(),
                busy_mean,
                busy_max,
                idle_mean: 1.0 - busy_mean,
            };
            (node, load)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(shares: &[(&str, f64)]) -> BTreeMap<String, f64> {
        shares.iter().map(|(a, b)| (a.to_string(), *b)).collect()
    }

    #[test]
    fn actors_are_grouped_by_the_node_their_work_runs_on() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tiny-async.toml");
        let mut config = RunConfig::from_file(&path).unwrap();
        let shares = busy(&[
            ("generator-0", 0.5),
            ("generator-1", 0.9),
            ("judge-0-0", 0.2),
            ("learner", 0.8),
            ("supervisor", 0.0),
        ]);
        assert!(
            node_loads(&config, &shares).is_empty(),
            "one process: no per-node figures"
        );
        config.generator.count = 2;
        config.generator.nodes = vec!["head".into(), "w1".into()];
        config.judges[0].node = Some("w2".into());
        let nodes = node_loads(&config, &shares);
        assert_eq!(nodes.keys().collect::<Vec<_>>(), ["head", "w1", "w2"]);
        let head = &nodes["head"];
        assert_eq!(head.actors, ["generator-0", "learner", "supervisor"]);
        assert!((head.busy_mean - 1.3 / 3.0).abs() < 1e-12);
        assert_eq!(head.busy_max, 0.8);
        assert!((head.idle_mean - (1.0 - 1.3 / 3.0)).abs() < 1e-12);
        assert_eq!(nodes["w1"].actors, ["generator-1"]);
        assert_eq!(nodes["w2"].actors, ["judge-0-0"]);
        assert_eq!(nodes["w2"].busy_mean, 0.2);
    }
}
