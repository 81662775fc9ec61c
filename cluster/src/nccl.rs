//! NCCL without a CUDA toolkit: the library the torch wheel ships (`libnccl.so.2`), opened at
//! run time with the dozen entry points a weight broadcast needs, and the three CUDA runtime
//! calls it needs besides (a stream of its own, a non-blocking completion query), from the
//! wheel's `libcudart.so.13` — the one libtorch_cuda has already loaded.
//!
//! [`NcclComm`] is a communicator created in NCCL's non-blocking mode, so joining, every
//! broadcast and shutting down can be given a deadline and aborted when a peer never answers
//! (`ncclCommGetAsyncError`, `ncclCommAbort`). It implements
//! [`crate::bucket_broadcast::Collective`] over tensors' device pointers.
//!
//! Struct layouts and constants follow the wheel's `nccl.h` (2.28): `ncclConfig_t` is passed
//! with its size and version, which NCCL reads to know which fields exist.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libloading::Library;
use tch::Tensor;

use crate::bucket_broadcast::{Collective, Collectives, Progress};

/// `ncclResult_t` values used here.
const NCCL_SUCCESS: c_int = 0;
const NCCL_IN_PROGRESS: c_int = 7;
/// `ncclDataType_t::ncclUint8`.
const NCCL_UINT8: c_int = 1;
/// `cudaError_t` values used here.
const CUDA_SUCCESS: c_int = 0;
const CUDA_ERROR_NOT_READY: c_int = 600;
/// `cudaStreamNonBlocking`: the stream does not wait for the legacy default stream.
const CUDA_STREAM_NON_BLOCKING: c_uint = 1;
/// `cudaEventDisableTiming`: an event used only for ordering.
const CUDA_EVENT_DISABLE_TIMING: c_uint = 2;
/// torch's current stream outside the CUDA-graph shim: the legacy default stream.
const TORCH_STREAM: Stream = std::ptr::null_mut();

/// `ncclUniqueId`: what every rank of a communicator must be given (rank 0 makes it).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UniqueId {
    pub internal: [u8; 128],
}

impl std::fmt::Debug for UniqueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UniqueId({}…)", &self.to_hex()[..16])
    }
}

impl UniqueId {
    /// Lower-case hex, for a control message.
    pub fn to_hex(&self) -> String {
        self.internal.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(text: &str) -> Result<UniqueId, String> {
        if text.len() != 256 || !text.is_ascii() {
            return Err(format!(
                "an NCCL unique id is 256 hex digits, not {} characters",
                text.len()
            ));
        }
        let mut internal = [0u8; 128];
        for (i, byte) in internal.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|e| format!("an NCCL unique id: byte {i}: {e}"))?;
        }
        Ok(UniqueId { internal })
    }
}

/// `ncclConfig_t` as of NCCL 2.28 (`ncclConfig_v22800`).
#[repr(C)]
struct NcclConfig {
    size: usize,
    magic: c_uint,
    version: c_uint,
    blocking: c_int,
    cga_cluster_size: c_int,
    min_ctas: c_int,
    max_ctas: c_int,
    net_name: *const c_char,
    split_share: c_int,
    traffic_class: c_int,
    comm_name: *const c_char,
    collnet_enable: c_int,
    cta_policy: c_int,
    shrink_share: c_int,
    nvls_ctas: c_int,
    n_channels_per_net_peer: c_int,
    nvlink_centric_sched: c_int,
}

impl NcclConfig {
    /// `NCCL_CONFIG_INITIALIZER` with `blocking = 0`.
    fn non_blocking() -> NcclConfig {
        const UNDEF: c_int = c_int::MIN;
        NcclConfig {
            size: std::mem::size_of::<NcclConfig>(),
            magic: 0xcafe_beef,
            version: 22800,
            blocking: 0,
            cga_cluster_size: UNDEF,
            min_ctas: UNDEF,
            max_ctas: UNDEF,
            net_name: std::ptr::null(),
            split_share: UNDEF,
            traffic_class: UNDEF,
            comm_name: std::ptr::null(),
            collnet_enable: UNDEF,
            cta_policy: UNDEF,
            shrink_share: UNDEF,
            nvls_ctas: UNDEF,
            n_channels_per_net_peer: UNDEF,
            nvlink_centric_sched: UNDEF,
        }
    }
}

