//! The judge actor under a misbehaving judge: wrong reward counts, non-finite rewards and errors
//! drop the group with a counted reason (`judge_error`) instead of passing garbage on or
//! stopping the run, and the actor keeps judging afterwards. And the judge pool's routing:
//! groups go around a judge that is busy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use grlhf_actors::activity::ActivityLog;
use grlhf_actors::judge::{Judge, JudgeActor, JudgeArgs, JudgeMsg};
use grlhf_actors::ledger::Ledger;
use grlhf_actors::protocol::{JudgeDetails, PromptItem, RolloutGroup, ScoredGroup, ScoredSink};
use grlhf_actors::simulated::generator::simulated_rollouts;
use ractor::Actor;

/// Answers by uid: 0 → one reward for two responses, 1 → NaN, 2 → an error, else fine.
struct Erratic;

impl Judge for Erratic {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        match group.prompt.uid {
            0 => Ok((vec![1.0], JudgeDetails::default())),
            1 => Ok((vec![f32::NAN, 0.0], JudgeDetails::default())),
            2 => Err("the model fell over".into()),
            _ => Ok((vec![1.0, 0.0], JudgeDetails::default())),
        }
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<u64>>);

impl ScoredSink for Collect {
    fn send_scored(&self, group: ScoredGroup) -> Result<(), String> {
        self.0.lock().unwrap().push(group.group.prompt.uid);
        Ok(())
    }
}

fn group(uid: u64) -> RolloutGroup {
    RolloutGroup {
        prompt: Arc::new(PromptItem {
            uid,
            id: format!("p{uid}"),
            question: "q".into(),
            image: None,
            reference: None,
            world: None,
            admitted_at: 0,
        }),
        system: String::new(),
        user: "q".into(),
        prompt_tokens: vec![1, 2],
        rollouts: simulated_rollouts(2, 4, uid),
        policy_version: 0,
        generator: "g".into(),
        generate_ms: 0.0,
        temperature: 1.0,
    }
}

#[tokio::test]
async fn bad_judge_output_drops_the_group_with_a_counted_reason() {
    let ledger = Ledger::new();
    let sink = Arc::new(Collect::default());
    let (judge, handle) = Actor::spawn(
        None,
        JudgeActor,
        JudgeArgs {
            name: "judge".into(),
            build: Box::new(|| Ok(Box::new(Erratic) as Box<dyn Judge>)),
            sink: sink.clone(),
            activity: ActivityLog::new(),
            ledger: ledger.clone(),
        },
    )
    .await
    .unwrap();
    for uid in 0..4 {
        ledger.admit(uid, 0);
        judge.cast(JudgeMsg::Group(group(uid))).unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sink.0.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *sink.0.lock().unwrap(),
        vec![3],
        "only the good group passes"
    );
    let snapshot = ledger.snapshot();
    assert_eq!(snapshot.dropped_by_reason.get("judge_error"), Some(&3));
    assert_eq!(snapshot.in_flight, 1);
    assert!(snapshot.balances());
    judge.stop(None);
    handle.await.unwrap();
}

/// Sleeps `ms` for group uid 0 and judges every other group at once.
struct SlowOnFirst {
    ms: u64,
}

impl Judge for SlowOnFirst {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        if group.prompt.uid == 0 {
            std::thread::sleep(Duration::from_millis(self.ms));
        }
        Ok((vec![1.0, 0.0], JudgeDetails::default()))
    }
}

#[derive(Default)]
struct ByJudge(Mutex<Vec<(u64, String)>>);

impl ScoredSink for ByJudge {
    fn send_scored(&self, group: ScoredGroup) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((group.group.prompt.uid, group.details.judge.clone()));
        Ok(())
    }
}

#[tokio::test]
async fn the_pool_routes_around_a_busy_judge() {
    use grlhf_actors::judge::JudgePool;
    use grlhf_actors::protocol::GroupSink;

    let ledger = Ledger::new();
    let sink = Arc::new(ByJudge::default());
    let mut judges = Vec::new();
    let mut handles = Vec::new();
    for name in ["judge-a", "judge-b"] {
        let (judge, handle) = Actor::spawn(
            None,
            JudgeActor,
            JudgeArgs {
                name: name.into(),
                build: Box::new(|| Ok(Box::new(SlowOnFirst { ms: 1500 }) as Box<dyn Judge>)),
                sink: sink.clone(),
                activity: ActivityLog::new(),
                ledger: ledger.clone(),
            },
        )
        .await
        .unwrap();
        judges.push(judge);
        handles.push(handle);
    }
    let pool = JudgePool::new(judges.clone());
    // The slow group occupies one judge; the quick ones, spaced out, all go to the other.
    pool.send_group(group(0)).unwrap();
    for uid in 1..6 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.send_group(group(uid)).unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sink.0.lock().unwrap().len() < 6 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scored = sink.0.lock().unwrap().clone();
    assert_eq!(scored.len(), 6, "{scored:?}");
    let slow = &scored.iter().find(|(uid, _)| *uid == 0).unwrap().1;
    for (uid, judge) in &scored {
        if *uid != 0 {
            assert_ne!(
                judge, slow,
                "group {uid} queued behind the busy judge: {scored:?}"
            );
        }
    }
    // Every slot is given back once its message is handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pool.loads() != vec![0, 0] && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pool.loads(), vec![0, 0]);
    for judge in &judges {
        judge.stop(None);
    }
    for handle in handles {
        handle.await.unwrap();
    }
}

/// Scores at once; many of them make the pool's load counters change all the time.
struct Instant0;

impl Judge for Instant0 {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        Ok((vec![0.5; group.rollouts.len()], JudgeDetails::default()))
    }
}

/// Routing while other threads route and judges finish: the loads change under every routing
/// decision. Sorting by counters that are re-read during the sort has no total order, and std's
/// sort panics on that (it did in `grlhf bench` at 64 actors and more).
#[test]
fn routing_survives_loads_changing_from_other_threads() {
    use grlhf_actors::judge::JudgePool;
    use grlhf_actors::protocol::GroupSink;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let (senders, per_sender, judges_n) = (6u64, 3000u64, 64);
    let ledger = Ledger::new();
    let sink = Arc::new(Collect::default());
    let (judges, handles): (Vec<_>, Vec<_>) = runtime.block_on(async {
        let mut spawned = Vec::new();
        for j in 0..judges_n {
            spawned.push(
                Actor::spawn(
                    None,
                    JudgeActor,
                    JudgeArgs {
                        name: format!("judge-{j}"),
                        build: Box::new(|| Ok(Box::new(Instant0) as Box<dyn Judge>)),
                        sink: sink.clone(),
                        activity: ActivityLog::new(),
                        ledger: ledger.clone(),
                    },
                )
                .await
                .unwrap(),
            );
        }
        spawned.into_iter().unzip()
    });
    let pool = Arc::new(JudgePool::new(judges.clone()));
    let threads: Vec<_> = (0..senders)
        .map(|s| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for k in 0..per_sender {
                    pool.send_group(group(s * per_sender + k)).unwrap();
                    let order = pool.by_load();
                    assert_eq!(order.len(), 64);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a routing thread panicked");
    }
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while sink.0.lock().unwrap().len() < (senders * per_sender) as usize
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for judge in &judges {
            judge.stop(None);
        }
        for handle in handles {
            handle.await.unwrap();
        }
    });
    assert_eq!(
        sink.0.lock().unwrap().len(),
        (senders * per_sender) as usize
    );
    assert!(pool.loads().iter().all(|&l| l == 0), "{:?}", pool.loads());
}
