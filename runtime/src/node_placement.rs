//! Which node each role of a run config runs on: the workers a config needs started, and the
//! node an actor's work runs on (for per-node figures). The settings themselves are
//! `crate::cluster_config`'s.

use crate::cluster_config::{judge_table, node_of, worker_node, HEAD_NODE};
use crate::run_config::RunConfig;

/// The worker nodes `config` places anything on (generators, judges, the evaluator), sorted;
/// empty for a one-process config.
pub fn worker_nodes(config: &RunConfig) -> Vec<String> {
    let generators = config.generator.nodes.iter().map(String::as_str);
    let judges = config.judges.iter().filter_map(|j| j.node.as_deref());
    let evaluator = config.evaluator.iter().filter_map(|e| e.node.as_deref());
    let nodes: std::collections::BTreeSet<&str> = generators
        .chain(judges)
        .chain(evaluator)
        .filter(|n| *n != HEAD_NODE)
        .collect();
    nodes.into_iter().map(str::to_string).collect()
}

/// The node actor `actor` (`generator-G`, `judge-T-I`, `evaluator`, …) runs on: a worker's name,
/// or [`HEAD_NODE`] for every actor the head runs (the learner, the buffer, the supervisor).
pub fn node_of_actor<'a>(config: &'a RunConfig, actor: &str) -> &'a str {
    let generator = actor
        .strip_prefix("generator-")
        .and_then(|g| g.parse().ok());
    let node = if let Some(g) = generator.filter(|&g: &usize| g < config.generator.count) {
        node_of(&config.generator.nodes, g)
    } else if let Some(t) = judge_table(actor) {
        config.judges.get(t).and_then(|j| worker_node(&j.node))
    } else if actor == "evaluator" {
        config.evaluator.as_ref().and_then(|e| worker_node(&e.node))
    } else {
        None
    };
    node.unwrap_or(HEAD_NODE)
}
