//! The variants of a sweep: the config changed along one axis at a time (sync, async at each η,
//! generator and judge counts, group size, batch size).

use crate::bench_settings::SweepSettings;
use crate::run_config::{Mode, RunConfig};

/// `(label, axis, config)` for every variant, the config's own first.
pub fn variants(base: &RunConfig, sweep: &SweepSettings) -> Vec<(String, String, RunConfig)> {
    let mut out = Vec::new();
    let mut sync = base.clone();
    sync.mode = Mode::Sync;
    out.push(("sync".to_string(), "mode".to_string(), sync));
    let mut etas = sweep.max_staleness.clone();
    etas.sort();
    etas.dedup();
    for eta in etas {
        let mut c = base.clone();
        c.mode = Mode::Async;
        c.max_staleness = eta;
        out.push((format!("async η={eta}"), "mode".to_string(), c));
    }
    let async_base = |c: &RunConfig| {
        let mut c = c.clone();
        c.mode = Mode::Async;
        c
    };
    for &g in &sweep.generators {
        let mut c = async_base(base);
        c.generator.count = g;
        if c.generator.devices.len() != 1 {
            c.generator.devices = vec![c.generator.devices[0].clone()];
        }
        // Placed one per node: the variant's generators take the nodes in turn.
        if c.generator.nodes.len() > 1 {
            let nodes = &base.generator.nodes;
            c.generator.nodes = (0..g).map(|i| nodes[i % nodes.len()].clone()).collect();
        }
        out.push((format!("generators={g}"), "generators".to_string(), c));
    }
    for &j in &sweep.judges {
        let mut c = async_base(base);
        if let Some(first) = c.judges.first_mut() {
            first.count = j;
        }
        c.judges.truncate(1);
        out.push((format!("judges={j}"), "judges".to_string(), c));
    }
    for &n in &sweep.group_size {
        let mut c = async_base(base);
        c.group_size = n;
        out.push((format!("n={n}"), "group_size".to_string(), c));
    }
    for &b in &sweep.batch_groups {
        let mut c = async_base(base);
        c.batch_groups = b;
        out.push((format!("B={b}"), "batch_groups".to_string(), c));
    }
    out
}

/// The generator and judge counts of a scale run with `actors` actors in all (one learner),
/// split in proportion to the two stages' per-step work so neither starves the other.
pub fn scale_split(actors: usize, generate_s: f64, judge_s: f64) -> (usize, usize) {
    let workers = actors.saturating_sub(1).max(2);
    let share = if generate_s + judge_s > 0.0 {
        generate_s / (generate_s + judge_s)
    } else {
        0.5
    };
    let generators = ((workers as f64 * share).round() as usize).clamp(1, workers - 1);
    (generators, workers - generators)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_split_keeps_one_of_each_and_follows_the_work() {
        assert_eq!(scale_split(3, 1.0, 1.0), (1, 1));
        assert_eq!(scale_split(256, 3.0, 1.0), (191, 64));
        assert_eq!(scale_split(5, 100.0, 0.0), (3, 1));
    }
}
