//! Parsing of device (`cpu`, `cuda`, `cuda:1`) and dtype (`f32`, `bf16`, `f16`) names as they
//! appear on the command line and in configs.

use tch::{Device, Kind};

use crate::error::{ModelError, Result};

/// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N`. A CUDA device that does not exist is an error
/// here rather than a crash at the first tensor allocation.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim();
    let device = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => index,
            _ => {
                return Err(ModelError::invalid(
                    "device",
                    format!("`{name}` is not a device; use cpu, cuda or cuda:N"),
                ))
            }
        },
    };
    let count = tch::Cuda::device_count() as usize;
    if device >= count {
        return Err(ModelError::invalid(
            "device",
            format!("`{name}` requested but libtorch sees {count} CUDA device(s)"),
        ));
    }
    Ok(Device::Cuda(device))
}

/// Parses a floating dtype name. Accepts the short forms (`f32`, `bf16`, `f16`) and the
/// `torch_dtype` spellings found in HF configs (`float32`, `bfloat16`, `float16`).
pub fn parse_dtype(name: &str) -> Result<Kind> {
    match name.trim() {
        "f32" | "float32" | "float" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f16" | "float16" | "half" => Ok(Kind::Half),
        other => Err(ModelError::invalid(
            "dtype",
            format!("`{other}` is not a supported dtype; use f32, bf16 or f16"),
        )),
    }
}

/// The short name of a floating dtype, the inverse of [`parse_dtype`].
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "f32",
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        Kind::Double => "f64",
        _ => "other",
    }
}

/// A device as a config or flag names it (`cpu`, `cuda`, `cuda:N`). Kept as written, so a
/// resolved config reads back the same; [`DeviceName::device`] parses it where a model is placed
/// (and checks the device exists), [`DeviceName::well_formed`] checks the form at validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DeviceName(String);

impl DeviceName {
    pub fn device(&self) -> Result<Device> {
        parse_device(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `cpu`, `cuda` or `cuda:N` (whether the device exists is checked when it is used).
    pub fn well_formed(&self) -> bool {
        let name = self.0.trim();
        name == "cpu"
            || name == "cuda"
            || name
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<usize>().is_ok())
    }
}

impl From<&str> for DeviceName {
    fn from(name: &str) -> DeviceName {
        DeviceName(name.to_string())
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A floating dtype as a config names it (`f32`, `bf16`, `f16`, or the `torch_dtype`
/// spellings); [`DtypeName::kind`] parses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DtypeName(String);

impl DtypeName {
    pub fn kind(&self) -> Result<Kind> {
        parse_dtype(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DtypeName {
    fn from(name: &str) -> DtypeName {
        DtypeName(name.to_string())
    }
}

impl std::fmt::Display for DtypeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dtypes_and_rejects_unknown_ones() {
        assert_eq!(parse_dtype("bf16").unwrap(), Kind::BFloat16);
        assert_eq!(parse_dtype("float16").unwrap(), Kind::Half);
        let err = parse_dtype("int8").unwrap_err().to_string();
        assert!(err.contains("int8") && err.contains("dtype"), "{err}");
    }

    #[test]
    fn parses_devices_and_rejects_malformed_ones() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        for bad in ["gpu", "cuda:x", "cuda:-1"] {
            let err = parse_device(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        // A CUDA index past the device count is refused whether or not a GPU exists.
        let err = parse_device("cuda:999").unwrap_err().to_string();
        assert!(err.contains("CUDA device"), "{err}");
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn names_keep_their_spelling_through_serde_and_parse_where_used() {
        let device = DeviceName::from("cuda:1");
        assert_eq!(serde_json::to_string(&device).unwrap(), "\"cuda:1\"");
        let back: DeviceName = serde_json::from_str("\"cuda:1\"").unwrap();
        assert_eq!(back, device);
        assert!(device.well_formed());
        assert!(!DeviceName::from("gpu0").well_formed());
        assert!(!DeviceName::from("cuda:x").well_formed());
        assert_eq!(DeviceName::from("cpu").device().unwrap(), Device::Cpu);
        let dtype: DtypeName = serde_json::from_str("\"bfloat16\"").unwrap();
        assert_eq!(dtype.kind().unwrap(), Kind::BFloat16);
        assert!(DtypeName::from("int4").kind().is_err());
    }
}