type Comm = *mut c_void;
type Stream = *mut c_void;
type Event = *mut c_void;

/// NCCL's entry points, copied out of the library (which [`Nccl`] keeps open).
#[derive(Clone, Copy)]
struct NcclFns {
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> c_int,
    init_rank_config:
        unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int, *mut NcclConfig) -> c_int,
    broadcast: unsafe extern "C" fn(
        *const c_void,
        *mut c_void,
        usize,
        c_int,
        c_int,
        Comm,
        Stream,
    ) -> c_int,
    get_async_error: unsafe extern "C" fn(Comm, *mut c_int) -> c_int,
    abort: unsafe extern "C" fn(Comm) -> c_int,
    finalize: unsafe extern "C" fn(Comm) -> c_int,
    destroy: unsafe extern "C" fn(Comm) -> c_int,
    error_string: unsafe extern "C" fn(c_int) -> *const c_char,
    last_error: unsafe extern "C" fn(Comm) -> *const c_char,
}

/// The NCCL library, opened.
pub struct Nccl {
    _library: Library,
    fns: NcclFns,
    /// What was opened (a file name or path).
    pub opened: String,
    /// (major, minor, patch).
    pub version: (i32, i32, i32),
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl")
            .field("opened", &self.opened)
            .field("version", &self.version)
            .finish()
    }
}

/// Copies symbol `name` out of `library` as a `T` (a function pointer type).
///
/// # Safety
/// `T` must be the symbol's true C signature.
unsafe fn symbol<T: Copy>(library: &Library, opened: &str, name: &str) -> Result<T, String> {
    let bytes = format!("{name}\0");
    let found: libloading::Symbol<T> = library
        .get(bytes.as_bytes())
        .map_err(|e| format!("{opened} has no {name}: {e}"))?;
    Ok(*found)
}

impl Nccl {
    /// The environment variable naming the library to open instead of `libnccl.so.2`.
    pub const ENV: &'static str = "GRLHF_NCCL_LIBRARY";

