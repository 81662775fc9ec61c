//! Multimodal prompts for Qwen2-VL / Qwen2.5-VL: image placeholder expansion and the
//! three-stream rotary position ids, with transformers' semantics (`Qwen2VLProcessor`'s
//! `replace_image_token`, `Qwen2VLModel.get_rope_index`).
//!
//! - Each image token (`<|image_pad|>`, the config's `image_token_id`) in a prompt stands for one
//!   image and becomes `t·h·w / merge²` copies of itself; the chat template supplies the
//!   surrounding `<|vision_start|>` / `<|vision_end|>`.
//! - Text tokens get the same position on all three streams, counting up by one. An image's
//!   tokens get (temporal, row, column) positions offset by the position where the image
//!   starts, and text after the image resumes at that start + `max(h, w) / merge`.
//! - `delta = max position + 1 − length` carries the offset into decoding: a token generated at
//!   index `i` has position `i + delta` on all three streams.

use tch::{Device, Tensor};

use crate::error::{ModelError, Result};

/// Replaces the i-th image token of `tokens` with `tokens_per_image[i]` image tokens.
/// The number of image tokens must equal the number of images.
pub fn expand_image_placeholders(
    tokens: &[i64],
    image_token_id: i64,
    tokens_per_image: &[i64],
) -> Result<Vec<i64>> {
    let placeholders = tokens.iter().filter(|&&t| t == image_token_id).count();
    if placeholders != tokens_per_image.len() {
        return Err(ModelError::invalid(
            "images",
            format!(
                "the prompt has {placeholders} image placeholder(s) (token {image_token_id}) but {} image(s) were given",
                tokens_per_image.len()
            ),
        ));
    }
    let extra: i64 = tokens_per_image.iter().map(|n| n - 1).sum();
    let mut out = Vec::with_capacity((tokens.len() as i64 + extra.max(0)) as usize);
    let mut next_image = 0;
    for &token in tokens {
        if token == image_token_id {
            let count = tokens_per_image[next_image];
            next_image += 1;
            out.extend(std::iter::repeat_n(image_token_id, count.max(0) as usize));
        } else {
            out.push(token);
        }
    }
    Ok(out)
}

/// Position ids of one (expanded, unpadded) prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MropePositions {
    /// `(temporal, height, width)` position of each token.
    pub positions: Vec<[i64; 3]>,
    /// Add to a generated token's index to get its (text) position.
    pub delta: i64,
}

/// transformers' `get_rope_index` for one prompt whose image tokens are already expanded.
/// `grids` are the `[t, h, w]` patch grids of the prompt's images, in order.
pub fn rope_index(
    tokens: &[i64],
    image_token_id: i64,
    grids: &[[i64; 3]],
    spatial_merge_size: i64,
) -> Result<MropePositions> {
    let mut positions = Vec::with_capacity(tokens.len());
    let mut current = 0i64;
    let mut images = grids.iter().enumerate();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] != image_token_id {
            positions.push([current; 3]);
            current += 1;
            i += 1;
            continue;
        }
        let Some((index, &[t, h, w])) = images.next() else {
            return Err(ModelError::invalid(
                "images",
                format!("image tokens at position {i} but no image grid left for them"),
            ));
        };
        let (gh, gw) = (h / spatial_merge_size, w / spatial_merge_size);
        let count = (t * gh * gw) as usize;
        if i + count > tokens.len() || tokens[i..i + count].iter().any(|&x| x != image_token_id) {
            return Err(ModelError::invalid(
                "images",
                format!(
                    "image {index} needs {count} consecutive image tokens from position {i}; expand placeholders first"
                ),
            ));
        }
        for tt in 0..t {
            for hh in 0..gh {
                for ww in 0..gw {
                    positions.push([current + tt, current + hh, current + ww]);
                }
            }
        }
        current += gh.max(gw);
        i += count;
    }
    if let Some((index, _)) = images.next() {
        return Err(ModelError::invalid(
            "images",
            format!("image {index} has no image tokens in the prompt"),
        ));
    }
    let max = positions.iter().flatten().copied().max().unwrap_or(-1);
    Ok(MropePositions {
        delta: max + 1 - tokens.len() as i64,
        positions,
    })
}

/// `[3, batch, width]` position ids for left-padded rows (padding gets position 0, as in
/// transformers).
pub fn batch_position_ids(rows: &[MropePositions], width: usize, device: Device) -> Tensor {
    let batch = rows.len();
    let mut data = vec![0i64; 3 * batch * width];
    for (b, row) in rows.iter().enumerate() {
        let start = width - row.positions.len();
        for (j, pos) in row.positions.iter().enumerate() {
            for (s, &p) in pos.iter().enumerate() {
                data[(s * batch + b) * width + start + j] = p;
            }
        }
    }
    Tensor::from_slice(&data)
        .view([3, batch as i64, width as i64])
        .to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_counts_placeholders_against_images() {
        assert_eq!(
            expand_image_placeholders(&[1, 9, 2, 9, 3], 9, &[2, 3]).unwrap(),
            vec![1, 9, 9, 2, 9, 9, 9, 3]
        );
        let more = expand_image_placeholders(&[9, 9], 9, &[4])
            .unwrap_err()
            .to_string();
        assert!(
            more.contains("2 image placeholder") && more.contains("1 image"),
            "{more}"
        );
        let fewer = expand_image_placeholders(&[1], 9, &[4])
            .unwrap_err()
            .to_string();
        assert!(fewer.contains("0 image placeholder"), "{fewer}");
    }

    #[test]
    fn positions_follow_transformers_rules() {
        // text, one image with a 2×4 merged grid (grid [1, 4, 8], merge 2), text.
        let tokens = [5, 6, 9, 9, 9, 9, 9, 9, 9, 9, 7];
        let out = rope_index(&tokens, 9, &[[1, 4, 8]], 2).unwrap();
        assert_eq!(out.positions[1], [1, 1, 1]);
        assert_eq!(out.positions[2], [2, 2, 2]);
        assert_eq!(out.positions[9], [2, 3, 5]);
        // Text resumes at 2 + max(2, 4) = 6.
        assert_eq!(out.positions[10], [6, 6, 6]);
        assert_eq!(out.delta, 7 - 11);
        assert!(rope_index(&tokens, 9, &[], 2).is_err());
        assert!(rope_index(&tokens, 9, &[[1, 4, 8], [1, 2, 2]], 2).is_err());
        assert!(rope_index(&tokens[..5], 9, &[[1, 4, 8]], 2).is_err());
    }
}
