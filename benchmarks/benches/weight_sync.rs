//! Weight synchronisation against a raw copy of the same bytes: the learner's snapshot (deep
//! copies of every parameter, by name; freshly allocated, or into the buffers a receiver handed
//! back) and the receiver's in-place apply, versus one contiguous `copy_` of a tensor as large as
//! the whole model. Parameters are shaped like a
//! small Qwen2 (one large embedding, per-layer projections, small norms).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use grlhf_actors::weight_sync::{apply, snapshot, snapshot_into};
use tch::nn::{Init, VarStore};
use tch::{Device, Kind, Tensor};

fn model_like(vs: &VarStore) {
    let root = vs.root();
    let _ = root.var("embed_tokens", &[8192, 512], Init::Const(0.5));
    for layer in 0..8 {
        let p = root.sub("layers").sub(layer.to_string());
        for (name, shape) in [
            ("q_proj", [512, 512]),
            ("k_proj", [128, 512]),
            ("v_proj", [128, 512]),
            ("o_proj", [512, 512]),
            ("gate_proj", [1408, 512]),
            ("up_proj", [1408, 512]),
            ("down_proj", [512, 1408]),
        ] {
            let _ = p.var(name, &shape, Init::Const(0.1));
        }
        let _ = p.var("input_layernorm", &[512], Init::Const(1.0));
        let _ = p.var("post_attention_layernorm", &[512], Init::Const(1.0));
    }
}

fn bench_sync(c: &mut Criterion) {
    tch::set_num_threads(1);
    let learner = VarStore::new(Device::Cpu);
    model_like(&learner);
    let receiver = VarStore::new(Device::Cpu);
    model_like(&receiver);
    let bytes: u64 = learner
        .variables()
        .values()
        .map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as u64)
        .sum();
    let numel = (bytes / 4) as i64;
    let source = Tensor::ones([numel], (Kind::Float, Device::Cpu));
    let mut target = Tensor::zeros([numel], (Kind::Float, Device::Cpu));

    let mut group = c.benchmark_group(format!("weight sync ({:.1} MB f32)", bytes as f64 / 1e6));
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(20);
    group.bench_function("raw: one contiguous copy_", |b| {
        b.iter(|| tch::no_grad(|| target.copy_(&source)))
    });
    group.bench_function("snapshot (learner side)", |b| {
        b.iter(|| snapshot(&learner, Device::Cpu))
    });
    let mut recycled = Some(snapshot(&learner, Device::Cpu).0);
    group.bench_function("snapshot into recycled buffers (learner side)", |b| {
        b.iter(|| {
            let (tensors, _) = snapshot_into(&learner, Device::Cpu, recycled.take());
            recycled = Some(tensors);
        })
    });
    let (tensors, _) = snapshot(&learner, Device::Cpu);
    group.bench_function("apply (receiver side)", |b| {
        b.iter(|| apply(&receiver, &tensors).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_sync);
criterion_main!(benches);
