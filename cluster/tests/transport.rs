//! The weight transport choice, on any machine: `tcp` is taken as asked; `auto` broadcasts
//! (NCCL) only with a CUDA learner and NCCL opening, and otherwise reports `tcp` and why;
//! `nccl` where it cannot work is refused naming the setting; NCCL opens or its absence is
//! explained; nothing panics. The choice reads the learner's device as configured, so the CUDA
//! cases run without a GPU. One test, because it sets `GRLHF_NCCL_LIBRARY` (the environment is
//! the process's).

use grlhf_cluster::transport::{Nccl, WeightTransport};
use tch::Device;

#[test]
fn the_transport_follows_the_learner_device_and_nccl_and_says_why() {
    let (choice, nccl) = WeightTransport::Auto.choose(Device::Cpu).unwrap();
    assert_eq!(choice.chosen, WeightTransport::Tcp);
    assert!(nccl.is_none());
    assert!(
        choice.reason.contains("not a CUDA device"),
        "{}",
        choice.reason
    );
    let (tcp, _) = WeightTransport::Tcp.choose(Device::Cuda(0)).unwrap();
    assert_eq!(
        (tcp.chosen, tcp.reason.as_str()),
        (WeightTransport::Tcp, "asked for")
    );
    let err = WeightTransport::Nccl.choose(Device::Cpu).unwrap_err();
    assert!(err.contains("weights.transport = \"nccl\""), "{err}");
    assert!(err.contains("not a CUDA device"), "{err}");

    // libtorch_cuda (linked when the wheel has CUDA, as here) loads NCCL into the process.
    let opens = Nccl::load();
    let (auto, nccl) = WeightTransport::Auto.choose(Device::Cuda(0)).unwrap();
    eprintln!("auto with a CUDA learner on this machine: {}", auto.reason);
    match &opens {
        Ok(opened) => {
            assert_eq!(opened.version.0, 2, "{opened:?}");
            assert_eq!(auto.chosen, WeightTransport::Nccl);
            assert!(nccl.is_some());
            assert!(auto.reason.contains("NCCL 2."), "{}", auto.reason);
            let (explicit, _) = WeightTransport::Nccl.choose(Device::Cuda(0)).unwrap();
            assert_eq!(explicit.chosen, WeightTransport::Nccl);
        }
        Err(e) => {
            assert!(e.contains("libnccl"), "{e}");
            assert_eq!(auto.chosen, WeightTransport::Tcp);
        }
    }
    let with_library = |path: &str, f: &dyn Fn()| {
        std::env::set_var(Nccl::ENV, path);
        f();
        std::env::remove_var(Nccl::ENV);
    };
    with_library("/nonexistent/libnccl.so.2", &|| {
        let err = Nccl::load().unwrap_err();
        assert!(err.contains("/nonexistent/libnccl.so.2"), "{err}");
        let (auto, nccl) = WeightTransport::Auto.choose(Device::Cuda(0)).unwrap();
        assert_eq!(auto.chosen, WeightTransport::Tcp);
        assert!(nccl.is_none());
        assert!(
            auto.reason.contains("NCCL is not available"),
            "{}",
            auto.reason
        );
        let err = WeightTransport::Nccl.choose(Device::Cuda(0)).unwrap_err();
        assert!(err.contains("NCCL is not available"), "{err}");
    });
    with_library("libc.so.6", &|| {
        let err = Nccl::load().unwrap_err();
        assert!(err.contains("is not NCCL"), "{err}");
    });
}
