//! A remote engine and its engine host in one process: the whole request protocol (envelopes,
//! attach, weights over the TCP plane before a batch, pings while a batch runs) without a
//! second process. The host is a local actor here, so only ractor_cluster's transport is left
//! out; runtime/tests/distributed.rs covers that with real processes.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grlhf_actors::error::ActorError;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::protocol::Rollout;
use grlhf_actors::rollout_engine::{
    Conversation, GeneratedGroup, GeneratorConfig, RolloutEngine, RolloutEngineBuilder,
};
use grlhf_cluster::bucket_broadcast::Collectives;
use grlhf_cluster::collective_sender::CollectiveChoice;
use grlhf_cluster::loopback_collective::LoopbackCollectives;
use grlhf_cluster::remote_call::RemoteRole;
use grlhf_cluster::remote_engine::remote_rollout_engine;
use grlhf_cluster::remote_model::RemoteModelSpec;
use grlhf_cluster::remote_stats::RemoteStats;
use grlhf_cluster::role_host::{role_group, HostedRole, RoleHost, RoleHostArgs, RoleHostMsg};
use grlhf_cluster::wire::{Envelope, HostReply, HostRequest};
use grlhf_cluster::RunIdentity;
use grlhf_models::generation::FinishReason;
use grlhf_models::image_processor::RgbImage;
use proptest::prelude::*;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use support::runtime;
use tch::Tensor;

/// What the fake engine saw, for the test to check.
#[derive(Default)]
struct Seen {
    /// The value of `w` after each weight update.
    weights: Vec<f64>,
    /// (prompt user text, image size) per generated prompt.
    prompts: Vec<(String, Option<(u32, u32)>)>,
}

/// A deterministic engine: each response encodes the prompt, the seed and the current weight,
/// so the test can tell that the right weights were in place for the right batch.
struct FakeEngine {
    w: f64,
    seen: Arc<Mutex<Seen>>,
    delay: Duration,
}

impl RolloutEngine for FakeEngine {
    fn generate(
        &mut self,
        prompts: &[PromptSpec],
        n: usize,
        _config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<GeneratedGroup>, ActorError> {
        std::thread::sleep(self.delay);
        let mut seen = self.seen.lock().unwrap();
        Ok(prompts
            .iter()
            .map(|p| {
                seen.prompts.push((
                    p.user.clone(),
                    p.image.as_ref().map(|i| (i.width, i.height)),
                ));
                let rollouts = (0..n)
                    .map(|k| Rollout {
                        tokens: vec![seed as i64, k as i64, p.user.len() as i64],
                        logprobs: vec![self.w as f32, -0.5, -0.25],
                        finish_reason: FinishReason::Stop,
                        text: format!("{}#{k}", p.user),
                        policy_mask: None,
                    })
                    .collect();
                (vec![1, 2, 3], rollouts)
            })
            .collect())
    }

    fn continue_conversations(
        &mut self,
        conversations: &[Conversation],
        _config: &GeneratorConfig,
        seed: u64,
    ) -> Result<Vec<Rollout>, ActorError> {
        Ok(conversations
            .iter()
            .map(|c| Rollout {
                tokens: vec![seed as i64, c.so_far.len() as i64],
                logprobs: vec![self.w as f32; 2],
                finish_reason: FinishReason::Length,
                text: format!("{} after {:?}", c.prompt.user, c.so_far),
                policy_mask: None,
            })
            .collect())
    }

    fn user_turn_tokens(&self, text: &str, close_turn: bool) -> Result<Vec<i64>, ActorError> {
        if text.is_empty() {
            return Err("an empty environment turn".into());
        }
        let mut tokens: Vec<i64> = text.bytes().map(i64::from).collect();
        tokens.push(if close_turn { 1 } else { 0 });
        Ok(tokens)
    }

    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        let (_, w) = tensors
            .iter()
            .find(|(name, _)| name == "w")
            .ok_or("no tensor named w")?;
        self.w = w.double_value(&[0]);
        self.seen.lock().unwrap().weights.push(self.w);
        Ok(())
    }
}

