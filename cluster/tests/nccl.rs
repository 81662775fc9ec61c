//! The NCCL weight broadcast's pieces: bucket layouts round-trip every dtype bit-exactly and
//! refuse what does not fit; the per-bucket deadline aborts a broadcast that never completes or
//! fails (with a scripted collective); NCCL opens and makes a communicator id without a GPU.
//! With a CUDA device (`cuda_` tests, skipped and saying so without one): a single-rank NCCL
//! broadcast from tch tensors' device pointers is bit-exact, and a communicator whose second
//! rank never joins is aborted at its deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use grlhf_cluster::bucket_broadcast::{
    broadcast_buckets, broadcast_each, BroadcastError, Collective, Progress,
};
use grlhf_cluster::nccl::{Nccl, NcclComm, UniqueId};
use grlhf_cluster::weight_buckets::{BucketLayout, ALIGN};
use tch::{Device, Kind, Tensor};

fn snapshot(device: Device) -> Vec<(String, Tensor)> {
    tch::manual_seed(7);
    vec![
        (
            "embed".into(),
            Tensor::randn([37, 11], (Kind::Float, device)),
        ),
        ("norm".into(), Tensor::randn([5], (Kind::BFloat16, device))),
        ("step".into(), Tensor::from(41i64).to_device(device)),
        (
            "mask".into(),
            Tensor::randn([9], (Kind::Float, device)).gt(0.0),
        ),
        ("empty".into(), Tensor::zeros([0, 3], (Kind::Half, device))),
        ("big".into(), Tensor::randn([4096], (Kind::Float, device))),
        ("ids".into(), Tensor::arange(300, (Kind::Int, device))),
    ]
}

fn assert_same(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(ta.kind(), tb.kind(), "{na}");
        assert_eq!(ta.size(), tb.size(), "{na}");
        assert!(
            ta.to_device(Device::Cpu).equal(&tb.to_device(Device::Cpu)),
            "{na} differs"
        );
    }
}

#[test]
fn bucket_layouts_round_trip_every_dtype_bit_exactly() {
    let tensors = snapshot(Device::Cpu);
    let layout = BucketLayout::plan(&tensors, 2048).unwrap();
    // 16 KiB `big` gets a bucket of its own; the rest share buckets of at most 2 KiB.
    assert!(layout.buckets.len() >= 3, "{layout:?}");
    for entry in &layout.entries {
        assert_eq!(entry.offset % ALIGN, 0, "{entry:?}");
        let big = entry.name == "big";
        assert!(big || layout.buckets[entry.bucket] <= 2048, "{layout:?}");
    }
    let buckets = layout.pack(&tensors, Device::Cpu).unwrap();
    assert_same(&tensors, &layout.unpack(&buckets).unwrap());
    // The layout travels as JSON and means the same on the other side.
    let text = serde_json::to_string(&layout).unwrap();
    let back: BucketLayout = serde_json::from_str(&text).unwrap();
    assert_eq!(back, layout);
    let mut received = back.empty_buckets(Device::Cpu);
    for (to, from) in received.iter_mut().zip(&buckets) {
        to.copy_(from);
    }
    assert_same(&tensors, &back.unpack(&received).unwrap());
    // One bucket holds everything when it may.
    let one = BucketLayout::plan(&tensors, u64::MAX).unwrap();
    assert_eq!(one.buckets.len(), 1);
    assert_same(
        &tensors,
        &one.unpack(&one.pack(&tensors, Device::Cpu).unwrap())
            .unwrap(),
    );
}

#[test]
fn bucket_layouts_refuse_what_does_not_fit_naming_it() {
    let tensors = snapshot(Device::Cpu);
    let layout = BucketLayout::plan(&tensors, 4096).unwrap();
    let complex = vec![(
        "z".to_string(),
        Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu)),
    )];
    let err = BucketLayout::plan(&complex, 4096).unwrap_err();
    assert!(err.contains("`z`"), "{err}");
    let mut renamed = snapshot(Device::Cpu);
    renamed[1].0 = "other".into();
    let err = layout.pack(&renamed, Device::Cpu).unwrap_err();
    assert!(err.contains("`other`"), "{err}");
    let err = layout.pack(&tensors[..2], Device::Cpu).unwrap_err();
    assert!(err.contains("2 tensors"), "{err}");
    let mut short = layout.empty_buckets(Device::Cpu);
    short.pop();
    assert!(layout.unpack(&short).unwrap_err().contains("buckets given"));
    let mut lying = layout.clone();
    lying.entries[0].bytes += 4;
    let buckets = layout.pack(&tensors, Device::Cpu).unwrap();
    assert!(lying.unpack(&buckets).is_err());
    // A layout from the wire that would make torch panic is refused instead.
    let mut odd = layout.clone();
    odd.entries[0].offset += 2;
    let err = odd.unpack(&buckets).unwrap_err();
    assert!(err.contains("not a multiple"), "{err}");
    let mut negative = layout.clone();
    negative.entries[0].shape = vec![-37, -11];
    assert!(negative
        .unpack(&buckets)
        .unwrap_err()
        .contains("do not hold"));
}

