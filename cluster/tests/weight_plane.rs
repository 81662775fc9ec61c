//! The weight data plane on loopback: bit-exact transfer of a model over 16 MiB, latest-wins
//! delivery, torn or corrupt versions never applied, and handshakes that refuse a wrong cookie,
//! version or config within their deadline, and a stale incarnation.

use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use grlhf_cluster::frame::write_json;
use grlhf_cluster::{
    ClusterError, Cookie, EncodedWeights, Handshake, ReceiveLimits, RunIdentity, VerifiedPayload,
    WeightClient, WeightClientConfig, WeightHeader, WeightServer, WeightServerConfig,
};
use tch::{Kind, Tensor};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn handshake(cookie: &str) -> Handshake {
    Handshake::new(
        RunIdentity::new("test-run", RunIdentity::hash_config("steps = 3")),
        Some(Cookie::new(cookie)),
    )
}

/// A model-shaped set of tensors of about `mib` MiB in f32 and bf16 (so the bytes, not only the
/// values, must survive).
fn model(mib: i64, seed: i64) -> Vec<(String, Tensor)> {
    tch::manual_seed(seed);
    let rows = mib * (1 << 20) / 4 / 1024;
    vec![
        (
            "model.embed_tokens.weight".into(),
            Tensor::randn([rows / 2, 1024], (Kind::Float, tch::Device::Cpu)),
        ),
        (
            "model.layers.0.mlp.up_proj.weight".into(),
            Tensor::randn([rows, 1024], (Kind::Float, tch::Device::Cpu)).to_kind(Kind::BFloat16),
        ),
        (
            "model.norm.weight".into(),
            Tensor::ones([1024], (Kind::Float, tch::Device::Cpu)),
        ),
    ]
}

fn assert_bit_exact(sent: &[(String, Tensor)], received: &[(String, Tensor)]) {
    let mut sent: Vec<_> = sent.iter().collect();
    sent.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(sent.len(), received.len());
    for ((name_a, a), (name_b, b)) in sent.iter().zip(received) {
        assert_eq!(name_a, name_b);
        assert_eq!(a.kind(), b.kind(), "{name_a}");
        assert_eq!(a.size(), b.size(), "{name_a}");
        // Compare bits, not values: view both as raw bytes.
        let bytes = |t: &Tensor| {
            let n = t.numel() * t.kind().elt_size_in_bytes();
            let mut v = vec![0u8; n];
            t.contiguous().copy_data_u8(&mut v, t.numel());
            v
        };
        assert!(bytes(a) == bytes(b), "{name_a}: bytes differ");
    }
}

#[test]
fn a_model_over_16_mib_arrives_bit_exact() {
    let server =
        WeightServer::bind(WeightServerConfig::new(loopback(), handshake("s3cret"))).unwrap();
    let client = WeightClient::connect(WeightClientConfig::new(
        server.local_addr(),
        handshake("s3cret"),
        "generator-0",
    ))
    .unwrap();
    let weights = model(24, 0);
    let stats = server.publish(7, &weights).unwrap();
    assert!(
        stats.bytes > 16 << 20,
        "the model must exceed ractor_cluster's 16 MiB frame limit"
    );
    let received = client
        .recv_timeout(Duration::from_secs(30))
        .expect("a version")
        .unwrap();
    assert_eq!(received.version, 7);
    assert_eq!(received.bytes, stats.bytes);
    assert_bit_exact(&weights, &received.tensors);
    let subscribers = server.subscribers();
    assert_eq!(subscribers.len(), 1);
    assert_eq!(subscribers[0].name, "generator-0");
    assert_eq!(subscribers[0].last_version_sent, Some(7));
}

#[test]
fn a_late_subscriber_gets_the_current_version_and_a_slow_one_skips_to_the_newest() {
    let server = WeightServer::bind(WeightServerConfig::new(loopback(), handshake("c"))).unwrap();
    // (The RNG is global and tests run in parallel: compare with what was sent, never redraw.)
    let mut newest = vec![];
    for version in 1..=5 {
        newest = model(1, version as i64);
        server.publish(version, &newest).unwrap();
    }
    // Connects after five versions: it gets version 5 at once, not 1..5.
    let client = WeightClient::connect(WeightClientConfig::new(
        server.local_addr(),
        handshake("c"),
        "late",
    ))
    .unwrap();
    let first = client
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert_eq!(first.version, 5);
    assert_bit_exact(&newest, &first.tensors);
    // Versions published faster than they are read arrive in order, ending at the newest.
    for version in 6..=20 {
        server.publish(version, &model(1, version as i64)).unwrap();
    }
    let mut seen = vec![];
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.last() != Some(&20) && Instant::now() < deadline {
        if let Some(update) = client.recv_timeout(Duration::from_millis(500)) {
            seen.push(update.unwrap().version);
        }
    }
    assert_eq!(seen.last(), Some(&20), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seen:?}"
    );
}

