//! The prompt source as an actor: AReaL's admission rule, wakers when admission reopens, and
//! pause / resume / drain. Every test has a timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grlhf_actors::ledger::Ledger;
use grlhf_actors::prompt_source::{
    PromptSource, PromptSourceArgs, PromptSourceMsg, PromptSpec, Waker,
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
                prompts: specs(5),
                batch_groups: 3,
                max_staleness: 1,
                seed: 0,
                ledger: ledger.clone(),
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
