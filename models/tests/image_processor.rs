//! Qwen2-VL image preprocessing against transformers' `Qwen2VLImageProcessor`: pixel values and
//! patch grids of PNG images that need scaling up, down or not at all, grayscale included; and
//! bad image inputs giving errors that name the file.

mod support;

use grlhf_models::image_processor::{preprocess, ImageProcessorConfig, RgbImage};
use grlhf_models::weights::read_tensors;
use support::*;
use tch::Tensor;

fn expected_tensor(name: &str) -> Tensor {
    let path = fixtures().join("images/expected.safetensors");
    read_tensors(&path)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from {}", path.display()))
        .1
}

fn fixture_images() -> (ImageProcessorConfig, Vec<RgbImage>, serde_json::Value) {
    let dir = fixtures().join("images");
    let config = ImageProcessorConfig::from_file(&dir).unwrap();
    let expected = read_json(dir.join("expected.json"));
    let images = expected["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| RgbImage::open(dir.join(f.as_str().unwrap())).unwrap())
        .collect();
    (config, images, expected)
}

#[test]
fn pixel_values_and_grids_match_transformers_image_by_image() {
    let (config, images, expected) = fixture_images();
    for (i, image) in images.iter().enumerate() {
        let out = preprocess(std::slice::from_ref(image), &config).unwrap();
        let grid = ids(&expected["image_grid_thw"][i]);
        assert_eq!(out.image_grid_thw[0].to_vec(), grid, "image {i} grid");
        let err = max_abs_diff(
            &out.pixel_values,
            &expected_tensor(&format!("pixel_values_{i}")),
        );
        eprintln!(
            "image {i} ({}×{}): max |Δ| = {err:e}",
            image.width, image.height
        );
        assert!(err <= 1e-5, "image {i}: pixel values differ by {err:e}");
    }
}

#[test]
fn a_list_of_images_concatenates_their_patches() {
    let (config, images, expected) = fixture_images();
    let out = preprocess(&images, &config).unwrap();
    let grids: Vec<Vec<i64>> = out.image_grid_thw.iter().map(|g| g.to_vec()).collect();
    assert_eq!(grids, id_lists(&expected["batch_image_grid_thw"]));
    let err = max_abs_diff(&out.pixel_values, &expected_tensor("pixel_values_all"));
    assert!(err <= 1e-5, "batched pixel values differ by {err:e}");
    // 2×2 merge: the grid [1, 8, 30] is 60 prompt tokens.
    assert_eq!(out.tokens_per_image(config.merge_size)[1], 60);
}

#[test]
fn in_memory_buffers_equal_decoded_files() {
    let (config, images, _) = fixture_images();
    let copy =
        RgbImage::from_rgb(images[0].width, images[0].height, images[0].pixels.clone()).unwrap();
    let a = preprocess(&[copy], &config).unwrap().pixel_values;
    let b = preprocess(&images[..1], &config).unwrap().pixel_values;
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

#[test]
fn bad_image_inputs_are_errors_naming_the_file() {
    let (config, images, _) = fixture_images();
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixtures().join("images/image_5_640x480.png")).unwrap();
    let truncated = tmp.path().join("truncated.png");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let corrupt = tmp.path().join("corrupt.png");
    std::fs::write(&corrupt, b"this is not an image").unwrap();
    for path in [&truncated, &corrupt] {
        let err = RgbImage::open(path).unwrap_err().to_string();
        assert!(
            err.contains(path.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
    let err = RgbImage::open(tmp.path().join("absent.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.png"), "{err}");
    assert!(preprocess(&[], &config).is_err());
    // Far beyond max_pixels is not an error: it is scaled down (the documented behaviour).
    let huge = RgbImage::from_rgb(1600, 1200, vec![128; 1600 * 1200 * 3]).unwrap();
    let out = preprocess(&[huge], &config).unwrap();
    let [_, h, w] = out.image_grid_thw[0];
    assert!(
        h * w * 14 * 14 <= config.pixel_bounds().1,
        "{h}×{w} patches exceed max_pixels"
    );
    // An absurd aspect ratio is refused, naming the image.
    let strip = RgbImage::from_rgb(4000, 10, vec![0; 4000 * 10 * 3]).unwrap();
    let err = preprocess(&[images[0].clone(), strip], &config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image 1") && err.contains("aspect ratio"),
        "{err}"
    );
}

#[test]
fn unsupported_processor_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("preprocessor_config.json");
    std::fs::write(&path, r#"{"resample": 2}"#).unwrap();
    let err = ImageProcessorConfig::from_file(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`resample`"), "{err}");
    std::fs::write(&path, r#"{"do_resize": false}"#).unwrap();
    assert!(ImageProcessorConfig::from_file(&path)
        .unwrap_err()
        .to_string()
        .contains("`do_resize`"));
    std::fs::write(
        &path,
        r#"{"size": {"shortest_edge": 100, "longest_edge": 10}}"#,
    )
    .unwrap();
    assert!(ImageProcessorConfig::from_file(&path)
        .unwrap_err()
        .to_string()
        .contains("`size`"));
}
