//! Image placeholder expansion and three-stream position ids against transformers'
//! `Qwen2VLProcessor` and `Qwen2VLModel.get_rope_index`, for a left-padded batch whose rows
//! hold two images, one image and none.

mod support;

use grlhf_models::image_processor::{preprocess, ImageProcessorConfig, RgbImage};
use grlhf_models::mrope::{batch_position_ids, expand_image_placeholders, rope_index};
use support::*;
use tch::Device;

#[test]
fn expansion_and_positions_match_transformers() {
    let root = fixtures();
    let expected = read_json(root.join("mrope/expected.json"));
    let image_token = expected["image_token_id"].as_i64().unwrap();
    let merge = expected["spatial_merge_size"].as_i64().unwrap();
    let config = ImageProcessorConfig::from_file(root.join("images")).unwrap();
    let raw = id_lists(&expected["raw_ids"]);
    let want_ids = id_lists(&expected["input_ids"]);
    let mask = id_lists(&expected["attention_mask"]);
    let width = want_ids[0].len();
    let mut rows = Vec::new();
    for (r, files) in expected["images_per_row"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let images: Vec<RgbImage> = files
            .as_array()
            .unwrap()
            .iter()
            .map(|f| RgbImage::open(root.join("images").join(f.as_str().unwrap())).unwrap())
            .collect();
        let (grids, counts) = if images.is_empty() {
            (vec![], vec![])
        } else {
            let processed = preprocess(&images, &config).unwrap();
            let counts = processed.tokens_per_image(merge);
            (processed.image_grid_thw, counts)
        };
        let expanded = expand_image_placeholders(&raw[r], image_token, &counts).unwrap();
        // The processor left-pads; the real tokens are the row's tail.
        let real: Vec<i64> = want_ids[r]
            .iter()
            .zip(&mask[r])
            .filter(|(_, m)| **m == 1)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            expanded, real,
            "row {r}: expanded prompt differs from the processor's"
        );
        let positions = rope_index(&expanded, image_token, &grids, merge).unwrap();
        assert_eq!(
            positions.delta,
            expected["deltas"][r].as_i64().unwrap(),
            "row {r} delta"
        );
        rows.push(positions);
    }
    let got = batch_position_ids(&rows, width, Device::Cpu);
    let want: Vec<i64> = expected["position_ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_array().unwrap().iter().flat_map(ids))
        .collect();
    let got: Vec<i64> = Vec::<i64>::try_from(got.flatten(0, -1)).unwrap();
    assert_eq!(got, want, "position ids differ from get_rope_index");
}
