//! Message cost per rollout group at its real size: a ractor mailbox (what grlhf's actors use)
//! against flume and crossbeam channels, one sender thread and one receiver, the groups built
//! before the clock starts.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use grlhf_actors::protocol::RolloutGroup;
use ractor::{Actor, ActorProcessingErr, ActorRef};

const CHUNK: u64 = 2_000;

fn groups(count: u64) -> Vec<RolloutGroup> {
    (0..count).map(common::group).collect()
}

/// Counts groups; tells `done` after `expect` of them.
struct Counter;

struct CounterState {
    seen: u64,
    expect: u64,
    done: flume::Sender<()>,
}

impl Actor for Counter {
    type Msg = RolloutGroup;
    type State = CounterState;
    type Arguments = (u64, flume::Sender<()>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (expect, done): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(CounterState {
            seen: 0,
            expect,
            done,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        drop(message);
        state.seen += 1;
        if state.seen == state.expect {
            let _ = state.done.send(());
            state.seen = 0;
        }
        Ok(())
    }
}

/// Times `iters` groups sent through a fresh channel (from `make`: a send and a receive-and-drop
/// half) to a receiver thread, in chunks whose payload is built before the clock starts.
fn through_a_thread<S, R>(iters: u64, make: impl Fn() -> (S, R)) -> Duration
where
    S: FnMut(RolloutGroup),
    R: FnMut() + Send + 'static,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters.div_ceil(CHUNK) {
        let payload = groups(CHUNK);
        let (mut send, mut receive) = make();
        let receiver = std::thread::spawn(move || {
            for _ in 0..CHUNK {
                receive();
            }
        });
        let start = Instant::now();
        for g in payload {
            send(g);
        }
        receiver.join().unwrap();
        total += start.elapsed();
    }
    total.mul_f64(iters as f64 / (iters.div_ceil(CHUNK) * CHUNK) as f64)
}

fn bench_messaging(c: &mut Criterion) {
    let mut group = c.benchmark_group("message per rollout group (n=8 × 64 tokens)");
    group.throughput(Throughput::Elements(1));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (done_tx, done_rx) = flume::unbounded();
    let (actor, _handle) = runtime
        .block_on(Actor::spawn(None, Counter, (CHUNK, done_tx)))
        .unwrap();
    group.bench_function("ractor mailbox", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters.div_ceil(CHUNK) {
                let payload = groups(CHUNK);
                let start = Instant::now();
                for g in payload {
                    actor.cast(g).unwrap();
                }
                done_rx.recv().unwrap();
                total += start.elapsed();
            }
            total.mul_f64(iters as f64 / (iters.div_ceil(CHUNK) * CHUNK) as f64)
        })
    });
    actor.stop(None);

    group.bench_function("flume unbounded", |b| {
        b.iter_custom(|iters| {
            through_a_thread(iters, || {
                let (tx, rx) = flume::unbounded::<RolloutGroup>();
                (
                    move |g| tx.send(g).unwrap(),
                    move || drop(rx.recv().unwrap()),
                )
            })
        })
    });
    group.bench_function("crossbeam unbounded", |b| {
        b.iter_custom(|iters| {
            through_a_thread(iters, || {
                let (tx, rx) = crossbeam_channel::unbounded::<RolloutGroup>();
                (
                    move |g| tx.send(g).unwrap(),
                    move || drop(rx.recv().unwrap()),
                )
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench_messaging);
criterion_main!(benches);
