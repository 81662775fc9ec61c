//! Image preprocessing for Qwen2-VL / Qwen2.5-VL, exactly as transformers'
//! `Qwen2VLImageProcessor` (its default torchvision backend) does it:
//!
//! 1. decode to 8-bit RGB (grayscale is replicated to three channels; an alpha channel is
//!    composited over white);
//! 2. **smart resize**: height and width become multiples of `patch_size × merge_size`, as close
//!    to the original aspect ratio as possible, with the pixel count inside
//!    `[min_pixels, max_pixels]` — images outside are scaled down or up, never rejected (only an
//!    aspect ratio above 200 is);
//! 3. bicubic, antialiased resampling of the 8-bit image (libtorch's `_upsample_bicubic2d_aa`,
//!    the kernel torchvision calls, so results are the same bit for bit);
//! 4. rescale and normalise fused as transformers fuses them: `(x − 255·mean) / (255·std)` in
//!    f32;
//! 5. patch flattening into `[grid_t · grid_h · grid_w, 3 · temporal_patch · patch · patch]` in
//!    the merge-window order the vision tower expects, with the still image repeated over the
//!    temporal patch; `image_grid_thw` is `[1, grid_h, grid_w]` per image.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::config::read_json_file;
use crate::error::{ModelError, Result};

/// `preprocessor_config.json` fields that matter (names as transformers writes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageProcessorConfig {
    #[serde(default = "default_patch_size")]
    pub patch_size: i64,
    #[serde(default = "default_temporal_patch_size")]
    pub temporal_patch_size: i64,
    #[serde(default = "default_merge_size")]
    pub merge_size: i64,
    #[serde(default = "default_mean")]
    pub image_mean: [f64; 3],
    #[serde(default = "default_std")]
    pub image_std: [f64; 3],
    #[serde(default = "default_rescale_factor")]
    pub rescale_factor: f64,
    /// transformers 5 writes `size: {shortest_edge, longest_edge}` (pixel counts); older
    /// configs write `min_pixels` / `max_pixels`, which win when present.
    #[serde(default)]
    pub size: Option<PixelBounds>,
    #[serde(default)]
    pub min_pixels: Option<i64>,
    #[serde(default)]
    pub max_pixels: Option<i64>,
    #[serde(default = "yes")]
    pub do_resize: bool,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    /// PIL resampling code; 3 (bicubic) is the only one Qwen2-VL uses and grlhf implements.
    #[serde(default = "bicubic")]
    pub resample: i64,
}

fn yes() -> bool {
    true
}
fn bicubic() -> i64 {
    3
}

/// Pixel-count bounds as transformers names them in `size`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelBounds {
    pub shortest_edge: i64,
    pub longest_edge: i64,
}

fn default_patch_size() -> i64 {
    14
}
fn default_temporal_patch_size() -> i64 {
    2
}
fn default_merge_size() -> i64 {
    2
}
fn default_mean() -> [f64; 3] {
    [0.48145466, 0.4578275, 0.40821073]
}
fn default_std() -> [f64; 3] {
    [0.26862954, 0.26130258, 0.27577711]
}
fn default_rescale_factor() -> f64 {
    1.0 / 255.0
}

impl Default for ImageProcessorConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

impl ImageProcessorConfig {
    /// Reads `preprocessor_config.json` (or the one inside a model directory).
    pub fn from_file(path: impl AsRef<Path>) -> Result<ImageProcessorConfig> {
        let (config, path): (ImageProcessorConfig, _) =
            read_json_file(path.as_ref(), "preprocessor_config.json")?;
        config.validate(&path)?;
        Ok(config)
    }

    /// `(min_pixels, max_pixels)`: transformers' defaults are 56·56 and 28·28·1280.
    pub fn pixel_bounds(&self) -> (i64, i64) {
        let size = self.size.unwrap_or(PixelBounds {
            shortest_edge: 56 * 56,
            longest_edge: 28 * 28 * 1280,
        });
        (
            self.min_pixels.unwrap_or(size.shortest_edge),
            self.max_pixels.unwrap_or(size.longest_edge),
        )
    }

