//! The weight transport choice on a machine without a GPU: `auto` reports `tcp` and says why,
//! `nccl` is refused by name, NCCL opens or its absence is explained; nothing panics. One test,
//! because it sets `GRLHF_NCCL_LIBRARY` (the environment is the process's).

use grlhf_cluster::transport::{Nccl, WeightTransport};

#[test]
fn auto_reports_tcp_with_its_reason_nccl_is_refused_and_the_library_opens_or_says_why_not() {
    let choice = WeightTransport::Auto.choose(false).unwrap();
    assert_eq!(choice.chosen, WeightTransport::Tcp);
    assert!(
        choice.reason.contains("no CUDA device here"),
        "{}",
        choice.reason
    );
    let with_cuda = WeightTransport::Auto.choose(true).unwrap();
    assert_eq!(with_cuda.chosen, WeightTransport::Tcp);
    assert!(with_cuda.reason.contains("NCCL"), "{}", with_cuda.reason);
    eprintln!("auto on this machine: {}", with_cuda.reason);
    assert_eq!(
        WeightTransport::Tcp.choose(true).unwrap().reason,
        "asked for"
    );
    let err = WeightTransport::Nccl.choose(true).unwrap_err();
    assert!(err.contains("weights.transport = \"nccl\""), "{err}");

    // libtorch_cuda (linked when the wheel has CUDA, as here) loads NCCL into the process.
    match Nccl::load() {
        Ok(nccl) => assert_eq!(nccl.version.0, 2, "{nccl:?}"),
        Err(e) => assert!(e.contains("libnccl"), "{e}"),
    }
    let load_from = |path: &str| {
        std::env::set_var(Nccl::ENV, path);
        let result = Nccl::load();
        std::env::remove_var(Nccl::ENV);
        result
    };
    let err = load_from("/nonexistent/libnccl.so.2").unwrap_err();
    assert!(err.contains("/nonexistent/libnccl.so.2"), "{err}");
    let err = load_from("libc.so.6").unwrap_err();
    assert!(err.contains("is not NCCL"), "{err}");
    let reason = {
        std::env::set_var(Nccl::ENV, "/nonexistent/libnccl.so.2");
        let choice = WeightTransport::Auto.choose(true);
        std::env::remove_var(Nccl::ENV);
        choice.unwrap()
    };
    assert_eq!(reason.chosen, WeightTransport::Tcp);
    assert!(
        reason.reason.contains("NCCL is not available"),
        "{}",
        reason.reason
    );
}
