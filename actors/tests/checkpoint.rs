//! Checkpoint files: atomic completion, checksums, keep-last-k, falling back past a damaged
//! checkpoint, and what a checkpoint says must be issued again.

use std::path::Path;

use grlhf_actors::checkpoint::{self, CheckpointState, RunShape, SavedGroup};
use grlhf_actors::ledger::PromptState;
use grlhf_actors::prompt_source::SourceCheckpoint;

fn shape() -> RunShape {
    RunShape {
        prompts: 10,
        batch_groups: 2,
        group_size: 2,
        max_staleness: 1,
        seed: 0,
    }
}

fn source(next_uid: u64) -> SourceCheckpoint {
    SourceCheckpoint {
        order: (0..10).collect(),
        cursor: next_uid as usize,
        epoch: 0,
        next_uid,
        admitted: next_uid,
        version: 2,
        issued: (0..next_uid).map(|u| (u, u as usize, u / 2)).collect(),
        replacements: 0,
    }
}

fn saved(uid: u64) -> SavedGroup {
    SavedGroup {
        uid,
        system: String::new(),
        user: String::new(),
        prompt_tokens: vec![1, 2],
        rollouts: vec![],
        policy_version: 1,
        generator: "generator-0".into(),
        generate_ms: 1.0,
        temperature: 1.0,
        rewards: vec![0.5, 0.25],
    }
}

/// Writes a complete checkpoint at `version` (tensor files as plain bytes).
fn write(root: &Path, version: u64, keep: usize) -> std::path::PathBuf {
    let scratch = checkpoint::scratch_dir(root, version);
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join(checkpoint::WEIGHTS), vec![version as u8; 4096]).unwrap();
    std::fs::write(scratch.join(checkpoint::OPTIMIZER), b"moments").unwrap();
    let state = CheckpointState::assemble(
        version,
        version,
        0,
        shape(),
        source(6),
        vec![saved(3)],
        (0..6)
            .map(|u| {
                let s = if u < 2 {
                    PromptState::Trained
                } else {
                    PromptState::InFlight { admitted_at: 1 }
                };
                (u, s)
            })
            .collect(),
    );
    checkpoint::finish(root, &scratch, &state, keep).unwrap()
}

#[test]
fn in_flight_prompts_not_in_the_buffer_are_issued_again_and_later_admissions_left_out() {
    let ledger = vec![
        (0, PromptState::Trained),
        (
            1,
            PromptState::Dropped {
                reason: "stale".into(),
            },
        ),
        (2, PromptState::InFlight { admitted_at: 1 }),
        (3, PromptState::InFlight { admitted_at: 1 }),
        (4, PromptState::InFlight { admitted_at: 2 }),
        // Admitted after the source's snapshot: the resumed source admits it afresh.
        (5, PromptState::InFlight { admitted_at: 2 }),
    ];
    let state = CheckpointState::assemble(3, 3, 0, shape(), source(5), vec![saved(3)], ledger);
    assert_eq!(state.requeue, vec![2, 4]);
    assert_eq!(state.ledger.len(), 5);
    assert_eq!(
        state.source.version, 3,
        "the source resumes at the learner's version"
    );
}

#[test]
fn a_checkpoint_verifies_and_older_ones_are_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    for v in [2, 4, 6] {
        write(tmp.path(), v, 2);
    }
    let kept: Vec<u64> = checkpoint::list(tmp.path())
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(kept, vec![6, 4], "keep_last = 2");
    let (dir, state, skipped) = checkpoint::latest_valid(tmp.path()).unwrap();
    assert!(dir.ends_with("step-000006"));
    assert_eq!(state.version, 6);
    assert_eq!(state.requeue, vec![2, 4, 5]);
    assert!(skipped.is_empty());
    assert!(!checkpoint::scratch_dir(tmp.path(), 6).exists());
}