    /// Side lengths must be multiples of this.
    pub fn factor(&self) -> i64 {
        self.patch_size * self.merge_size
    }

    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |field: &str, message: String| ModelError::ConfigValue {
            path: origin.to_path_buf(),
            field: field.to_string(),
            message,
        };
        for (field, v) in [
            ("patch_size", self.patch_size),
            ("temporal_patch_size", self.temporal_patch_size),
            ("merge_size", self.merge_size),
        ] {
            if v <= 0 {
                return Err(bad(field, format!("must be positive, got {v}")));
            }
        }
        let (min, max) = self.pixel_bounds();
        if min <= 0 || max < min {
            return Err(bad(
                "size",
                format!("need 0 < min_pixels <= max_pixels, got {min} and {max}"),
            ));
        }
        if !self.do_resize {
            return Err(bad(
                "do_resize",
                "false is not supported: patches need sides that are multiples of patch_size × merge_size".to_string(),
            ));
        }
        if self.resample != 3 {
            return Err(bad(
                "resample",
                format!(
                    "{} is not supported; only 3 (bicubic) is implemented",
                    self.resample
                ),
            ));
        }
        if self.rescale_factor <= 0.0 {
            return Err(bad("rescale_factor", "must be positive".to_string()));
        }
        if let Some(i) = self.image_std.iter().position(|&s| s <= 0.0) {
            return Err(bad("image_std", format!("entry {i} must be positive")));
        }
        Ok(())
    }
}

/// An 8-bit RGB image, row-major `[height][width][3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Wraps an in-memory RGB buffer, checking its length.
    pub fn from_rgb(width: u32, height: u32, pixels: Vec<u8>) -> Result<RgbImage> {
        if width == 0 || height == 0 {
            return Err(ModelError::invalid(
                "image",
                format!("{width}×{height} image has no pixels"),
            ));
        }
        let want = width as usize * height as usize * 3;
        if pixels.len() != want {
            return Err(ModelError::invalid(
                "image",
                format!(
                    "{width}×{height} RGB needs {want} bytes, got {}",
                    pixels.len()
                ),
            ));
        }
        Ok(RgbImage {
            width,
            height,
            pixels,
        })
    }

    /// Decodes a PNG or JPEG file.
    pub fn open(path: impl AsRef<Path>) -> Result<RgbImage> {
        let path = path.as_ref();
        let bad = |message: String| ModelError::Image {
            path: PathBuf::from(path),
            message,
        };
        let reader = image::ImageReader::open(path)
            .map_err(|e| ModelError::io(path, e))?
            .with_guessed_format()
            .map_err(|e| ModelError::io(path, e))?;
        let decoded = reader.decode().map_err(|e| bad(e.to_string()))?;
        let (width, height) = (decoded.width(), decoded.height());
        let pixels = if decoded.color().has_alpha() {
            // Composite over white, as transformers' RGB conversion does.
            let rgba = decoded.to_rgba8();
            rgba.pixels()
                .flat_map(|p| {
                    let a = p[3] as f32 / 255.0;
                    (0..3)
                        .map(move |c| ((p[c] as f32 / 255.0 * a + (1.0 - a)) * 255.0).round() as u8)
                })
                .collect()
        } else {
            decoded.to_rgb8().into_raw()
        };
        RgbImage::from_rgb(width, height, pixels).map_err(|e| bad(e.to_string()))
    }
}

/// Output of preprocessing a list of images.
#[derive(Debug)]
pub struct ProcessedImages {
    /// `[sum of patches, 3 · temporal_patch · patch · patch]`, f32.
    pub pixel_values: Tensor,
    /// `[t, h, w]` patch grid of each image.
    pub image_grid_thw: Vec<[i64; 3]>,
}

impl ProcessedImages {
    /// Tokens each image occupies in the prompt after the 2×2 merge: `t·h·w / merge²`.
    pub fn tokens_per_image(&self, merge_size: i64) -> Vec<i64> {
        self.image_grid_thw
            .iter()
            .map(|[t, h, w]| t * h * w / (merge_size * merge_size))
            .collect()
    }
}

