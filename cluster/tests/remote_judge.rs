//! A remote judge and its host in one process: a group crosses as an envelope (image as PNG,
//! reference, responses), the worker's judge scores it, rewards and details come back; a
//! failure of the worker is told apart from a failure of the judge on the group.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use grlhf_actors::judge::Judge;
use grlhf_actors::protocol::{JudgeDetails, PromptItem, Rollout, RolloutGroup};
use grlhf_actors::supervisor::JudgeRebuild;
use grlhf_cluster::remote_judge::{remote_judge, RemoteJudgeSpec};
use grlhf_cluster::remote_stats::RemoteStats;
use grlhf_cluster::role_host::{HostedRole, RoleHost, RoleHostArgs};
use grlhf_cluster::RunIdentity;
use grlhf_models::generation::FinishReason;
use grlhf_models::image_processor::RgbImage;
use ractor::Actor;
use support::{link, runtime};

/// What the worker's judge saw of a group's prompt: uid, reference, image size.
type Seen = Arc<Mutex<Vec<(u64, Option<String>, Option<(u32, u32)>)>>>;

/// Rewards each response by its length; fails on a group whose reference is "fail".
struct LengthJudge {
    seen: Seen,
}

impl Judge for LengthJudge {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        let item = &group.prompt;
        let size = item.image.as_ref().map(|i| (i.width, i.height));
        self.seen
            .lock()
            .unwrap()
            .push((item.uid, item.reference.clone(), size));
        if item.reference.as_deref() == Some("fail") {
            return Err("this group cannot be judged".into());
        }
        if item.reference.as_deref() == Some("nan") {
            return Ok((vec![f32::NAN, 1.0], JudgeDetails::default()));
        }
        let rewards = group.rollouts.iter().map(|r| r.text.len() as f32).collect();
        let details = JudgeDetails {
            judge: "length".into(),
            pairwise: Some(vec![vec![None, Some(0.5)], vec![Some(-0.5), None]]),
            parse_failures: 1,
            judgments: 2,
            judge_ms: 0.0,
        };
        Ok((rewards, details))
    }
}

fn identity() -> RunIdentity {
    support::identity("judge-test", "c")
}

fn judge_on_head(role: &str, rt: &tokio::runtime::Runtime, attach: Duration) -> Box<dyn Judge> {
    let rebuild = remote_judge(RemoteJudgeSpec {
        link: link(role, identity(), attach, rt),
        stats: RemoteStats::default(),
    });
    rebuild().unwrap()().unwrap()
}

fn group(uid: u64, reference: &str) -> RolloutGroup {
    let rollout = |text: &str| Rollout {
        tokens: vec![1, 2],
        logprobs: vec![-0.5, -0.25],
        finish_reason: FinishReason::Stop,
        text: text.into(),
        policy_mask: None,
    };
    let pixels = (0..4 * 6 * 3).map(|i| i as u8).collect();
    RolloutGroup {
        prompt: Arc::new(PromptItem {
            uid,
            id: format!("p{uid}"),
            question: "how many?".into(),
            image: Some(Arc::new(RgbImage::from_rgb(4, 6, pixels).unwrap())),
            reference: Some(reference.into()),
            world: None,
            admitted_at: 3,
        }),
        system: "sys".into(),
        user: "user".into(),
        prompt_tokens: vec![5, 6, 7],
        rollouts: vec![rollout("two"), rollout("three")],
        policy_version: 4,
        generator: "generator-0".into(),
        generate_ms: 1.5,
        temperature: 1.0,
    }
}

#[test]
fn a_group_is_scored_on_the_worker_and_a_judge_failure_is_not_a_worker_failure() {
    let rt = runtime();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let judge_seen = seen.clone();
    let rebuild: JudgeRebuild = Arc::new(move || {
        let seen = judge_seen.clone();
        Ok(
            Box::new(move || Ok(Box::new(LengthJudge { seen }) as Box<dyn Judge>))
                as grlhf_actors::judge::JudgeBuilder,
        )
    });
    let args = RoleHostArgs {
        role: "judge-0-0".into(),
        node: "w1".into(),
        incarnation: 2,
        identity: identity(),
        cookie: None,
        hosted: HostedRole::Judge(rebuild),
        device: tch::Device::Cpu,
        head_ip: "127.0.0.1".parse().unwrap(),
        weights_timeout: Duration::from_secs(5),
        collectives: None,
    };
    rt.block_on(Actor::spawn(None, RoleHost, args)).unwrap();
    let mut judge = judge_on_head("judge-0-0", &rt, Duration::from_secs(5));

    let (rewards, details) = judge.score(&group(11, "2")).unwrap();
    assert_eq!(rewards, vec![3.0, 5.0]);
    assert_eq!((details.judgments, details.parse_failures), (2, 1));
    assert_eq!(details.pairwise.unwrap()[1][0], Some(-0.5));
    assert_eq!(
        seen.lock().unwrap()[0],
        (11, Some("2".into()), Some((4, 6)))
    );

    // The worker's judge fails on this group: an ordinary judge error, the worker is fine.
    let err = judge.score(&group(12, "fail")).unwrap_err();
    assert!(err.contains("this group cannot be judged"), "{err}");
    assert_eq!(judge.unreachable(), None);
    // A non-finite reward (no JSON form): the group's failure, as the local judge actor has it.
    let err = judge.score(&group(14, "nan")).unwrap_err();
    assert!(err.contains("non-finite reward"), "{err}");
    assert_eq!(judge.unreachable(), None);
    // And the next group is scored.
    assert!(judge.score(&group(13, "3")).is_ok());
}

#[test]
fn a_judge_without_a_worker_says_it_is_unreachable() {
    let rt = runtime();
    let mut judge = judge_on_head("judge-9-9", &rt, Duration::from_millis(300));
    let err = judge.score(&group(1, "x")).unwrap_err();
    let why = judge
        .unreachable()
        .expect("the worker, not the group, failed");
    assert_eq!(why, err);
    assert!(why.contains("--node w1"), "{why}");
}
