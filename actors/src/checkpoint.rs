//! Checkpoints: everything a run needs to continue where it stopped, written atomically and
//! verified by checksum on the way back.
//!
//! ```text
//! RUN_DIR/checkpoints/step-000012/
//!   weights.safetensors     the policy's parameters
//!   optimizer.safetensors   AdamW's moments (exp_avg.NAME, exp_avg_sq.NAME)
//!   state.json              version, optimizer steps, prompt-source position, the ledger,
//!                           the replay buffer's groups, the prompts to issue again
//!   manifest.json           SHA-256 and size of the three files above (written last)
//! ```
//!
//! A checkpoint is built in `.tmp-step-NNNNNN` and renamed into place only when complete, so a
//! crash mid-write leaves the previous checkpoints as they were. On resume the newest directory
//! whose files all match the manifest is used; a damaged one is reported and skipped. The
//! scheduler needs no state (the learning rate is a function of the step) and neither do the
//! generators' random streams (each batch is seeded from its first prompt's uid).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ActorError;
use crate::ledger::PromptState;
use crate::prompt_source::SourceCheckpoint;
use crate::protocol::Version;
// The buffer owns its saved form; re-exported because a checkpoint is where users meet it.
pub use crate::replay_buffer::SavedGroup;

pub const WEIGHTS: &str = "weights.safetensors";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const STATE: &str = "state.json";
pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;

/// What must match between the run that wrote a checkpoint and the run resuming it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunShape {
    pub prompts: usize,
    pub batch_groups: usize,
    pub group_size: usize,
    pub max_staleness: u64,
    pub seed: u64,
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    /// Learner steps done (the policy version of `weights.safetensors`).
    pub version: Version,
    pub optimizer_steps: u64,
    /// Steps skipped for a non-finite loss or gradient so far.
    pub skipped_steps: u64,
    pub shape: RunShape,
    pub source: SourceCheckpoint,
    pub ledger: Vec<(u64, PromptState)>,
    pub buffer: Vec<SavedGroup>,
    /// Prompts in flight (at a generator, a judge or a stage) when the checkpoint was taken:
    /// a resumed run issues them again.
    pub requeue: Vec<u64>,
    /// The statistics of the steps since the previous checkpoint: a process killed right after
    /// this one may not have written them to `metrics.jsonl` yet.
    #[serde(default)]
    pub recent_steps: Vec<crate::step_stats::StepStats>,
}

impl CheckpointState {
    /// Assembles the state from the three snapshots, taken in this order: source, buffer,
    /// ledger. A prompt admitted after the source's snapshot is left out (the resumed source
    /// will admit it afresh); one in flight and not in the buffer is issued again.
    #[allow(clippy::too_many_arguments)]
    pub fn assemble(
        version: Version,
        optimizer_steps: u64,
        skipped_steps: u64,
        shape: RunShape,
        source: SourceCheckpoint,
        buffer: Vec<SavedGroup>,
        ledger: Vec<(u64, PromptState)>,
    ) -> CheckpointState {
        // The learner checkpoints before telling the source of `version`; the resumed source
        // starts from it, or its admission would wait for a version that is never announced.
        let mut source = source;
        source.version = source.version.max(version);
        let ledger: Vec<(u64, PromptState)> = ledger
            .into_iter()
            .filter(|(uid, _)| *uid < source.next_uid)
            .collect();
        // Only prompts still in flight can be issued again or sit in the buffer.
        let in_flight: std::collections::HashSet<u64> = ledger
            .iter()
            .filter(|(_, s)| matches!(s, PromptState::InFlight { .. }))
            .map(|(uid, _)| *uid)
            .collect();
        source.issued.retain(|(uid, _, _)| in_flight.contains(uid));
        let buffered: std::collections::HashSet<u64> = buffer.iter().map(|g| g.uid).collect();
        let requeue = ledger
            .iter()
            .filter(|(uid, s)| matches!(s, PromptState::InFlight { .. }) && !buffered.contains(uid))
            .map(|(uid, _)| *uid)
            .collect();
        CheckpointState {
            format: FORMAT,
            version,
            optimizer_steps,
            skipped_steps,
            shape,
            source,
            ledger,
            buffer,
            requeue,
            recent_steps: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestEntry {
    file: String,
    bytes: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    version: Version,
    files: Vec<ManifestEntry>,
}

/// The directory name of the checkpoint at `version`.
pub fn step_dir(root: &Path, version: Version) -> PathBuf {
    root.join(format!("step-{version:06}"))
}

/// The scratch directory a checkpoint is written into before its rename.
pub fn scratch_dir(root: &Path, version: Version) -> PathBuf {
    root.join(format!(".tmp-step-{version:06}"))
}

fn sha256_of(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, format!("{:x}", hasher.finalize())))
}

fn io_context<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ActorError + 'a {
    move |e| ActorError::io(what, path, e)
}

fn damaged(message: String) -> ActorError {
    ActorError::Checkpoint(message)
}