fn fake_builder(seen: Arc<Mutex<Seen>>, delay: Duration) -> RolloutEngineBuilder {
    Arc::new(move |_: Option<&Path>| {
        Ok(Box::new(FakeEngine {
            w: 0.0,
            seen: seen.clone(),
            delay,
        }) as Box<dyn RolloutEngine>)
    })
}

fn identity(config: &str) -> RunIdentity {
    support::identity("remote-test", config)
}

fn link(role: &str, runtime: &tokio::runtime::Runtime, config: &str) -> Arc<RemoteRole> {
    support::link(role, identity(config), Duration::from_secs(5), runtime)
}

fn spec(generator: &str, runtime: &tokio::runtime::Runtime, config: &str) -> RemoteModelSpec {
    RemoteModelSpec {
        link: link(generator, runtime, config),
        weights_ip: "127.0.0.1".parse().unwrap(),
        stats: RemoteStats::default(),
        collective: None,
    }
}

fn spawn_role_host(
    runtime: &tokio::runtime::Runtime,
    role: &str,
    config: &str,
    hosted: HostedRole,
) -> ActorRef<RoleHostMsg> {
    spawn_role_host_with(runtime, role, config, hosted, None)
}

fn spawn_role_host_with(
    runtime: &tokio::runtime::Runtime,
    role: &str,
    config: &str,
    hosted: HostedRole,
    collectives: Option<Arc<dyn Collectives>>,
) -> ActorRef<RoleHostMsg> {
    let args = RoleHostArgs {
        role: role.into(),
        node: "w1".into(),
        incarnation: 7,
        identity: identity(config),
        cookie: None,
        hosted,
        device: tch::Device::Cpu,
        head_ip: "127.0.0.1".parse().unwrap(),
        weights_timeout: Duration::from_secs(5),
        collectives,
    };
    runtime
        .block_on(Actor::spawn(None, RoleHost, args))
        .unwrap()
        .0
}

fn spawn_host(
    runtime: &tokio::runtime::Runtime,
    generator: &str,
    config: &str,
    engine: RolloutEngineBuilder,
) -> ActorRef<RoleHostMsg> {
    spawn_role_host(runtime, generator, config, HostedRole::Engine(engine))
}

/// A host of the fake engine (answering after `delay`) for `generator`, with what it sees.
fn fake_host(
    rt: &tokio::runtime::Runtime,
    generator: &str,
    delay: Duration,
) -> (Arc<Mutex<Seen>>, ActorRef<RoleHostMsg>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let host = spawn_host(rt, generator, "c", fake_builder(seen.clone(), delay));
    (seen, host)
}

fn prompt(user: &str, image: Option<(u32, u32)>) -> PromptSpec {
    PromptSpec {
        id: user.into(),
        question: "q".into(),
        system: "sys".into(),
        user: user.into(),
        image: image.map(|(w, h)| {
            let pixels = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
            Arc::new(RgbImage::from_rgb(w, h, pixels).unwrap())
        }),
        reference: None,
        world: None,
    }
}

