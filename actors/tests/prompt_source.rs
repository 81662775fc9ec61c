//! The prompt source as an actor: AReaL's admission rule, wakers when admission reopens, and
//! pause / resume / drain. Every test has a timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grlhf_actors::ledger::Ledger;
use grlhf_actors::prompt_source::{
    PromptOrder, PromptSource, PromptSourceArgs, PromptSourceMsg, PromptSpec, SourceCheckpoint,
    Waker,
};
use grlhf_actors::protocol::Control;
use ractor::{Actor, ActorRef};

fn specs(n: usize) -> Vec<PromptSpec> {
    (0..n)
        .map(|i| PromptSpec {
            id: format!("p{i}"),
            question: "q".into(),
            system: String::new(),
            user: String::new(),
            image: None,
            reference: None,
            world: None,
        })
        .collect()
}

async fn take(source: &ActorRef<PromptSourceMsg>, max: usize, woken: &Arc<AtomicUsize>) -> usize {
    let woken = woken.clone();
    let waker: Waker = Box::new(move || {
        woken.fetch_add(1, Ordering::SeqCst);
    });
    ractor::call!(source, |reply| PromptSourceMsg::Take { max, waker, reply })
        .unwrap()
        .len()
}

async fn settle(source: &ActorRef<PromptSourceMsg>) -> u64 {
    // A round trip: every message sent before it has been handled.
    ractor::call!(source, PromptSourceMsg::Admitted).unwrap()
}

#[tokio::test]
async fn admission_follows_the_staleness_rule_and_wakes_waiting_generators() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let ledger = Ledger::new();
        let (source, handle) = Actor::spawn(
            None,
            PromptSource,
            PromptSourceArgs {
                order: Default::default(),
                prompts: specs(5),
                batch_groups: 3,
                max_staleness: 1,
                seed: 0,
                ledger: ledger.clone(),
                resume: None,
            },
        )
        .await
        .unwrap();
        let woken = Arc::new(AtomicUsize::new(0));
        // By version 0 at most (η + 0 + 1)·B = 6 prompts; the set has 5, so epochs wrap.
        assert_eq!(take(&source, 4, &woken).await, 4);
        assert_eq!(take(&source, 4, &woken).await, 2);
        assert_eq!(take(&source, 4, &woken).await, 0);
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        // Version 1 opens 3 more and calls the waiting generator back.
        source.cast(PromptSourceMsg::Version(1)).unwrap();
        settle(&source).await;
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(take(&source, 10, &woken).await, 3);
        // Paused, nothing is admitted whatever the version; resume wakes the waiter.
        source
            .cast(PromptSourceMsg::Control(Control::Pause))
            .unwrap();
        source.cast(PromptSourceMsg::Version(5)).unwrap();
        assert_eq!(take(&source, 10, &woken).await, 0);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        source
            .cast(PromptSourceMsg::Control(Control::Resume))
            .unwrap();
        settle(&source).await;
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert_eq!(take(&source, 100, &woken).await, 21 - 9);
        // Drained, never again.
        source
            .cast(PromptSourceMsg::Control(Control::Drain))
            .unwrap();
        source.cast(PromptSourceMsg::Version(50)).unwrap();
        assert_eq!(take(&source, 10, &woken).await, 0);
        assert_eq!(settle(&source).await, 21);
        let snapshot = ledger.snapshot();
        assert_eq!((snapshot.admitted, snapshot.in_flight), (21, 21));
        source
            .cast(PromptSourceMsg::Control(Control::Stop))
            .unwrap();
        handle.await.unwrap();
    })
    .await
    .expect("the prompt source test timed out");
}

async fn take_uids(source: &ActorRef<PromptSourceMsg>, max: usize) -> Vec<(u64, String, u64)> {
    let waker: Waker = Box::new(|| {});
    ractor::call!(source, |reply| PromptSourceMsg::Take { max, waker, reply })
        .unwrap()
        .into_iter()
        .map(|(item, spec)| (item.uid, spec.id, item.admitted_at))
        .collect()
}