/// transformers' `smart_resize`: `(height, width)` multiples of `factor`, pixel count within
/// `[min_pixels, max_pixels]`, aspect ratio kept as closely as possible. Python's `round` rounds
/// halves to even, and so does this.
pub fn smart_resize(
    height: i64,
    width: i64,
    factor: i64,
    min_pixels: i64,
    max_pixels: i64,
) -> Result<(i64, i64)> {
    if height <= 0 || width <= 0 {
        return Err(ModelError::invalid(
            "image",
            format!("{width}×{height} image has no pixels"),
        ));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    if h.max(w) / h.min(w) > 200.0 {
        return Err(ModelError::invalid(
            "image",
            format!(
                "aspect ratio {:.1} of a {width}×{height} image exceeds 200",
                h.max(w) / h.min(w)
            ),
        ));
    }
    let mut h_bar = (h / f).round_ties_even() as i64 * factor;
    let mut w_bar = (w / f).round_ties_even() as i64 * factor;
    if h_bar * w_bar > max_pixels {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = factor.max((h / beta / f).floor() as i64 * factor);
        w_bar = factor.max((w / beta / f).floor() as i64 * factor);
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() as i64 * factor;
        w_bar = (w * beta / f).ceil() as i64 * factor;
    }
    Ok((h_bar, w_bar))
}

/// transformers fuses rescaling into normalisation (`mean / factor`, `std / factor` in f32) when
/// both are on; the same arithmetic is used here so values agree to the last bit.
fn rescale_and_normalize(pixels: &Tensor, config: &ImageProcessorConfig) -> Tensor {
    let channel = |values: [f64; 3]| Tensor::from_slice(&values.map(|v| v as f32)).view([3, 1, 1]);
    match (config.do_rescale, config.do_normalize) {
        (true, true) => {
            let scale = 1.0 / config.rescale_factor;
            (pixels - channel(config.image_mean) * scale) / (channel(config.image_std) * scale)
        }
        (false, true) => (pixels - channel(config.image_mean)) / channel(config.image_std),
        (true, false) => pixels * config.rescale_factor,
        (false, false) => pixels.shallow_clone(),
    }
}

/// Preprocesses images one by one (each keeps its own size) and concatenates their patches.
pub fn preprocess(images: &[RgbImage], config: &ImageProcessorConfig) -> Result<ProcessedImages> {
    if images.is_empty() {
        return Err(ModelError::invalid("images", "no image given"));
    }
    let (min_pixels, max_pixels) = config.pixel_bounds();
    let mut patches = Vec::with_capacity(images.len());
    let mut grids = Vec::with_capacity(images.len());
    for (i, image) in images.iter().enumerate() {
        let (h, w) = (image.height as i64, image.width as i64);
        let (rh, rw) = smart_resize(h, w, config.factor(), min_pixels, max_pixels)
            .map_err(|e| ModelError::invalid("images", format!("image {i}: {e}")))?;
        // [1, 3, H, W] uint8, as torchvision sees a CHW tensor.
        let chw = Tensor::from_slice(&image.pixels)
            .view([h, w, 3])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .contiguous();
        let resized = if (rh, rw) == (h, w) {
            chw
        } else {
            chw.f_internal_upsample_bicubic2d_aa([rh, rw], false, None, None)?
        };
        let normed = rescale_and_normalize(&resized.to_kind(Kind::Float), config);
        let (p, m, t) = (
            config.patch_size,
            config.merge_size,
            config.temporal_patch_size,
        );
        let (gh, gw) = (rh / p, rw / p);
        let flat = normed
            .reshape([1, 3, gh / m, m, p, gw / m, m, p])
            .permute([0, 2, 5, 3, 6, 1, 4, 7])
            .unsqueeze(6)
            .expand([-1, -1, -1, -1, -1, -1, t, -1, -1], false)
            .reshape([gh * gw, 3 * t * p * p]);
        patches.push(flat);
        grids.push([1, gh, gw]);
    }
    Ok(ProcessedImages {
        pixel_values: Tensor::f_cat(&patches, 0)?.to_device(Device::Cpu),
        image_grid_thw: grids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_transformers_rules() {
        // Already a multiple of 28 and inside the bounds: unchanged.
        assert_eq!(
            smart_resize(224, 448, 28, 3136, 1_003_520).unwrap(),
            (224, 448)
        );
        // Python's round(2.5) == 2: 70 / 28 = 2.5 rounds down to 56.
        assert_eq!(
            smart_resize(70, 70, 28, 28 * 28, 1_000_000).unwrap(),
            (56, 56)
        );
        // Too small: scaled up to at least min_pixels.
        let (h, w) = smart_resize(30, 50, 28, 3136, 1_003_520).unwrap();
        assert!(h * w >= 3136 && h % 28 == 0 && w % 28 == 0);
        // Too large: scaled down to at most max_pixels.
        let (h, w) = smart_resize(4000, 3000, 28, 3136, 200_704).unwrap();
        assert!(h * w <= 200_704 && h % 28 == 0 && w % 28 == 0, "{h}×{w}");
        assert!(smart_resize(10, 2500, 28, 3136, 1_003_520)
            .unwrap_err()
            .to_string()
            .contains("aspect ratio"));
        assert!(smart_resize(0, 5, 28, 3136, 1_003_520).is_err());
    }

    #[test]
    fn rgb_buffers_are_checked() {
        assert!(RgbImage::from_rgb(2, 2, vec![0; 12]).is_ok());
        let err = RgbImage::from_rgb(2, 2, vec![0; 11])
            .unwrap_err()
            .to_string();
        assert!(err.contains("12 bytes") && err.contains("11"), "{err}");
        assert!(RgbImage::from_rgb(0, 3, vec![]).is_err());
    }
}