/// A collective whose broadcasts complete after `polls` polls, or never, or fail.
struct Scripted {
    polls: Option<u32>,
    fail_on: Option<usize>,
    started: usize,
    polled: u32,
    aborted: bool,
}

impl Scripted {
    fn new(polls: Option<u32>, fail_on: Option<usize>) -> Scripted {
        Scripted {
            polls,
            fail_on,
            started: 0,
            polled: 0,
            aborted: false,
        }
    }
}

impl Collective for Scripted {
    fn start_broadcast(&mut self, _bucket: &mut Tensor, root: i32) -> Result<(), String> {
        assert_eq!(root, 0);
        assert!(!self.aborted, "used after an abort");
        self.started += 1;
        self.polled = 0;
        Ok(())
    }

    fn progress(&mut self) -> Progress {
        self.polled += 1;
        if self.fail_on == Some(self.started - 1) {
            return Progress::Failed("remote rank vanished".into());
        }
        match self.polls {
            Some(n) if self.polled >= n => Progress::Done,
            _ => Progress::Pending,
        }
    }

    fn abort(&mut self) {
        self.aborted = true;
    }
}

#[test]
fn a_bucket_past_its_deadline_or_failing_aborts_the_communicator_and_says_which() {
    let layout = BucketLayout::plan(&snapshot(Device::Cpu), 2048).unwrap();
    let mut buckets = layout.pack(&snapshot(Device::Cpu), Device::Cpu).unwrap();
    let count = buckets.len();

    let mut fine = Scripted::new(Some(3), None);
    let stats = broadcast_buckets(&mut fine, &mut buckets, 0, Duration::from_secs(5)).unwrap();
    assert_eq!((stats.buckets, stats.bytes), (count, layout.total_bytes()));
    assert_eq!(fine.started, count);
    assert!(!fine.aborted);

    let mut stuck = Scripted::new(None, None);
    let started = Instant::now();
    let err =
        broadcast_buckets(&mut stuck, &mut buckets, 0, Duration::from_millis(200)).unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(stuck.aborted);
    assert_eq!(stuck.started, 1, "no bucket after a timeout");
    assert!(
        matches!(err, BroadcastError::Timeout { bucket: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("aborted"), "{err}");

    // A peer that already gave up ends the wait without the deadline.
    let mut deserted = Scripted::new(None, None);
    let started = Instant::now();
    let gone = || Some("the worker failed".to_string());
    let err = broadcast_each(
        &mut deserted,
        (2, 0, Duration::from_secs(60)),
        &gone,
        |_| Ok(Tensor::zeros([4], (Kind::Uint8, Device::Cpu))),
        |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(deserted.aborted);
    assert!(
        err.to_string()
            .contains("the peer gave up: the worker failed"),
        "{err}"
    );

    let mut failing = Scripted::new(Some(1), Some(1));
    let err = broadcast_buckets(&mut failing, &mut buckets, 0, Duration::from_secs(5)).unwrap_err();
    assert!(failing.aborted);
    assert_eq!(
        err,
        BroadcastError::Failed {
            bucket: 1,
            buckets: count,
            why: "remote rank vanished".into()
        }
    );
}

#[test]
fn nccl_opens_and_makes_a_communicator_id_without_a_gpu() {
    match Nccl::load() {
        Ok(nccl) => {
            let (a, b, c) = nccl.version;
            assert!(a >= 2, "{a}.{b}.{c}");
            let id = nccl.unique_id().unwrap();
            let other = nccl.unique_id().unwrap();
            assert_ne!(id, other, "ids are unique");
            assert_eq!(UniqueId::from_hex(&id.to_hex()).unwrap(), id);
        }
        Err(e) => eprintln!("SKIPPED: NCCL does not open here: {e}"),
    }
    assert!(UniqueId::from_hex("abc")
        .unwrap_err()
        .contains("256 hex digits"));
    let bad = "zz".repeat(128);
    assert!(UniqueId::from_hex(&bad).unwrap_err().contains("byte 0"));
}

fn cuda_and_nccl() -> Option<Arc<Nccl>> {
    if !tch::Cuda::is_available() {
        eprintln!("SKIPPED: no CUDA device");
        return None;
    }
    Some(Arc::new(Nccl::load().expect("NCCL opens where CUDA is")))
}

/// Polls a started broadcast until it completes; fails on an error or after 30 s.
fn wait_done(comm: &mut NcclComm) {
    let started = Instant::now();
    loop {
        match comm.progress() {
            Progress::Done => return,
            Progress::Failed(why) => panic!("the broadcast failed: {why}"),
            Progress::Pending => {
                assert!(started.elapsed() < Duration::from_secs(30), "no completion")
            }
        }
    }
}

#[test]
fn cuda_nccl_single_rank_broadcast_from_tensor_pointers_is_bit_exact() {
    let Some(nccl) = cuda_and_nccl() else { return };
    let device = Device::Cuda(0);
    let id = nccl.unique_id().unwrap();
    let no_peer = || None;
    let mut comm = NcclComm::init(nccl, (id, 1, 0), 0, Duration::from_secs(60), &no_peer).unwrap();
    let tensors = snapshot(device);
    let layout = BucketLayout::plan(&tensors, 4096).unwrap();
    // Out of place first: NCCL itself must write the bytes into a zeroed receive buffer (an
    // in-place broadcast on one rank would pass even if nothing ran).
    let sent = layout.pack(&tensors, device).unwrap();
    let mut received: Vec<Tensor> = sent.iter().map(Tensor::zeros_like).collect();
    for (send, recv) in sent.iter().zip(received.iter_mut()) {
        comm.start_broadcast_from(send, recv, 0).unwrap();
        wait_done(&mut comm);
    }
    assert_same(&tensors, &layout.unpack(&received).unwrap());
    // In place, every bucket at once.
    let mut buckets = layout.pack(&tensors, device).unwrap();
    let stats = broadcast_buckets(&mut comm, &mut buckets, 0, Duration::from_secs(30)).unwrap();
    assert_eq!(stats.bytes, layout.total_bytes());
    assert_same(&tensors, &layout.unpack(&buckets).unwrap());
    // Bucket by bucket through one reused send buffer and one reused receive buffer, with
    // slow torch work queued before each pack: NCCL's stream must wait for the pack (an event
    // on torch's stream), and the next pack must not overwrite the send buffer before NCCL has
    // read it, or the unpacked tensors differ.
    let send = Tensor::empty([layout.largest() as i64], (Kind::Uint8, device));
    let recv = Tensor::zeros([layout.largest() as i64], (Kind::Uint8, device));
    let slow = Tensor::randn([2048, 2048], (Kind::Float, device));
    let mut back = Vec::new();
    for i in 0..layout.buckets.len() {
        let size = layout.buckets[i] as i64;
        let _ = slow.matmul(&slow).matmul(&slow);
        let mut send_view = send.narrow(0, 0, size);
        layout.pack_bucket(i, &tensors, &mut send_view).unwrap();
        let mut recv_view = recv.narrow(0, 0, size);
        comm.start_broadcast_from(&send_view, &mut recv_view, 0)
            .unwrap();
        wait_done(&mut comm);
        back.extend(layout.unpack_bucket(i, &recv_view).unwrap());
    }
    assert_same(&tensors, &back);
    // The same through `broadcast_each`, in place, as a run's sender and receiver drive it.
    let buffer = Tensor::empty([layout.largest() as i64], (Kind::Uint8, device));
    let mut back = Vec::new();
    let streamed = broadcast_each(
        &mut comm,
        (layout.buckets.len(), 0, Duration::from_secs(30)),
        &no_peer,
        |i| {
            let mut view = buffer.narrow(0, 0, layout.buckets[i] as i64);
            layout.pack_bucket(i, &tensors, &mut view)?;
            Ok(view)
        },
        |i, view| {
            back.extend(layout.unpack_bucket(i, view)?);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(streamed.buckets, layout.buckets.len());
    assert_same(&tensors, &back);
    // A larger bf16 model-sized bucket, out of place, to time it.
    let big = Tensor::randn([64 << 20], (Kind::BFloat16, device)).view_dtype(Kind::Uint8);
    let mut into = Tensor::zeros_like(&big);
    tch::Cuda::synchronize(0);
    let started = Instant::now();
    comm.start_broadcast_from(&big, &mut into, 0).unwrap();
    wait_done(&mut comm);
    let seconds = started.elapsed().as_secs_f64();
    assert!(big.equal(&into));
    println!(
        "single-rank NCCL broadcast, out of place: {} bytes in {seconds:.4} s ({:.1} GB/s)",
        big.numel(),
        big.numel() as f64 / seconds / 1e9
    );
}

#[test]
fn cuda_nccl_a_rank_that_never_joins_aborts_at_the_deadline() {
    let Some(nccl) = cuda_and_nccl() else { return };
    let id = nccl.unique_id().unwrap();
    let started = Instant::now();
    let err = NcclComm::init(nccl.clone(), (id, 2, 0), 0, Duration::from_secs(3), &|| {
        None
    })
    .err()
    .unwrap();
    let waited = started.elapsed();
    assert!(err.contains("rank 0 of 2"), "{err}");
    assert!(err.contains("not ready within"), "{err}");
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(30),
        "{waited:?}"
    );
    println!("a missing rank: {err} after {waited:?}");
    // A peer that reports giving up ends the wait at once.
    let id = nccl.unique_id().unwrap();
    let started = Instant::now();
    let gone = || Some("the worker failed".to_string());
    let err = NcclComm::init(nccl, (id, 2, 0), 0, Duration::from_secs(60), &gone)
        .err()
        .unwrap();
    assert!(err.contains("the worker failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
