//! The replay buffer actor: insert a step's B scored groups, then sample the batch (the
//! learner's request), per batch of B = 16 real-size groups.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use grlhf_actors::ledger::Ledger;
use grlhf_actors::protocol::ScoredSink;
use grlhf_actors::replay_buffer::{BufferArgs, BufferMsg, ReplayBuffer, StalePolicy};
use ractor::Actor;

const B: usize = 16;

fn bench_buffer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ledger = Ledger::new();
    let (buffer, _handle) = runtime
        .block_on(Actor::spawn(
            None,
            ReplayBuffer,
            BufferArgs {
                batch_groups: B,
                max_staleness: 2,
                stale_policy: StalePolicy::Drop,
                ledger: ledger.clone(),
                restore: Vec::new(),
            },
        ))
        .unwrap();
    let mut group = c.benchmark_group("replay buffer");
    group.throughput(Throughput::Elements(B as u64));
    let mut uid = 0u64;
    group.bench_function("insert 16 groups + sample a batch", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<_> = (0..B)
                    .map(|_| {
                        uid += 1;
                        ledger.admit(uid, 0);
                        common::scored(uid)
                    })
                    .collect();
                let start = Instant::now();
                for g in batch {
                    buffer.send_scored(g).unwrap();
                }
                let served = runtime
                    .block_on(async {
                        ractor::call!(buffer, |reply| BufferMsg::Sample { version: 0, reply })
                    })
                    .unwrap();
                total += start.elapsed();
                assert_eq!(served.len(), B);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench_buffer);
criterion_main!(benches);
