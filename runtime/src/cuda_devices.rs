//! Names and memory of CUDA devices, read through the CUDA driver API (`libcuda.so`).
//!
//! libtorch (through tch) says how many CUDA devices exist but not what they are. The driver
//! library ships with every NVIDIA driver and is loaded at run time, so machines without one
//! simply report no devices. Device order follows CUDA's (it honours CUDA_VISIBLE_DEVICES),
//! the same order libtorch uses.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use libloading::{Library, Symbol};
use serde::Serialize;

/// One CUDA device as the driver describes it.
#[derive(Debug, Clone, Serialize)]
pub struct CudaDevice {
    pub index: usize,
    pub name: String,
    pub total_memory_bytes: u64,
    /// Free memory, when a context could be made (it normally can).
    pub free_memory_bytes: Option<u64>,
    pub compute_capability: (i32, i32),
}

/// What the driver reports: its version and devices.
#[derive(Debug, Clone, Serialize)]
pub struct CudaDriverInfo {
    /// e.g. 13000 for CUDA 13.0.
    pub driver_version: i32,
    pub devices: Vec<CudaDevice>,
}

type CuResult = c_int;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: c_int = 76;

/// Queries the driver. `Err` explains why nothing could be read (no driver, init failure).
pub fn query() -> Result<CudaDriverInfo, String> {
    // SAFETY: libcuda's entry points below are called with the documented argument types;
    // every out-pointer refers to a live local of the right type.
    unsafe {
        let lib = Library::new("libcuda.so.1")
            .or_else(|_| Library::new("libcuda.so"))
            .map_err(|e| format!("no CUDA driver library: {e}"))?;
        let sym = |name: &[u8]| -> Result<*const c_void, String> {
            let s: Symbol<*const c_void> = lib
                .get(name)
                .map_err(|e| format!("libcuda lacks {}: {e}", String::from_utf8_lossy(name)))?;
            Ok(*s)
        };
        let cu_init: extern "C" fn(c_uint) -> CuResult = std::mem::transmute(sym(b"cuInit\0")?);
        let check = |what: &str, r: CuResult| {
            if r == 0 {
                Ok(())
            } else {
                Err(format!("{what} failed with CUDA error {r}"))
            }
        };
        check("cuInit", cu_init(0))?;
        let get_version: extern "C" fn(*mut c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDriverGetVersion\0")?);
        let get_count: extern "C" fn(*mut c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceGetCount\0")?);
        let get_device: extern "C" fn(*mut c_int, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceGet\0")?);
        let get_name: extern "C" fn(*mut c_char, c_int, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceGetName\0")?);
        let total_mem: extern "C" fn(*mut usize, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceTotalMem_v2\0")?);
        let get_attr: extern "C" fn(*mut c_int, c_int, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceGetAttribute\0")?);
        let ctx_retain: extern "C" fn(*mut *mut c_void, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDevicePrimaryCtxRetain\0")?);
        let ctx_release: extern "C" fn(c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDevicePrimaryCtxRelease_v2\0")?);
        let ctx_push: extern "C" fn(*mut c_void) -> CuResult =
            std::mem::transmute(sym(b"cuCtxPushCurrent_v2\0")?);
        let ctx_pop: extern "C" fn(*mut *mut c_void) -> CuResult =
            std::mem::transmute(sym(b"cuCtxPopCurrent_v2\0")?);
        let mem_info: extern "C" fn(*mut usize, *mut usize) -> CuResult =
            std::mem::transmute(sym(b"cuMemGetInfo_v2\0")?);

        let mut driver_version = 0;
        check("cuDriverGetVersion", get_version(&mut driver_version))?;
        let mut count = 0;
        check("cuDeviceGetCount", get_count(&mut count))?;
        let mut devices = Vec::new();
        for index in 0..count {
            let mut dev = 0;
            check("cuDeviceGet", get_device(&mut dev, index))?;
            let mut name = [0 as c_char; 256];
            check("cuDeviceGetName", get_name(name.as_mut_ptr(), 256, dev))?;
            let mut total = 0usize;
            check("cuDeviceTotalMem", total_mem(&mut total, dev))?;
            let (mut major, mut minor) = (0, 0);
            check(
                "cuDeviceGetAttribute",
                get_attr(
                    &mut major,
                    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                    dev,
                ),
            )?;
            check(
                "cuDeviceGetAttribute",
                get_attr(
                    &mut minor,
                    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                    dev,
                ),
            )?;
            // Free memory needs a context: borrow the primary one (the one libtorch uses).
            let mut free_memory_bytes = None;
            let mut ctx: *mut c_void = std::ptr::null_mut();
            if ctx_retain(&mut ctx, dev) == 0 {
                if ctx_push(ctx) == 0 {
                    let (mut free, mut total2) = (0usize, 0usize);
                    if mem_info(&mut free, &mut total2) == 0 {
                        free_memory_bytes = Some(free as u64);
                    }
                    let mut popped = std::ptr::null_mut();
                    ctx_pop(&mut popped);
                }
                ctx_release(dev);
            }
            devices.push(CudaDevice {
                index: index as usize,
                name: CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned(),
                total_memory_bytes: total as u64,
                free_memory_bytes,
                compute_capability: (major, minor),
            });
        }
        Ok(CudaDriverInfo {
            driver_version,
            devices,
        })
    }
}