#[test]
fn a_damaged_newest_checkpoint_is_detected_and_the_previous_one_used() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), 2, 3);
    let newest = write(tmp.path(), 4, 3);
    checkpoint::corrupt(&newest).unwrap();
    let (dir, state, skipped) = checkpoint::latest_valid(tmp.path()).unwrap();
    assert!(dir.ends_with("step-000002"));
    assert_eq!(state.version, 2);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("checksum mismatch"), "{}", skipped[0]);
    // A truncated state file and a missing manifest are caught too.
    let truncated = write(tmp.path(), 6, 3);
    std::fs::write(truncated.join(checkpoint::STATE), b"{\"format\":").unwrap();
    let (dir, _, skipped) = checkpoint::latest_valid(tmp.path()).unwrap();
    assert!(dir.ends_with("step-000002"), "{skipped:?}");
    std::fs::remove_file(dir.join(checkpoint::MANIFEST)).unwrap();
    let err = checkpoint::latest_valid(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no usable checkpoint") && err.contains("3 damaged"),
        "{err}"
    );
}

#[test]
fn an_interrupted_write_leaves_no_checkpoint_behind() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), 2, 3);
    // A crash after the tensors and before the rename: only the scratch directory exists.
    let scratch = checkpoint::scratch_dir(tmp.path(), 4);
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join(checkpoint::WEIGHTS), b"partial").unwrap();
    let (dir, _, skipped) = checkpoint::latest_valid(tmp.path()).unwrap();
    assert!(dir.ends_with("step-000002"));
    assert!(skipped.is_empty());
    // A write that fails (a tensor file missing) removes its scratch directory and keeps the rest.
    let state = checkpoint::verify(&dir).unwrap();
    let err = checkpoint::finish(tmp.path(), &scratch, &state, 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains(checkpoint::OPTIMIZER), "{err}");
    assert!(!scratch.exists());
    assert_eq!(checkpoint::list(tmp.path()).len(), 1);
}

#[test]
fn a_multi_turn_group_in_the_buffer_keeps_its_policy_mask_through_a_checkpoint() {
    use grlhf_actors::protocol::Rollout;
    use grlhf_models::generation::FinishReason;
    let turn = |tokens: Vec<i64>| Rollout {
        logprobs: vec![-0.5; tokens.len()],
        tokens,
        finish_reason: FinishReason::Stop,
        text: "answer".into(),
        policy_mask: None,
    };
    // A first turn, three environment tokens, a second turn.
    let trajectory = turn(vec![5, 6]).then(&[7, 8, 9], turn(vec![10]));
    assert_eq!(
        trajectory.policy_mask.as_deref(),
        Some(&[true, true, false, false, false, true][..])
    );
    assert_eq!(trajectory.logprobs, [-0.5, -0.5, 0.0, 0.0, 0.0, -0.5]);
    assert_eq!(trajectory.policy_tokens(), 3);
    let tmp = tempfile::tempdir().unwrap();
    let scratch = checkpoint::scratch_dir(tmp.path(), 1);
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join(checkpoint::WEIGHTS), b"w").unwrap();
    std::fs::write(scratch.join(checkpoint::OPTIMIZER), b"m").unwrap();
    let group = SavedGroup {
        rollouts: vec![trajectory.clone(), turn(vec![4])],
        ..saved(3)
    };
    let ledger = vec![(3, PromptState::InFlight { admitted_at: 1 })];
    let state = CheckpointState::assemble(1, 1, 0, shape(), source(4), vec![group], ledger);
    checkpoint::finish(tmp.path(), &scratch, &state, 1).unwrap();
    let (_, state, _) = checkpoint::latest_valid(tmp.path()).unwrap();
    let rollouts = &state.buffer[0].rollouts;
    assert_eq!(rollouts[0].policy_mask, trajectory.policy_mask);
    assert_eq!(rollouts[0].tokens, trajectory.tokens);
    assert_eq!(rollouts[1].policy_mask, None);
}