    /// Opens NCCL, binds its entry points and reads its version; `Err` says what was tried and
    /// why it failed.
    pub fn load() -> Result<Nccl, String> {
        let candidates = match std::env::var(Self::ENV) {
            Ok(path) if !path.is_empty() => vec![path],
            _ => vec!["libnccl.so.2".to_string(), "libnccl.so".to_string()],
        };
        let mut failures = Vec::new();
        for name in candidates {
            // SAFETY: opening a shared library runs its initialisers; NCCL's only set up its
            // own state.
            match unsafe { Library::new(&name) } {
                Ok(library) => return Self::bind(library, name),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(format!("no NCCL library ({})", failures.join("; ")))
    }

    fn bind(library: Library, opened: String) -> Result<Nccl, String> {
        // SAFETY: each signature is the one nccl.h (2.28) declares for that name.
        let (get_version, fns) = unsafe {
            let get_version: unsafe extern "C" fn(*mut c_int) -> c_int =
                symbol(&library, &opened, "ncclGetVersion")
                    .map_err(|e| format!("{opened} is not NCCL ({e})"))?;
            let fns = NcclFns {
                get_unique_id: symbol(&library, &opened, "ncclGetUniqueId")?,
                init_rank_config: symbol(&library, &opened, "ncclCommInitRankConfig")?,
                broadcast: symbol(&library, &opened, "ncclBroadcast")?,
                get_async_error: symbol(&library, &opened, "ncclCommGetAsyncError")?,
                abort: symbol(&library, &opened, "ncclCommAbort")?,
                finalize: symbol(&library, &opened, "ncclCommFinalize")?,
                destroy: symbol(&library, &opened, "ncclCommDestroy")?,
                error_string: symbol(&library, &opened, "ncclGetErrorString")?,
                last_error: symbol(&library, &opened, "ncclGetLastError")?,
            };
            (get_version, fns)
        };
        let mut code: c_int = 0;
        // SAFETY: the out-pointer refers to a live local.
        let result = unsafe { get_version(&mut code) };
        if result != NCCL_SUCCESS {
            return Err(format!(
                "{opened}: ncclGetVersion failed with NCCL error {result}"
            ));
        }
        // Since NCCL 2.9 the code is major·10000 + minor·100 + patch.
        let version = (code / 10000, code / 100 % 100, code % 100);
        Ok(Nccl {
            _library: library,
            fns,
            opened,
            version,
        })
    }

    /// A new communicator's id (rank 0 makes it and gives it to every other rank). Needs no GPU.
    pub fn unique_id(&self) -> Result<UniqueId, String> {
        let mut id = UniqueId { internal: [0; 128] };
        // SAFETY: NCCL writes 128 bytes into the live `id`.
        let result = unsafe { (self.fns.get_unique_id)(&mut id) };
        self.check(result, "ncclGetUniqueId")?;
        Ok(id)
    }

    fn describe(&self, result: c_int) -> String {
        // SAFETY: NCCL returns a static string for every result code.
        let text = unsafe { (self.fns.error_string)(result) };
        if text.is_null() {
            return format!("NCCL error {result}");
        }
        // SAFETY: non-null, NUL-terminated, static.
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        format!("NCCL error {result} ({text})")
    }

    fn check(&self, result: c_int, call: &str) -> Result<(), String> {
        match result {
            NCCL_SUCCESS => Ok(()),
            other => Err(format!("{call}: {}", self.describe(other))),
        }
    }
}

/// The CUDA runtime calls a broadcast needs besides NCCL.
struct CudaRuntime {
    _library: Library,
    /// The driver, for `cuCtxGetCurrent` (whether this thread has a CUDA context at all).
    _driver: Option<Library>,
    ctx_get_current: Option<unsafe extern "C" fn(*mut *mut c_void) -> c_int>,
    get_device: unsafe extern "C" fn(*mut c_int) -> c_int,
    set_device: unsafe extern "C" fn(c_int) -> c_int,
    stream_create: unsafe extern "C" fn(*mut Stream, c_uint) -> c_int,
    stream_query: unsafe extern "C" fn(Stream) -> c_int,
    stream_destroy: unsafe extern "C" fn(Stream) -> c_int,
    stream_wait_event: unsafe extern "C" fn(Stream, Event, c_uint) -> c_int,
    event_create: unsafe extern "C" fn(*mut Event, c_uint) -> c_int,
    event_record: unsafe extern "C" fn(Event, Stream) -> c_int,
    event_destroy: unsafe extern "C" fn(Event) -> c_int,
}

impl CudaRuntime {
    /// Runs `f` with `device` current on this thread, then makes the previous one current
    /// again (the caller's torch work expects its own device).
    fn on_device<T>(
        &self,
        device: i32,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        // A thread that never used CUDA has no context; "restoring" its device 0 would create
        // GPU 0's context (hundreds of MB) for nothing.
        let had_context = self.ctx_get_current.is_none_or(|get| {
            let mut context: *mut c_void = std::ptr::null_mut();
            // SAFETY: a valid out-pointer.
            unsafe { get(&mut context) == CUDA_SUCCESS && !context.is_null() }
        });
        let mut previous: c_int = 0;
        // SAFETY: a valid out-pointer; plain calls.
        unsafe { check_cuda((self.get_device)(&mut previous), "cudaGetDevice")? };
        if previous == device {
            return f();
        }
        // SAFETY: a plain call.
        unsafe { check_cuda((self.set_device)(device), "cudaSetDevice")? };
        let result = f();
        if had_context {
            // SAFETY: restoring the device read above.
            unsafe { (self.set_device)(previous) };
        }
        result
    }
}

fn check_cuda(code: c_int, call: &str) -> Result<(), String> {
    match code {
        CUDA_SUCCESS => Ok(()),
        error => Err(format!("{call} failed with CUDA error {error}")),
    }
}

impl CudaRuntime {
    fn load() -> Result<CudaRuntime, String> {
        let mut failures = Vec::new();
        for name in ["libcudart.so.13", "libcudart.so.12", "libcudart.so"] {
            // SAFETY: as for NCCL: the runtime's initialisers set up its own state (and the
            // copy libtorch_cuda loaded is the one returned).
            let library = match unsafe { Library::new(name) } {
                Ok(library) => library,
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            };
            // SAFETY: as above; the driver is loaded already wherever the runtime works.
            let driver = unsafe { Library::new("libcuda.so.1") }.ok();
            // SAFETY: `cuCtxGetCurrent(CUcontext*)` as cuda.h declares it.
            let ctx_get_current = driver
                .as_ref()
                .and_then(|d| unsafe { symbol(d, "libcuda.so.1", "cuCtxGetCurrent") }.ok());
            // SAFETY: the signatures cuda_runtime_api.h declares.
            return unsafe {
                Ok(CudaRuntime {
                    _driver: driver,
                    ctx_get_current,
                    get_device: symbol(&library, name, "cudaGetDevice")?,
                    set_device: symbol(&library, name, "cudaSetDevice")?,
                    stream_create: symbol(&library, name, "cudaStreamCreateWithFlags")?,
                    stream_query: symbol(&library, name, "cudaStreamQuery")?,
                    stream_destroy: symbol(&library, name, "cudaStreamDestroy")?,
                    stream_wait_event: symbol(&library, name, "cudaStreamWaitEvent")?,
                    event_create: symbol(&library, name, "cudaEventCreateWithFlags")?,
                    event_record: symbol(&library, name, "cudaEventRecord")?,
                    event_destroy: symbol(&library, name, "cudaEventDestroy")?,
                    _library: library,
                })
            };
        }
        Err(format!("no CUDA runtime ({})", failures.join("; ")))
    }
}

/// A communicator of `nranks` ranks, one per GPU, in NCCL's non-blocking mode, with a CUDA
/// stream of its own. Dropping it finalises it (within a deadline, else aborts).
pub struct NcclComm {
    nccl: Arc<Nccl>,
    cuda: CudaRuntime,
    comm: Comm,
    stream: Stream,
    /// Marks torch's work before a broadcast, for NCCL's stream to wait on.
    torch_done: Event,
    pub rank: i32,
    pub nranks: i32,
    pub device: i32,
    aborted: bool,
}

// SAFETY: NCCL communicators and CUDA streams may be used from any thread, one at a time;
// `NcclComm` is not `Sync`, so calls never overlap.
unsafe impl Send for NcclComm {}

impl NcclComm {
    /// Joins communicator `id` as `rank` of `nranks` on CUDA device `device`, waiting at most
    /// `deadline` for every rank to join (a rank that never comes costs that, then an abort),
    /// or until `peer_failed` reports why the other side gave up.
    pub fn init(
        nccl: Arc<Nccl>,
        (id, nranks, rank): (UniqueId, i32, i32),
        device: i32,
        deadline: Duration,
        peer_failed: &dyn Fn() -> Option<String>,
    ) -> Result<NcclComm, String> {
        let cuda = CudaRuntime::load()?;
        let (stream, torch_done) = cuda.on_device(device, || {
            let mut stream: Stream = std::ptr::null_mut();
            let mut event: Event = std::ptr::null_mut();
            // SAFETY: valid out-pointers.
            unsafe {
                check_cuda(
                    (cuda.stream_create)(&mut stream, CUDA_STREAM_NON_BLOCKING),
                    "cudaStreamCreateWithFlags",
                )?;
                let made = check_cuda(
                    (cuda.event_create)(&mut event, CUDA_EVENT_DISABLE_TIMING),
                    "cudaEventCreateWithFlags",
                );
                if let Err(e) = made {
                    (cuda.stream_destroy)(stream);
                    return Err(e);
                }
            }
            Ok((stream, event))
        })?;
        let mut joined = NcclComm {
            nccl,
            cuda,
            comm: std::ptr::null_mut(),
            stream,
            torch_done,
            rank,
            nranks,
            device,
            aborted: false,
        };
        let mut config = NcclConfig::non_blocking();
        let mut comm: Comm = std::ptr::null_mut();
        let result = joined.cuda.on_device(device, || {
            // SAFETY: `comm` and `config` are live; `id` is passed by value as nccl.h declares.
            Ok(unsafe {
                (joined.nccl.fns.init_rank_config)(&mut comm, nranks, id, rank, &mut config)
            })
        })?;
        joined.comm = comm;
        if result != NCCL_SUCCESS && result != NCCL_IN_PROGRESS {
            let why = joined.nccl.describe(result);
            joined.abort();
            return Err(format!(
                "ncclCommInitRankConfig (rank {rank} of {nranks}): {why}"
            ));
        }
        joined.wait_ready(deadline, peer_failed).map_err(|why| {
            format!("joining the NCCL communicator as rank {rank} of {nranks}: {why}")
        })?;
        Ok(joined)
    }

    /// The communicator's state: `Ok(true)` ready, `Ok(false)` still working, `Err` failed.
    fn state(&self) -> Result<bool, String> {
        if self.comm.is_null() || self.aborted {
            return Err("the communicator was aborted".into());
        }
        let mut state: c_int = NCCL_SUCCESS;
        // SAFETY: a live communicator and out-pointer.
        let result = unsafe { (self.nccl.fns.get_async_error)(self.comm, &mut state) };
        self.nccl.check(result, "ncclCommGetAsyncError")?;
        match state {
            NCCL_SUCCESS => Ok(true),
            NCCL_IN_PROGRESS => Ok(false),
            failed => Err(format!(
                "{}: {}",
                self.nccl.describe(failed),
                self.last_error()
            )),
        }
    }

    fn last_error(&self) -> String {
        // SAFETY: NCCL returns a NUL-terminated string it owns (or null).
        let text = unsafe { (self.nccl.fns.last_error)(self.comm) };
        if text.is_null() {
            return String::new();
        }
        // SAFETY: non-null and NUL-terminated.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }

    /// Polls until the communicator is ready; aborts it on failure, at the deadline, or when
    /// `peer_failed` says the other side gave up.
    fn wait_ready(
        &mut self,
        deadline: Duration,
        peer_failed: &dyn Fn() -> Option<String>,
    ) -> Result<(), String> {
        let until = Instant::now() + deadline;
        loop {
            match self.state() {
                Ok(true) => return Ok(()),
                Ok(false) if Instant::now() < until => {
                    if let Some(why) = peer_failed() {
                        self.abort();
                        return Err(format!("the peer gave up ({why}); aborted"));
                    }
                    std::thread::sleep(Duration::from_micros(200))
                }
                Ok(false) => {
                    self.abort();
                    return Err(format!(
                        "not ready within {deadline:?} (a rank never joined?); aborted"
                    ));
                }
                Err(why) => {
                    self.abort();
                    return Err(why);
                }
            }
        }
    }
}

impl NcclComm {
    /// Starts broadcasting `send`'s bytes from rank `root` into every rank's `recv` (the same
    /// tensor for in place; only the root's `send` is read). Ordered after the torch work
    /// already queued on the device (an event, not a device-wide wait), so a bucket just packed
    /// is read whole and a buffer just unpacked is not overwritten early.
    pub fn start_broadcast_from(
        &mut self,
        send: &Tensor,
        recv: &mut Tensor,
        root: i32,
    ) -> Result<(), String> {
        let here = tch::Device::Cuda(self.device as usize);
        for (what, t) in [("send", send), ("receive", &*recv)] {
            if t.device() != here {
                return Err(format!(
                    "a {what} buffer on {:?} for a communicator on cuda:{}",
                    t.device(),
                    self.device
                ));
            }
            if !t.is_contiguous() {
                return Err(format!("a {what} buffer must be contiguous"));
            }
        }
        let bytes = recv.numel() * recv.kind().elt_size_in_bytes();
        if send.numel() * send.kind().elt_size_in_bytes() != bytes {
            return Err("send and receive buffers of different sizes".into());
        }
        let (from, into) = (send.data_ptr(), recv.data_ptr());
        let (cuda, nccl) = (&self.cuda, &self.nccl);
        let (comm, stream, event) = (self.comm, self.stream, self.torch_done);
        let result = cuda.on_device(self.device, || {
            // SAFETY: live stream and event; `from` and `into` address `bytes` bytes of device
            // memory that stay alive (the caller holds both tensors) until the broadcast
            // completes, which `progress` reports.
            unsafe {
                check_cuda((cuda.event_record)(event, TORCH_STREAM), "cudaEventRecord")?;
                check_cuda(
                    (cuda.stream_wait_event)(stream, event, 0),
                    "cudaStreamWaitEvent",
                )?;
                Ok((nccl.fns.broadcast)(
                    from, into, bytes, NCCL_UINT8, root, comm, stream,
                ))
            }
        })?;
        match result {
            NCCL_SUCCESS | NCCL_IN_PROGRESS => Ok(()),
            other => Err(format!("ncclBroadcast: {}", self.nccl.describe(other))),
        }
    }
}

impl Collective for NcclComm {
    fn start_broadcast(&mut self, bucket: &mut Tensor, root: i32) -> Result<(), String> {
        let send = bucket.shallow_clone();
        self.start_broadcast_from(&send, bucket, root)
    }

    fn progress(&mut self) -> Progress {
        match self.state() {
            Err(why) => return Progress::Failed(why),
            // Still being queued (non-blocking mode).
            Ok(false) => return Progress::Pending,
            Ok(true) => {}
        }
        // SAFETY: a live stream.
        match unsafe { (self.cuda.stream_query)(self.stream) } {
            CUDA_SUCCESS => Progress::Done,
            CUDA_ERROR_NOT_READY => Progress::Pending,
            error => Progress::Failed(format!("cudaStreamQuery failed with CUDA error {error}")),
        }
    }

    fn abort(&mut self) {
        if !self.aborted && !self.comm.is_null() {
            // SAFETY: a live communicator, aborted once.
            unsafe { (self.nccl.fns.abort)(self.comm) };
        }
        self.aborted = true;
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        if !self.aborted && !self.comm.is_null() {
            // Finalise (flushes pending work, in non-blocking mode asynchronously), then destroy;
            // a peer that is gone would block finalising forever, so past a deadline, abort.
            // SAFETY: a live communicator.
            let finalised = unsafe { (self.nccl.fns.finalize)(self.comm) };
            let clean = (finalised == NCCL_SUCCESS || finalised == NCCL_IN_PROGRESS)
                && self.wait_ready(Duration::from_secs(10), &|| None).is_ok();
            if clean {
                // SAFETY: finalised; destroyed once.
                unsafe { (self.nccl.fns.destroy)(self.comm) };
            } else {
                self.abort();
            }
        }
        if !self.stream.is_null() {
            // SAFETY: a stream this communicator created, destroyed once.
            unsafe { (self.cuda.stream_destroy)(self.stream) };
        }
        if !self.torch_done.is_null() {
            // SAFETY: an event this communicator created, destroyed once.
            unsafe { (self.cuda.event_destroy)(self.torch_done) };
        }
    }
}

/// NCCL as the [`Collectives`] of a run: ranks on CUDA devices.
pub struct NcclCollectives {
    pub nccl: Arc<Nccl>,
}

impl Collectives for NcclCollectives {
    fn about(&self) -> String {
        let (a, b, c) = self.nccl.version;
        format!("NCCL {a}.{b}.{c}")
    }

    fn supports(&self, device: tch::Device) -> Result<(), String> {
        match device {
            tch::Device::Cuda(_) => Ok(()),
            other => Err(format!(
                "NCCL needs a CUDA device, and this rank's is {other:?}"
            )),
        }
    }

    fn new_id(&self) -> Result<String, String> {
        Ok(self.nccl.unique_id()?.to_hex())
    }

    fn join(
        &self,
        id: &str,
        nranks: i32,
        rank: i32,
        device: tch::Device,
        deadline: Duration,
        peer_failed: &dyn Fn() -> Option<String>,
    ) -> Result<Box<dyn Collective + Send>, String> {
        let tch::Device::Cuda(index) = device else {
            return Err(self.supports(device).unwrap_err());
        };
        let id = UniqueId::from_hex(id)?;
        let ranks = (id, nranks, rank);
        let comm = NcclComm::init(
            self.nccl.clone(),
            ranks,
            index as i32,
            deadline,
            peer_failed,
        )?;
        Ok(Box::new(comm))
    }
}
