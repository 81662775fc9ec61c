//! Restore: what a resumed run starts from, taken apart from a verified checkpoint — the
//! ledger, the prompt source's position and the prompts to issue again, the replay buffer's
//! groups (around their prompts), the learner's weights and optimiser, and the steps already
//! recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use grlhf_actors::checkpoint::CheckpointState;
use grlhf_actors::learner::{LearnerResume, StepStats};
use grlhf_actors::ledger::Ledger;
use grlhf_actors::prompt_source::{prompt_item, PromptSpec, SourceCheckpoint};
use grlhf_actors::protocol::ScoredGroup;

use super::summary::Reliability;

/// A checkpoint a run continues from.
pub struct Resume {
    pub dir: PathBuf,
    pub state: CheckpointState,
    /// Newer checkpoints that did not verify.
    pub skipped: Vec<String>,
}

/// The state a topology starts from: empty for a fresh run.
#[derive(Default)]
pub struct Restored {
    pub ledger: Ledger,
    /// The source's position and the uids to issue again.
    pub source: Option<(SourceCheckpoint, Vec<u64>)>,
    pub buffer: Vec<ScoredGroup>,
    pub learner: Option<LearnerResume>,
    /// The steps before the checkpoint (they stay in `metrics.jsonl`).
    pub steps: Vec<StepStats>,
    /// The resume's part of the run's reliability record.
    pub reliability: Reliability,
}

impl Restored {
    /// The version the learner starts at.
    pub fn start_version(&self) -> u64 {
        self.learner.as_ref().map_or(0, |r| r.version)
    }

    /// Takes `resume` apart for the topology; `specs` is the run's prompt set, `run_dir` holds
    /// `metrics.jsonl`.
    pub fn from_checkpoint(resume: Resume, specs: &[PromptSpec], run_dir: &Path) -> Result<Self> {
        let Resume {
            dir,
            state,
            skipped,
        } = resume;
        let issued: BTreeMap<u64, (usize, u64)> = state
            .source
            .issued
            .iter()
            .map(|&(uid, index, at)| (uid, (index, at)))
            .collect();
        let buffer = state
            .buffer
            .into_iter()
            .map(|saved| {
                let &(index, at) = issued.get(&saved.uid).ok_or_else(|| {
                    anyhow!(
                        "{}: buffered prompt {} was never issued",
                        dir.display(),
                        saved.uid
                    )
                })?;
                let spec = specs.get(index).ok_or_else(|| {
                    anyhow!(
                        "{}: prompt {} has no place {index} in the prompt set",
                        dir.display(),
                        saved.uid
                    )
                })?;
                let item = prompt_item(saved.uid, spec, at);
                Ok(saved.into_scored(item))
            })
            .collect::<Result<Vec<ScoredGroup>>>()?;
        let reliability = Reliability {
            prompts_reissued: state.requeue.len() as u64,
            resumed_from: Some(dir.clone()),
            damaged_checkpoints_skipped: skipped,
            skipped_steps: state.skipped_steps,
            ..Default::default()
        };
        let learner = LearnerResume {
            version: state.version,
            optimizer_steps: state.optimizer_steps,
            skipped_steps: state.skipped_steps,
            weights: dir.join(grlhf_actors::checkpoint::WEIGHTS),
            optimizer: dir.join(grlhf_actors::checkpoint::OPTIMIZER),
        };
        let steps = metrics_before(run_dir, state.version, &state.recent_steps)?;
        tracing::info!(
            "resuming from {} (step {}; {} buffered groups, {} prompts issued again)",
            dir.display(),
            state.version,
            buffer.len(),
            state.requeue.len()
        );
        Ok(Restored {
            ledger: Ledger::restore(state.ledger),
            source: Some((state.source, state.requeue)),
            buffer,
            learner: Some(learner),
            steps,
            reliability,
        })
    }
}

/// The steps before the checkpoint at `version`: `metrics.jsonl`'s lines before it, completed
/// from the checkpoint's own record of its latest steps (a process killed right after writing
/// the checkpoint may not have logged them). The original file is kept as
/// `metrics.before-resume-N.jsonl`: the resumed run trains the later steps again.
fn metrics_before(run_dir: &Path, version: u64, recent: &[StepStats]) -> Result<Vec<StepStats>> {
    let path = run_dir.join("metrics.jsonl");
    let mut kept: BTreeMap<u64, StepStats> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(&path) {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let stats: StepStats = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a step record", path.display(), i + 1))?;
            if stats.step < version {
                kept.insert(stats.step, stats);
            }
        }
        let backup = run_dir.join(format!("metrics.before-resume-{version}.jsonl"));
        std::fs::copy(&path, &backup).with_context(|| format!("keeping {}", backup.display()))?;
    }
    for stats in recent.iter().filter(|s| s.step < version) {
        kept.entry(stats.step).or_insert_with(|| stats.clone());
    }
    Ok(kept.into_values().collect())
}