#[test]
fn batches_run_on_the_host_after_the_weights_they_name_arrived() {
    let rt = runtime();
    let (seen, _host) = fake_host(&rt, "gen-a", Duration::ZERO);
    let spec = spec("gen-a", &rt, "c");
    let stats = spec.stats.clone();
    let build = remote_rollout_engine(spec);
    let mut engine = build(None).unwrap();
    let config = GeneratorConfig::default();
    let prompts = [prompt("red?", Some((5, 3))), prompt("text only", None)];

    // No weights published yet: the engine's own.
    let groups = engine.generate(&prompts, 2, &config, 11).unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].1[1].tokens, vec![11, 1, 4]);
    assert_eq!(groups[0].1[0].logprobs[0], 0.0);
    assert_eq!(groups[1].1[0].text, "text only#0");

    // Two updates before a batch: the batch sees the second (latest wins, never older).
    for w in [0.25f64, 0.75] {
        let t = Tensor::from_slice(&[w as f32]);
        engine.apply_weights(&[("w".into(), t)]).unwrap();
    }
    let groups = engine.generate(&prompts[..1], 3, &config, 12).unwrap();
    assert_eq!(groups[0].1.len(), 3);
    assert_eq!(groups[0].1[2].logprobs[0], 0.75);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.weights.last(), Some(&0.75));
    assert!(seen.weights.iter().all(|w| [0.25, 0.75].contains(w)));
    // The image crossed as PNG with its size intact.
    assert_eq!(seen.prompts[0], ("red?".to_string(), Some((5, 3))));
    assert_eq!(seen.prompts[1], ("text only".to_string(), None));

    // The head's account: two batches of 2 and 1 prompts, one attach, the weights that went.
    let stats = stats.snapshot();
    let s = &stats["gen-a"];
    assert_eq!(
        (s.node.as_str(), s.attaches, s.calls, s.groups),
        ("w1", 1, 2, 3)
    );
    assert!(s.call_s >= s.worker_weights_s + s.worker_compute_s, "{s:?}");
    assert!(s.weight_versions >= 1 && s.weight_bytes > 0, "{s:?}");
}

#[test]
fn multi_turn_calls_are_forwarded_after_the_weights_they_need() {
    let rt = runtime();
    let (_, _host) = fake_host(&rt, "gen-g", Duration::ZERO);
    let mut engine = remote_rollout_engine(spec("gen-g", &rt, "c"))(None).unwrap();
    let config = GeneratorConfig::default();
    // Before any batch reached the worker there is no host to ask.
    let early = engine.user_turn_tokens("hi", false).unwrap_err();
    assert!(matches!(early, ActorError::Unreachable(_)), "{early:?}");
    engine
        .generate(&[prompt("q", None)], 2, &config, 1)
        .unwrap();
    assert_eq!(
        engine.user_turn_tokens("ok", true).unwrap(),
        vec![b'o' as i64, b'k' as i64, 1]
    );
    // The engine's own refusal is an engine error, not a lost worker.
    let refused = engine.user_turn_tokens("", false).unwrap_err();
    assert!(matches!(refused, ActorError::Engine(_)), "{refused:?}");
    engine
        .apply_weights(&[("w".into(), Tensor::from_slice(&[0.25f32]))])
        .unwrap();
    let conversations = [
        Conversation {
            prompt: prompt("a", Some((2, 2))),
            so_far: vec![4, 5, 6],
        },
        Conversation {
            prompt: prompt("b", None),
            so_far: vec![],
        },
    ];
    let rollouts = engine
        .continue_conversations(&conversations, &config, 9)
        .unwrap();
    assert_eq!(rollouts.len(), 2);
    assert_eq!(rollouts[0].tokens, vec![9, 3]);
    assert_eq!(rollouts[0].text, "a after [4, 5, 6]");
    // The continuation ran on the weights published before it.
    assert_eq!(rollouts[1].logprobs, vec![0.25, 0.25]);
}

#[test]
fn a_host_of_another_config_refuses_to_attach_naming_the_field() {
    let rt = runtime();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let _host = spawn_host(&rt, "gen-b", "ours", fake_builder(seen, Duration::ZERO));
    let mut engine = remote_rollout_engine(spec("gen-b", &rt, "theirs"))(None).unwrap();
    let err = engine
        .generate(&[prompt("p", None)], 2, &GeneratorConfig::default(), 1)
        .unwrap_err();
    // A refusal, not a lost worker: retrying will not help (the generator fails on it too).
    assert!(matches!(err, ActorError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("`config_hash` differs"), "{err}");
}

#[test]
fn no_host_is_reported_when_the_attach_deadline_passes() {
    let rt = runtime();
    let mut spec = spec("gen-nobody", &rt, "c");
    let mut link = Arc::into_inner(spec.link).unwrap();
    link.timeouts.attach = Duration::from_millis(300);
    spec.link = Arc::new(link);
    let mut engine = remote_rollout_engine(spec)(None).unwrap();
    let started = Instant::now();
    let err = engine
        .generate(&[prompt("p", None)], 2, &GeneratorConfig::default(), 1)
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        err.to_string().contains("--node w1"),
        "the error says how to start the worker: {err}"
    );
}