/// Completes a checkpoint whose tensor files are already in `scratch`: writes `state.json`,
/// the manifest, syncs, renames `scratch` to its step directory and keeps the newest
/// `keep_last` checkpoints. On error the scratch directory is removed and nothing older is
/// touched.
pub fn finish(
    root: &Path,
    scratch: &Path,
    state: &CheckpointState,
    keep_last: usize,
) -> Result<PathBuf, ActorError> {
    let result = (|| {
        let state_path = scratch.join(STATE);
        let text = serde_json::to_vec(state)
            .map_err(|e| ActorError::Checkpoint(format!("serialising state: {e}")))?;
        std::fs::write(&state_path, text).map_err(io_context("writing", &state_path))?;
        let mut files = Vec::new();
        for name in [WEIGHTS, OPTIMIZER, STATE] {
            let path = scratch.join(name);
            let file = File::open(&path).map_err(io_context("opening", &path))?;
            file.sync_all().map_err(io_context("syncing", &path))?;
            let (bytes, sha256) = sha256_of(&path).map_err(io_context("hashing", &path))?;
            files.push(ManifestEntry {
                file: name.to_string(),
                bytes,
                sha256,
            });
        }
        let manifest = Manifest {
            format: FORMAT,
            version: state.version,
            files,
        };
        let path = scratch.join(MANIFEST);
        let mut file = File::create(&path).map_err(io_context("creating", &path))?;
        file.write_all(&serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"))
            .and_then(|()| file.sync_all())
            .map_err(io_context("writing", &path))?;
        let target = step_dir(root, state.version);
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(io_context("replacing", &target))?;
        }
        std::fs::rename(scratch, &target).map_err(io_context("renaming into", &target))?;
        if let Ok(dir) = File::open(root) {
            let _ = dir.sync_all();
        }
        Ok(target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(scratch);
    } else {
        prune(root, keep_last);
    }
    result
}

/// Step directories under `root`, newest first.
pub fn list(root: &Path) -> Vec<(Version, PathBuf)> {
    let mut found: Vec<(Version, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("step-")?.parse().ok()?;
            Some((version, e.path()))
        })
        .collect();
    found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    found
}

fn prune(root: &Path, keep_last: usize) {
    for (_, dir) in list(root).into_iter().skip(keep_last.max(1)) {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("checkpoint: could not remove {}: {e}", dir.display());
        }
    }
}

/// Checks every file of the checkpoint in `dir` against its manifest and reads its state.
pub fn verify(dir: &Path) -> Result<CheckpointState, ActorError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(io_context("reading", &path))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| damaged(format!("{}: {e}", path.display())))?;
    for name in [WEIGHTS, OPTIMIZER, STATE] {
        let entry = manifest
            .files
            .iter()
            .find(|f| f.file == name)
            .ok_or_else(|| damaged(format!("{}: no entry for {name}", path.display())))?;
        let file = dir.join(name);
        let (bytes, sha256) = sha256_of(&file).map_err(io_context("hashing", &file))?;
        if bytes != entry.bytes || sha256 != entry.sha256 {
            return Err(damaged(format!(
                "{}: checksum mismatch ({bytes} bytes, sha256 {sha256}; the manifest says {} bytes, {})",
                file.display(),
                entry.bytes,
                entry.sha256
            )));
        }
    }
    let path = dir.join(STATE);
    let text = std::fs::read(&path).map_err(io_context("reading", &path))?;
    let state: CheckpointState =
        serde_json::from_slice(&text).map_err(|e| damaged(format!("{}: {e}", path.display())))?;
    if state.format != FORMAT || state.version != manifest.version {
        return Err(damaged(format!(
            "{}: format {} version {} (expected format {FORMAT}, version {})",
            path.display(),
            state.format,
            state.version,
            manifest.version
        )));
    }
    Ok(state)
}

/// The newest checkpoint under `root` that verifies, and the ones skipped on the way (with why).
pub fn latest_valid(root: &Path) -> Result<(PathBuf, CheckpointState, Vec<String>), ActorError> {
    let mut skipped = Vec::new();
    for (_, dir) in list(root) {
        match verify(&dir) {
            Ok(state) => return Ok((dir, state, skipped)),
            Err(e) => {
                tracing::warn!(
                    "checkpoint {} is unusable, trying an older one: {e}",
                    dir.display()
                );
                skipped.push(e.to_string());
            }
        }
    }
    Err(damaged(if skipped.is_empty() {
        format!("no checkpoint under {}", root.display())
    } else {
        format!(
            "no usable checkpoint under {} ({} damaged: {})",
            root.display(),
            skipped.len(),
            skipped.join("; ")
        )
    }))
}

/// Damages the checkpoint in `dir` (fault injection): flips bytes in the middle of its weights.
pub fn corrupt(dir: &Path) -> Result<(), ActorError> {
    let path = dir.join(WEIGHTS);
    let mut bytes = std::fs::read(&path).map_err(io_context("reading", &path))?;
    let middle = bytes.len() / 2;
    for b in bytes.iter_mut().skip(middle).take(16) {
        *b ^= 0xA5;
    }
    std::fs::write(&path, bytes).map_err(io_context("writing", &path))
}
