//! TensorBoard event files: `RUN_DIR/tb/events.out.tfevents.<time>.<host>.<pid>`, written as
//! the run goes, so `tensorboard --logdir runs/` shows a run live and compares runs (each
//! pipeline stage and variant is its own run directory, hence its own TensorBoard run).
//!
//! The format is TensorFlow's documented one: a TFRecord file (each record a little-endian u64
//! length, its masked CRC-32C, the bytes, their masked CRC-32C) of `Event` protocol buffers, the
//! first holding the file version, the rest `Summary` values — scalars (`simple_value`) and
//! histograms (`HistogramProto`). The messages are declared here with prost's derive (field
//! numbers from tensorboard/compat/proto/{event,summary,histogram}.proto); only the fields
//! grlhf writes are declared.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "ValueKind", tags = "2, 5")]
    value: Option<ValueKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum ValueKind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "5")]
    Histo(HistogramProto),
}

/// `tensorflow.HistogramProto`: bucket `i` counts values in (limit[i-1], limit[i]].
#[derive(Clone, PartialEq, prost::Message)]
struct HistogramProto {
    #[prost(double, tag = "1")]
    min: f64,
    #[prost(double, tag = "2")]
    max: f64,
    #[prost(double, tag = "3")]
    num: f64,
    #[prost(double, tag = "4")]
    sum: f64,
    #[prost(double, tag = "5")]
    sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    bucket: Vec<f64>,
}

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// TFRecord's masked CRC-32C.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = CASTAGNOLI.checksum(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A histogram to write: the values themselves, bucketed here.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// `(value, count)`.
    pub values: Vec<(f64, f64)>,
}

impl Histogram {
    fn proto(&self) -> Option<HistogramProto> {
        let num: f64 = self.values.iter().map(|(_, c)| c).sum();
        if num <= 0.0 {
            return None;
        }
        let min = self
            .values
            .iter()
            .map(|p| p.0)
            .fold(f64::INFINITY, f64::min);
        let max = self
            .values
            .iter()
            .map(|p| p.0)
            .fold(f64::NEG_INFINITY, f64::max);
        // Integer-valued data (staleness) gets one bucket per value; other data 30 even ones.
        let integral = self.values.iter().all(|(v, _)| v.fract() == 0.0) && max - min <= 64.0;
        let limits: Vec<f64> = if integral {
            (min as i64..=max as i64).map(|v| v as f64 + 0.5).collect()
        } else {
            let width = ((max - min) / 30.0).max(1e-12);
            (1..=30).map(|i| min + width * i as f64).collect()
        };
        let mut bucket = vec![0.0; limits.len()];
        for &(v, c) in &self.values {
            let i = limits.partition_point(|&l| l < v).min(limits.len() - 1);
            bucket[i] += c;
        }
        Some(HistogramProto {
            min,
            max,
            num,
            sum: self.values.iter().map(|(v, c)| v * c).sum(),
            sum_squares: self.values.iter().map(|(v, c)| v * v * c).sum(),
            bucket_limit: limits,
            bucket,
        })
    }
}

/// Appends summaries to one event file.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates a new event file in `dir` (made if missing).
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}",
            unix_time() as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = EventWriter {
            out: BufWriter::new(file),
            path,
        };
        writer.event(0, What::FileVersion("brain.Event:2".to_string()))?;
        writer.flush()?;
        Ok(writer)
    }

    fn event(&mut self, step: u64, what: What) -> Result<()> {
        let event = Event {
            wall_time: unix_time(),
            step: step as i64,
            what: Some(what),
        };
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.out.write_all(&masked_crc(&data).to_le_bytes())?;
        Ok(())
    }

    /// Scalars at `step`, one event for all of them; non-finite values are left out (TensorBoard
    /// would draw them as gaps anyway, and a NaN loss is in metrics.jsonl).
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let value: Vec<SummaryValue> = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(tag, v)| SummaryValue {
                tag: tag.clone(),
                value: Some(ValueKind::SimpleValue(*v as f32)),
            })
            .collect();
        if value.is_empty() {
            return Ok(());
        }
        self.event(step, What::Summary(Summary { value }))
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// One histogram at `step` (nothing when it is empty).
    pub fn histogram(&mut self, step: u64, tag: &str, histogram: &Histogram) -> Result<()> {
        let Some(histo) = histogram.proto() else {
            return Ok(());
        };
        let value = vec![SummaryValue {
            tag: tag.to_string(),
            value: Some(ValueKind::Histo(histo)),
        }];
        self.event(step, What::Summary(Summary { value }))
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // CRC-32C("123456789") = 0xE3069283, the standard check value; masked as TFRecord does.
        let crc = CASTAGNOLI.checksum(b"123456789");
        assert_eq!(crc, 0xE306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            crc.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn integral_histograms_get_a_bucket_per_value() {
        let h = Histogram {
            values: vec![(0.0, 3.0), (2.0, 1.0)],
        };
        let p = h.proto().unwrap();
        assert_eq!(p.bucket_limit, vec![0.5, 1.5, 2.5]);
        assert_eq!(p.bucket, vec![3.0, 0.0, 1.0]);
        assert_eq!((p.num, p.sum, p.min, p.max), (4.0, 2.0, 0.0, 2.0));
        assert!(Histogram::default().proto().is_none());
    }
}