#[test]
fn an_oversize_batch_is_refused_before_sending_and_dropped_not_failed() {
    let rt = runtime();
    let (seen, _host) = fake_host(&rt, "gen-c", Duration::ZERO);
    let mut engine = remote_rollout_engine(spec("gen-c", &rt, "c"))(None).unwrap();
    let huge = "x".repeat(13 << 20);
    let err = engine
        .generate(&[prompt(&huge, None)], 2, &GeneratorConfig::default(), 1)
        .unwrap_err();
    assert!(matches!(err, ActorError::Engine(_)), "{err:?}");
    assert!(err.to_string().contains("generator.batch_prompts"), "{err}");
    assert!(seen.lock().unwrap().prompts.is_empty());
    // The link is still usable.
    engine
        .generate(&[prompt("small", None)], 2, &GeneratorConfig::default(), 1)
        .unwrap();
}

#[test]
fn a_busy_host_still_answers_pings_so_a_long_batch_is_not_taken_for_a_dead_worker() {
    let rt = runtime();
    // One batch takes 10 heartbeat intervals, over three times the silence that declares a
    // worker dead.
    let (_, _host) = fake_host(&rt, "gen-d", Duration::from_secs(1));
    let mut engine = remote_rollout_engine(spec("gen-d", &rt, "c"))(None).unwrap();
    engine
        .generate(&[prompt("slow", None)], 2, &GeneratorConfig::default(), 1)
        .unwrap();
}

/// One request straight to a host, its reply decoded.
fn ask(
    rt: &tokio::runtime::Runtime,
    host: &ActorRef<RoleHostMsg>,
    request: HostRequest,
) -> HostReply {
    let bytes = Envelope::new("remote-test", 1, request).encode();
    let reply = rt
        .block_on(host.call(
            |port| RoleHostMsg::Call(bytes, port),
            Some(Duration::from_secs(10)),
        ))
        .unwrap();
    let ractor::rpc::CallResult::Success(reply) = reply else {
        panic!("no reply");
    };
    Envelope::<HostReply>::decode(&reply, "remote-test", "host")
        .unwrap()
        .body
}

