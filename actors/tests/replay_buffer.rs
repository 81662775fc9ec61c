//! The replay buffer as an actor: the staleness bound, oldest-first batches, and the drop and
//! wait policies for a slow generator's group. Every test has a timeout.

use std::sync::Arc;
use std::time::Duration;

use grlhf_actors::ledger::Ledger;
use grlhf_actors::protocol::{JudgeDetails, PromptItem, RolloutGroup, ScoredGroup, Version};
use grlhf_actors::replay_buffer::{BufferArgs, BufferMsg, ReplayBuffer, StalePolicy};
use ractor::{Actor, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

fn scored(uid: u64, version: Version) -> Box<ScoredGroup> {
    Box::new(ScoredGroup {
        group: RolloutGroup {
            prompt: Arc::new(PromptItem {
                uid,
                id: format!("p{uid}"),
                question: String::new(),
                image: None,
                reference: None,
                world: None,
                admitted_at: 0,
            }),
            system: String::new(),
            user: String::new(),
            prompt_tokens: vec![],
            rollouts: vec![],
            policy_version: version,
            generator: "g".into(),
            generate_ms: 0.0,
            temperature: 1.0,
        },
        rewards: vec![],
        details: JudgeDetails::default(),
    })
}

async fn buffer(
    policy: StalePolicy,
    batch_groups: usize,
    eta: u64,
    ledger: &Ledger,
) -> ActorRef<BufferMsg> {
    let args = BufferArgs {
        batch_groups,
        max_staleness: eta,
        stale_policy: policy,
        ledger: ledger.clone(),
        restore: Vec::new(),
    };
    Actor::spawn(None, ReplayBuffer, args).await.unwrap().0
}

/// Sends a sample request and returns the receiver of its batch.
fn request(buffer: &ActorRef<BufferMsg>, version: Version) -> oneshot::Receiver<Vec<ScoredGroup>> {
    let (tx, rx) = oneshot::channel();
    buffer
        .cast(BufferMsg::Sample {
            version,
            reply: RpcReplyPort::from(tx),
        })
        .unwrap();
    rx
}

async fn uids(rx: oneshot::Receiver<Vec<ScoredGroup>>) -> Vec<u64> {
    let batch = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("no batch")
        .unwrap();
    batch.iter().map(|g| g.group.prompt.uid).collect()
}

/// A slow generator: prompt 0 (admitted at version 0) arrives after prompt 1 (version 1).
async fn slow_generator(policy: StalePolicy) -> (Vec<u64>, u64) {
    let ledger = Ledger::new();
    ledger.admit(0, 0);
    ledger.admit(1, 1);
    let b = buffer(policy, 1, 1, &ledger).await;
    b.cast(BufferMsg::Scored(scored(1, 1))).unwrap();
    let mut first = request(&b, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let served_early = first.try_recv().ok();
    b.cast(BufferMsg::Scored(scored(0, 0))).unwrap();
    let first = match served_early {
        Some(batch) => batch.iter().map(|g| g.group.prompt.uid).collect(),
        None => uids(first).await,
    };
    for &uid in &first {
        ledger.trained(uid);
    }
    // The next step, at version 2: version-0 groups are now older than η = 1.
    let second = request(&b, 2);
    b.cast(BufferMsg::Scored(scored(2, 2))).unwrap();
    ledger.admit(2, 2);
    let second = uids(second).await;
    let mut order = first;
    order.extend(second);
    let stats = ractor::call!(b, BufferMsg::Stats).unwrap();
    (order, stats.dropped_stale)
}

#[tokio::test]
async fn drop_serves_what_is_there_and_wait_holds_for_the_slow_group() {
    tokio::time::timeout(Duration::from_secs(30), async {
        // Drop: prompt 1 is served at once; prompt 0 arrives, then goes stale and is dropped.
        assert_eq!(slow_generator(StalePolicy::Drop).await, (vec![1, 2], 1));
        // Wait: the learner's batch waits for prompt 0 and takes it first; nothing is dropped.
        assert_eq!(slow_generator(StalePolicy::Wait).await, (vec![0, 1], 0));
    })
    .await
    .expect("the replay buffer test timed out");
}

#[tokio::test]
async fn batches_take_the_oldest_versions_and_never_exceed_the_bound() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let ledger = Ledger::new();
        for uid in 0..5 {
            ledger.admit(uid, 0);
        }
        let b = buffer(StalePolicy::Drop, 2, 1, &ledger).await;
        for (uid, version) in [(0, 3), (1, 1), (2, 2), (3, 3), (4, 0)] {
            b.cast(BufferMsg::Scored(scored(uid, version))).unwrap();
        }
        // At version 3 with η = 1: versions 0 and 1 are stale; the batch is the two oldest left.
        let batch = uids(request(&b, 3)).await;
        assert_eq!(batch, vec![2, 0]);
        let stats = ractor::call!(b, BufferMsg::Stats).unwrap();
        assert_eq!(
            (
                stats.dropped_stale,
                stats.buffered,
                stats.max_staleness_served
            ),
            (2, 1, 1)
        );
        assert_eq!(ledger.snapshot().dropped_by_reason["stale"], 2);
    })
    .await
    .expect("the replay buffer test timed out");
}