async fn spawn_source(
    ledger: &Ledger,
    resume: Option<(SourceCheckpoint, Vec<u64>)>,
) -> ActorRef<PromptSourceMsg> {
    Actor::spawn(
        None,
        PromptSource,
        PromptSourceArgs {
            order: Default::default(),
            prompts: specs(5),
            batch_groups: 2,
            max_staleness: 0,
            seed: 3,
            ledger: ledger.clone(),
            resume,
        },
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn handed_back_prompts_go_out_first_under_their_uid_without_a_second_admission() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let ledger = Ledger::new();
        let source = spawn_source(&ledger, None).await;
        let first = take_uids(&source, 2).await;
        assert_eq!(
            take_uids(&source, 2).await,
            vec![],
            "lockstep: B = 2 per version"
        );
        // The holder of the first prompt failed: it goes out again, even with admission closed.
        source
            .cast(PromptSourceMsg::Requeue(vec![first[0].0]))
            .unwrap();
        assert_eq!(take_uids(&source, 2).await, vec![first[0].clone()]);
        assert_eq!(ledger.snapshot().admitted, 2);
        assert!(ledger.violations().is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_resumed_source_continues_the_same_order_and_reissues_what_was_in_flight() {
    tokio::time::timeout(Duration::from_secs(30), async {
        // Uninterrupted: six versions' worth of prompts (the set of 5 wraps into epoch 1).
        let ledger = Ledger::new();
        let source = spawn_source(&ledger, None).await;
        let mut straight = Vec::new();
        for v in 0..6 {
            source.cast(PromptSourceMsg::Version(v)).unwrap();
            straight.extend(take_uids(&source, 2).await);
        }
        // Interrupted after version 2's prompts were issued; one of them was in flight.
        let ledger = Ledger::new();
        let source = spawn_source(&ledger, None).await;
        let mut before = Vec::new();
        for v in 0..3 {
            source.cast(PromptSourceMsg::Version(v)).unwrap();
            before.extend(take_uids(&source, 2).await);
        }
        let saved = ractor::call!(source, PromptSourceMsg::Snapshot).unwrap();
        let in_flight = before[5].0;
        let restored = Ledger::restore(ledger.entries());
        let source = spawn_source(&restored, Some((saved, vec![in_flight]))).await;
        let mut after = take_uids(&source, 2).await;
        assert_eq!(
            after,
            vec![before[5].clone()],
            "the in-flight prompt comes back first"
        );
        for v in 3..6 {
            source.cast(PromptSourceMsg::Version(v)).unwrap();
            after.extend(take_uids(&source, 2).await);
        }
        assert_eq!(
            &after[1..],
            &straight[6..],
            "the order continues as if uninterrupted"
        );
        assert!(restored.violations().is_empty());
        assert_eq!(restored.snapshot().admitted, 12);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_curriculum_is_issued_in_its_own_order_every_epoch_and_resumes_where_it_was() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let spawn = |resume: Option<(SourceCheckpoint, Vec<u64>)>| async move {
            Actor::spawn(
                None,
                PromptSource,
                PromptSourceArgs {
                    order: PromptOrder::AsGiven,
                    prompts: specs(4),
                    batch_groups: 100,
                    max_staleness: 0,
                    seed: 9,
                    ledger: Ledger::new(),
                    resume,
                },
            )
            .await
            .unwrap()
        };
        let (source, handle) = spawn(None).await;
        let ids: Vec<String> = take_uids(&source, 6)
            .await
            .into_iter()
            .map(|t| t.1)
            .collect();
        // Two epochs' worth begins in the given order both times, never shuffled.
        assert_eq!(ids, ["p0", "p1", "p2", "p3", "p0", "p1"]);
        let saved = ractor::call!(source, PromptSourceMsg::Snapshot).unwrap();
        source
            .cast(PromptSourceMsg::Control(Control::Stop))
            .unwrap();
        handle.await.unwrap();
        // A resumed source continues the curriculum from its position.
        let (source, handle) = spawn(Some((saved, vec![]))).await;
        let ids: Vec<String> = take_uids(&source, 3)
            .await
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(ids, ["p2", "p3", "p0"]);
        source
            .cast(PromptSourceMsg::Control(Control::Stop))
            .unwrap();
        handle.await.unwrap();
    })
    .await
    .expect("the curriculum test timed out");
}

#[tokio::test]
async fn the_source_remembers_only_prompts_in_flight_however_long_the_run() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let ledger = Ledger::new();
        let source = spawn_source(&ledger, None).await;
        let mut kept = Vec::new();
        for v in 0..200 {
            source.cast(PromptSourceMsg::Version(v)).unwrap();
            let taken = take_uids(&source, 2).await;
            // One of each version's pair is trained; every 50th version's other one stays out.
            ledger.trained(taken[0].0);
            if v % 50 == 0 {
                kept.push(taken[1].clone());
            } else {
                ledger.dropped(taken[1].0, grlhf_actors::ledger::DropReason::Stale);
            }
        }
        source.cast(PromptSourceMsg::Version(200)).unwrap();
        let saved = ractor::call!(source, PromptSourceMsg::Snapshot).unwrap();
        let mut remembered: Vec<u64> = saved.issued.iter().map(|&(uid, _, _)| uid).collect();
        remembered.sort_unstable();
        let in_flight: Vec<u64> = kept.iter().map(|k| k.0).collect();
        assert_eq!(remembered, in_flight, "400 issued, 4 still in flight");
        // A prompt still in flight can still be handed back under its uid.
        source
            .cast(PromptSourceMsg::Requeue(vec![kept[2].0]))
            .unwrap();
        assert_eq!(take_uids(&source, 1).await, vec![kept[2].clone()]);
        assert!(ledger.violations().is_empty());
    })
    .await
    .unwrap();
}