#[test]
fn weights_whose_digest_is_not_the_one_the_head_named_are_not_applied() {
    let rt = runtime();
    let (seen, host) = fake_host(&rt, "gen-f", Duration::ZERO);
    let server = grlhf_cluster::WeightServer::bind(grlhf_cluster::WeightServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        grlhf_cluster::Handshake::new(identity("c"), None),
    ))
    .unwrap();
    let attach = HostRequest::Attach {
        identity: identity("c"),
        role: "gen-f".into(),
        weights: Some(server.local_addr()),
    };
    assert!(matches!(
        ask(&rt, &host, attach),
        HostReply::Attached { .. }
    ));
    let published = server
        .publish(1, &[("w".into(), Tensor::from_slice(&[0.5f32]))])
        .unwrap();
    let generate = |digest: String| HostRequest::Generate {
        prompts: vec![grlhf_cluster::wire::WirePrompt::from_spec(&prompt("p", None)).unwrap()],
        n: 2,
        config: GeneratorConfig::default(),
        seed: 1,
        weights_version: 1,
        weights_digest: Some(digest),
    };
    // The stream says version 1 is X; the head's link says it is Y: refused, nothing applied.
    match ask(&rt, &host, generate("00".repeat(32))) {
        HostReply::Failed { reason } => assert!(reason.contains("not applied"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(seen.lock().unwrap().weights.is_empty());
    // A new stream of the same version with the digest the head named: applied, then used.
    let attach = HostRequest::Attach {
        identity: identity("c"),
        role: "gen-f".into(),
        weights: Some(server.local_addr()),
    };
    assert!(matches!(
        ask(&rt, &host, attach),
        HostReply::Attached { .. }
    ));
    match ask(&rt, &host, generate(published.digest)) {
        HostReply::Generated { groups, .. } => assert_eq!(groups[0].1[0].logprobs[0], 0.5),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().weights, vec![0.5]);
}

#[test]
fn a_payload_the_worker_cannot_use_is_the_batchs_failure_not_the_workers() {
    let rt = runtime();
    let (seen, host) = fake_host(&rt, "gen-h", Duration::ZERO);
    let attach = HostRequest::Attach {
        identity: identity("c"),
        role: "gen-h".into(),
        weights: None,
    };
    assert!(matches!(
        ask(&rt, &host, attach),
        HostReply::Attached { .. }
    ));
    let mut broken =
        grlhf_cluster::wire::WirePrompt::from_spec(&prompt("p", Some((3, 3)))).unwrap();
    broken.image_png = Some(b"\x89PNG but not really".to_vec());
    let request = HostRequest::Generate {
        prompts: vec![broken],
        n: 2,
        config: GeneratorConfig::default(),
        seed: 1,
        weights_version: 0,
        weights_digest: None,
    };
    match ask(&rt, &host, request) {
        HostReply::EngineError { reason } => assert!(reason.contains("not a PNG"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(seen.lock().unwrap().prompts.is_empty());
}

/// A host that answers pings until frozen, then keeps every call unanswered (holding its
/// reply port, as a stopped process does): what a SIGSTOPped worker looks like from the head.
struct FreezingHost;

impl Actor for FreezingHost {
    type Msg = RoleHostMsg;
    type State = (Arc<AtomicBool>, Vec<ractor::RpcReplyPort<Vec<u8>>>);
    type Arguments = (String, Arc<AtomicBool>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (generator, frozen): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(role_group(&generator), vec![myself.get_cell()]);
        Ok((frozen, Vec::new()))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        RoleHostMsg::Call(bytes, port): Self::Msg,
        (frozen, held): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let request = Envelope::<HostRequest>::decode(&bytes, "remote-test", "head")?.body;
        let reply = match request {
            _ if frozen.load(Ordering::SeqCst) => {
                held.push(port);
                return Ok(());
            }
            HostRequest::Ping => HostReply::Pong {
                node: "w1".into(),
                busy: false,
            },
            HostRequest::Attach { .. } => HostReply::Attached { node: "w1".into() },
            // The batch never finishes; the worker freezes while it runs.
            _ => {
                frozen.store(true, Ordering::SeqCst);
                held.push(port);
                return Ok(());
            }
        };
        let _ = port.send(Envelope::new("remote-test", 3, reply).encode());
        Ok(())
    }
}

#[test]
fn a_frozen_host_is_declared_dead_after_the_heartbeat_silence_and_fails_the_generator() {
    let rt = runtime();
    let frozen = Arc::new(AtomicBool::new(false));
    rt.block_on(Actor::spawn(
        None,
        FreezingHost,
        ("gen-e".to_string(), frozen.clone()),
    ))
    .unwrap();
    let mut engine = remote_rollout_engine(spec("gen-e", &rt, "c"))(None).unwrap();
    let started = Instant::now();
    let err = engine
        .generate(&[prompt("p", None)], 2, &GeneratorConfig::default(), 1)
        .unwrap_err();
    let took = started.elapsed();
    assert!(frozen.load(Ordering::SeqCst));
    assert!(matches!(err, ActorError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("frozen or unreachable"), "{err}");
    // Silence is 3 × 100 ms from the last answer (the attach, just before the batch); the
    // batch's own deadline is 30 s.
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "declared dead after {took:?}"
    );
}

#[test]
fn envelopes_of_another_protocol_or_run_and_garbage_are_refused_naming_why() {
    let ours = Envelope::new("run-a", 1, HostRequest::Ping).encode();
    assert!(Envelope::<HostRequest>::decode(&ours, "run-a", "p").is_ok());
    let other_run = Envelope::<HostRequest>::decode(&ours, "run-b", "p").unwrap_err();
    assert!(
        other_run.to_string().contains("`run_id` differs"),
        "{other_run}"
    );
    let mut foreign: serde_json::Value = serde_json::from_slice(&ours).unwrap();
    foreign["protocol"] = 99.into();
    let foreign = serde_json::to_vec(&foreign).unwrap();
    let err = Envelope::<HostRequest>::decode(&foreign, "run-a", "p").unwrap_err();
    assert!(err.to_string().contains("`protocol` differs"), "{err}");
    let garbage = Envelope::<HostRequest>::decode(b"\x00\xffGET / HTTP/1.1", "run-a", "p");
    assert!(garbage
        .unwrap_err()
        .to_string()
        .contains("not a grlhf envelope"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A prompt survives the wire: chat turns as they were, the image pixel for pixel (PNG is
    /// lossless), inside an envelope that decodes to the same request.
    #[test]
    fn prompts_round_trip_through_envelopes(
        user in "\\PC{0,40}",
        system in "\\PC{0,20}",
        size in proptest::option::of((1u32..24, 1u32..24)),
        seed in any::<u64>(),
    ) {
        let spec = PromptSpec {
            system: system.clone(),
            ..prompt(&user, size)
        };
        let wire = grlhf_cluster::wire::WirePrompt::from_spec(&spec).unwrap();
        let request = HostRequest::Generate {
            prompts: vec![wire],
            n: 3,
            config: GeneratorConfig::default(),
            seed,
            weights_version: 2,
            weights_digest: Some("ab".repeat(32)),
        };
        let bytes = Envelope::new("r", 5, request).encode();
        let back = Envelope::<HostRequest>::decode(&bytes, "r", "p").unwrap();
        prop_assert_eq!(back.incarnation, 5);
        let HostRequest::Generate { mut prompts, seed: s, n, weights_version, .. } = back.body else {
            panic!("not a Generate");
        };
        prop_assert_eq!((s, n, weights_version), (seed, 3, 2));
        let spec_back = prompts.remove(0).into_spec("p").unwrap();
        prop_assert_eq!(&spec_back.user, &user);
        prop_assert_eq!(&spec_back.system, &system);
        match (&spec.image, &spec_back.image) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                prop_assert_eq!((a.width, a.height), (b.width, b.height));
                prop_assert_eq!(&a.pixels, &b.pixels);
            }
            _ => prop_assert!(false, "image lost or invented"),
        }
    }
}

/// A generator host that can join `collectives`, and a head-side spec that broadcasts with
/// them (`required`: as `transport = "nccl"`).
fn broadcasting(
    rt: &tokio::runtime::Runtime,
    generator: &str,
    host_collectives: Option<Arc<dyn Collectives>>,
    head: &LoopbackCollectives,
    required: bool,
) -> (Arc<Mutex<Seen>>, ActorRef<RoleHostMsg>, RemoteModelSpec) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let engine = HostedRole::Engine(fake_builder(seen.clone(), Duration::ZERO));
    let host = spawn_role_host_with(rt, generator, "c", engine, host_collectives);
    let mut spec = spec(generator, rt, "c");
    spec.collective = Some(CollectiveChoice {
        collectives: Arc::new(head.clone()),
        device: tch::Device::Cpu,
        bucket_bytes: 64,
        per_bucket: Duration::from_millis(300),
        required,
    });
    (seen, host, spec)
}

fn weights(w: f32) -> Vec<(String, Tensor)> {
    vec![
        ("w".into(), Tensor::from_slice(&[w])),
        (
            "other".into(),
            Tensor::arange(100, (tch::Kind::Float, tch::Device::Cpu)),
        ),
    ]
}

#[test]
fn weights_are_broadcast_to_a_worker_that_can_join_and_never_streamed() {
    let rt = runtime();
    let collectives = LoopbackCollectives::default();
    let shared: Arc<dyn Collectives> = Arc::new(collectives.clone());
    let (seen, _host, spec) = broadcasting(&rt, "gen-n", Some(shared), &collectives, true);
    let stats = spec.stats.clone();
    let mut engine = remote_rollout_engine(spec)(None).unwrap();
    let config = GeneratorConfig::default();
    for w in [0.25f32, 0.75] {
        // Publishing attaches, negotiates (once) and broadcasts; the worker has applied the
        // version before `apply_weights` returns, so the batch needs no wait.
        engine.apply_weights(&weights(w)).unwrap();
        let groups = engine
            .generate(&[prompt("q", None)], 2, &config, 3)
            .unwrap();
        assert_eq!(groups[0].1[0].logprobs[0], w);
    }
    assert_eq!(seen.lock().unwrap().weights, vec![0.25, 0.75]);
    let s = &stats.snapshot()["gen-n"];
    assert_eq!(s.weights_via, "loopback on Cpu");
    // Two versions of a 4-byte and a 400-byte tensor, one bucket each: the broadcast's bytes
    // alone (a TCP stream would have added safetensors headers).
    assert_eq!((s.weight_versions, s.weight_bytes), (2, 808), "{s:?}");
    assert_eq!(s.attaches, 1);
}

#[test]
fn a_worker_that_cannot_join_gets_tcp_under_auto_and_stops_the_role_under_nccl() {
    let rt = runtime();
    let collectives = LoopbackCollectives::default();
    let (seen, _host, spec) = broadcasting(&rt, "gen-t", None, &collectives, false);
    let stats = spec.stats.clone();
    let mut engine = remote_rollout_engine(spec)(None).unwrap();
    engine.apply_weights(&weights(0.5)).unwrap();
    let config = GeneratorConfig::default();
    let groups = engine
        .generate(&[prompt("q", None)], 1, &config, 3)
        .unwrap();
    assert_eq!(groups[0].1[0].logprobs[0], 0.5);
    assert_eq!(seen.lock().unwrap().weights, vec![0.5]);
    let s = &stats.snapshot()["gen-t"];
    assert_eq!(s.weights_via, "tcp (worker w1 has no collective transport)");

    let (_, _host, spec) = broadcasting(&rt, "gen-u", None, &collectives, true);
    let mut engine = remote_rollout_engine(spec)(None).unwrap();
    let err = engine.apply_weights(&weights(0.5)).unwrap_err();
    assert!(matches!(err, ActorError::Refused(_)), "{err:?}");
    assert!(
        err.to_string().contains("weights.transport = \"nccl\""),
        "{err}"
    );
    assert!(err.to_string().contains("no collective transport"), "{err}");
}

#[test]
fn a_stalled_broadcast_fails_the_engine_at_its_deadline_and_a_restart_negotiates_anew() {
    let rt = runtime();
    let collectives = LoopbackCollectives::default();
    let shared: Arc<dyn Collectives> = Arc::new(collectives.clone());
    let (seen, _host, spec) = broadcasting(&rt, "gen-s", Some(shared), &collectives, true);
    let build = remote_rollout_engine(spec);
    let mut engine = build(None).unwrap();
    engine.apply_weights(&weights(0.25)).unwrap();
    collectives.stall.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let err = engine.apply_weights(&weights(0.75)).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, ActorError::Unreachable(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("broadcasting weights version 2"), "{text}");
    assert!(text.contains("did not arrive within 300ms"), "{text}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // The supervisor's restart builds a new engine: a new communicator, the version applied.
    // The worker was told to stop waiting, so its device thread is free at once, not after
    // its own 5 s deadline.
    collectives.stall.store(false, Ordering::Relaxed);
    let started = Instant::now();
    let mut restarted = build(None).unwrap();
    restarted.apply_weights(&weights(0.75)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let config = GeneratorConfig::default();
    let groups = restarted
        .generate(&[prompt("q", None)], 1, &config, 3)
        .unwrap();
    assert_eq!(groups[0].1[0].logprobs[0], 0.75);
    // A model that survives a failed broadcast (the evaluator's skips) attaches and
    // negotiates again at its next publication, and keeps broadcasting.
    engine.apply_weights(&weights(0.5)).unwrap();
    let groups = engine
        .generate(&[prompt("q", None)], 1, &config, 3)
        .unwrap();
    assert_eq!(groups[0].1[0].logprobs[0], 0.5);
    assert_eq!(seen.lock().unwrap().weights, vec![0.25, 0.75, 0.5]);
}
