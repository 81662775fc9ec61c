//! Shared helpers for the model tests: locating the transformers fixtures and comparing tensors.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// The fixture directory written by `scripts/make_fixtures.py` (`make fixtures`).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("GRLHF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    assert!(
        dir.join("STAMP").exists(),
        "parity fixtures are missing at {}: run `make fixtures` (or `make test`, which runs it)",
        dir.display()
    );
    dir
}

pub fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .expect("array of ids")
        .iter()
        .map(|v| v.as_i64().expect("integer id"))
        .collect()
}

/// A JSON list of id lists (prompts, continuations).
pub fn id_lists(value: &Value) -> Vec<Vec<i64>> {
    value
        .as_array()
        .expect("array of id lists")
        .iter()
        .map(ids)
        .collect()
}

/// A `{"shape": [...], "data": [...]}` object as an f32 CPU tensor.
pub fn tensor(value: &Value) -> Tensor {
    let shape = ids(&value["shape"]);
    let data: Vec<f32> = value["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("float") as f32)
        .collect();
    Tensor::from_slice(&data).view(shape.as_slice())
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(Device::Cpu).to_kind(Kind::Double);
    (a - b).abs().max().double_value(&[])
}

/// The device tests run on: `GRLHF_TEST_DEVICE` (e.g. `cuda:0`) or the CPU.
pub fn device() -> Device {
    match std::env::var("GRLHF_TEST_DEVICE") {
        Ok(name) => grlhf_models::device::parse_device(&name).expect("GRLHF_TEST_DEVICE"),
        Err(_) => Device::Cpu,
    }
}

/// The LM fixture cases, by directory name.
pub const LM_CASES: &[&str] = &[
    "gqa_tied_f32",
    "mha_untied_f32_sharded",
    "gqa_untied_bf16",
    "mha_tied_bf16",
];

/// Logit tolerance for a fixture dtype, as the foundation issue sets it.
pub fn tolerance(dtype: &str) -> f64 {
    match dtype {
        "f32" => 1e-4,
        "bf16" => 2e-2,
        other => panic!("unknown fixture dtype {other}"),
    }
}

pub fn kind(dtype: &str) -> Kind {
    grlhf_models::device::parse_dtype(dtype).expect("fixture dtype")
}