/// A header announcing `payload`, followed by only part of it.
fn torn(encoded: &EncodedWeights, keep: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    write_json(&mut wire, &encoded.header).unwrap();
    wire.extend_from_slice(&encoded.payload[..keep]);
    wire
}

#[test]
fn a_truncated_stream_is_rejected_and_nothing_is_applied() {
    let encoded = EncodedWeights::encode(3, &model(9, 1), 1 << 20).unwrap();
    let keep = encoded.payload.len() - 12345;
    let result = VerifiedPayload::receive(
        &mut Cursor::new(torn(&encoded, keep)),
        "test",
        &ReceiveLimits::default(),
    );
    match result {
        Err(ClusterError::Truncated {
            version,
            expected,
            received,
            ..
        }) => {
            assert_eq!(version, 3);
            assert_eq!(expected, encoded.payload.len() as u64);
            assert_eq!(received, keep as u64);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn a_corrupt_byte_is_caught_by_its_chunk_digest() {
    let encoded = EncodedWeights::encode(4, &model(9, 2), 1 << 20).unwrap();
    let mut wire = torn(&encoded, encoded.payload.len());
    let flip = wire.len() - encoded.payload.len() + 5 * (1 << 20) + 17;
    wire[flip] ^= 0x01;
    match VerifiedPayload::receive(&mut Cursor::new(wire), "test", &ReceiveLimits::default()) {
        Err(ClusterError::Checksum { version, chunk, .. }) => {
            assert_eq!(version, 4);
            assert_eq!(chunk, 5);
        }
        other => panic!("expected Checksum, got {other:?}"),
    }
}

#[test]
fn a_payload_over_the_limit_is_refused_before_it_is_read() {
    let header = WeightHeader {
        version: 1,
        total_bytes: 1 << 40,
        chunk_bytes: 1 << 20,
        chunk_sha256: vec![],
        digest: String::new(),
    };
    let mut wire = Vec::new();
    write_json(&mut wire, &header).unwrap();
    let limits = ReceiveLimits {
        max_total_bytes: 1 << 30,
        ..ReceiveLimits::default()
    };
    match VerifiedPayload::receive(&mut Cursor::new(wire), "test", &limits) {
        Err(ClusterError::TooLarge { bytes, limit, .. }) => {
            assert_eq!(bytes, 1 << 40);
            assert_eq!(limit, 1 << 30);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_header_whose_digest_does_not_bind_its_chunks_is_refused() {
    let encoded = EncodedWeights::encode(5, &model(1, 3), 1 << 18).unwrap();
    let mut header = encoded.header.clone();
    header.chunk_sha256.swap(0, 1);
    let mut wire = Vec::new();
    write_json(&mut wire, &header).unwrap();
    wire.extend_from_slice(&encoded.payload);
    let result =
        VerifiedPayload::receive(&mut Cursor::new(wire), "test", &ReceiveLimits::default());
    assert!(
        matches!(result, Err(ClusterError::Malformed { .. })),
        "{result:?}"
    );
}

#[test]
fn a_torn_version_over_tcp_reaches_the_subscriber_as_an_error_not_as_weights() {
    // A fake server: completes the handshake, then sends half a version and closes.
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        handshake("k").accept(&mut stream).unwrap();
        let encoded = EncodedWeights::encode(9, &model(2, 4), 1 << 18).unwrap();
        stream
            .write_all(&torn(&encoded, encoded.payload.len() / 2))
            .unwrap();
    });
    let client = WeightClient::connect(WeightClientConfig::new(addr, handshake("k"), "g")).unwrap();
    let result = client
        .recv_timeout(Duration::from_secs(10))
        .expect("an outcome");
    assert!(
        matches!(result, Err(ClusterError::Truncated { version: 9, .. })),
        "{result:?}"
    );
    assert!(
        client.recv_timeout(Duration::from_millis(200)).is_none(),
        "nothing after the error"
    );
    server.join().unwrap();
}

fn refused_within(deadline: Duration, client: Handshake) -> ClusterError {
    let server =
        WeightServer::bind(WeightServerConfig::new(loopback(), handshake("right"))).unwrap();
    let started = Instant::now();
    let error =
        match WeightClient::connect(WeightClientConfig::new(server.local_addr(), client, "w")) {
            Err(e) => e,
            Ok(_) => panic!("the handshake should have been refused"),
        };
    assert!(
        started.elapsed() < deadline,
        "refused after {:?}",
        started.elapsed()
    );
    assert!(
        server.subscribers().is_empty(),
        "a refused peer never becomes a subscriber"
    );
    error
}

#[test]
fn a_wrong_cookie_is_refused_within_the_deadline() {
    let error = refused_within(Duration::from_secs(3), handshake("wrong"));
    // The server proves itself first, so the client sees the server does not hold its cookie.
    assert!(matches!(error, ClusterError::WrongCookie { .. }), "{error}");
}

#[test]
fn a_missing_cookie_is_refused_by_the_server() {
    let mut client = handshake("x");
    client.cookie = None;
    let error = refused_within(Duration::from_secs(3), client);
    assert!(error.to_string().contains("cookie"), "{error}");
}

#[test]
fn a_different_config_or_version_is_refused_naming_the_field() {
    let mut other_config = handshake("right");
    other_config.identity.config_hash = RunIdentity::hash_config("steps = 4");
    let error = refused_within(Duration::from_secs(3), other_config);
    assert!(
        error.to_string().contains("`config_hash` differs"),
        "{error}"
    );

    let mut other_version = handshake("right");
    other_version.identity.grlhf_version = "0.0.0-old".into();
    let error = refused_within(Duration::from_secs(3), other_version);
    assert!(
        error.to_string().contains("`grlhf_version` differs"),
        "{error}"
    );
    assert!(error.to_string().contains("0.0.0-old"), "{error}");
}

#[test]
fn a_silent_peer_is_dropped_at_the_handshake_deadline_and_others_still_connect() {
    let mut settings = handshake("c");
    settings.timeout = Duration::from_millis(300);
    let server = WeightServer::bind(WeightServerConfig::new(loopback(), settings)).unwrap();
    // Connects and says nothing.
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    let client = WeightClient::connect(WeightClientConfig::new(
        server.local_addr(),
        handshake("c"),
        "ok",
    ));
    assert!(
        client.is_ok(),
        "a silent peer must not hold up the accept loop"
    );
    assert!(server.wait_for_subscribers(1, Duration::from_secs(5)));
    // The server hangs up on the silent peer once its deadline passes.
    silent
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    assert_eq!(
        silent.read(&mut buf).unwrap(),
        0,
        "expected the server to close"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        server.subscribers().len(),
        1,
        "the silent peer never became a subscriber"
    );
}

#[test]
fn listening_beyond_loopback_without_a_cookie_is_refused() {
    let mut open = handshake("x");
    open.cookie = None;
    let result = WeightServer::bind(WeightServerConfig::new("0.0.0.0:0".parse().unwrap(), open));
    assert!(matches!(result, Err(ClusterError::CookieRequired { .. })));
}

#[test]
fn a_stale_incarnation_is_refused_and_a_peer_without_the_cookie_cannot_claim_a_newer_one() {
    let server =
        WeightServer::bind(WeightServerConfig::new(loopback(), handshake("right"))).unwrap();
    let connect = |cookie: &str, incarnation: u64| {
        let mut config =
            WeightClientConfig::new(server.local_addr(), handshake(cookie), "node2/g0");
        config.incarnation = incarnation;
        WeightClient::connect(config)
    };
    let first = connect("right", 2).expect("incarnation 2 is welcome");
    let stale = match connect("right", 1) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("incarnation 1 after 2 must be refused"),
    };
    assert!(
        stale.contains("stale incarnation 1") && stale.contains("incarnation 2"),
        "{stale}"
    );
    // A peer that cannot prove the cookie is refused before its incarnation counts: the name
    // is not locked at 9, and the real process can still come back as 3.
    assert!(connect("wrong", 9).is_err());
    let again = connect("right", 2).expect("the same incarnation reconnects");
    let newer = connect("right", 3).expect("a restarted process comes back newer");
    // The server records a subscriber on its own thread, just after the welcome.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.subscribers().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let incarnations: Vec<u64> = server.subscribers().iter().map(|s| s.incarnation).collect();
    assert_eq!(
        incarnations,
        vec![2, 2, 3],
        "only welcomed peers become subscribers"
    );
    drop((first, again, newer));
}
