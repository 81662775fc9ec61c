//! Qwen2-VL and Qwen2.5-VL against transformers' `Qwen2VLForConditionalGeneration` /
//! `Qwen2_5_VLForConditionalGeneration` on tiny random checkpoints: logits for prompts with one
//! and with two images (every position), the same prompts batched with left padding, greedy
//! generation with images, and bad multimodal inputs.

mod support;

use grlhf_models::image_processor::{preprocess, ImageProcessorConfig, RgbImage};
use grlhf_models::mrope::expand_image_placeholders;
use grlhf_models::qwen2_vl::{MultimodalPrompt, Qwen2VlForConditionalGeneration};
use grlhf_models::GenerationConfig;
use support::*;
use tch::{Kind, Tensor};

struct Case {
    prompt: MultimodalPrompt,
    pixels: Tensor,
    logits: Tensor,
    greedy: Vec<i64>,
}

/// The two architectures' fixture directories.
const ARCHITECTURES: &[&str] = &["qwen2_vl", "qwen2_5_vl"];

fn cases(arch: &str, model: &Qwen2VlForConditionalGeneration) -> Vec<Case> {
    let root = fixtures();
    let expected = read_json(root.join(arch).join("expected.json"));
    let config = ImageProcessorConfig::from_file(root.join("images")).unwrap();
    let image_token = model.config().image_token_id;
    expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let images: Vec<RgbImage> = case["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| RgbImage::open(root.join("images").join(f.as_str().unwrap())).unwrap())
                .collect();
            let processed = preprocess(&images, &config).unwrap();
            let counts = processed.tokens_per_image(config.merge_size);
            let tokens =
                expand_image_placeholders(&ids(&case["raw_ids"]), image_token, &counts).unwrap();
            assert_eq!(
                tokens,
                ids(&case["input_ids"]),
                "expanded prompt differs from the processor's"
            );
            Case {
                prompt: MultimodalPrompt {
                    tokens,
                    grids: processed.image_grid_thw,
                },
                pixels: processed.pixel_values,
                logits: tensor(&case["logits"]),
                greedy: ids(&case["greedy"]),
            }
        })
        .collect()
}

/// All cases as one batch: their prompts, and their pixel values in prompt order.
fn batched(cases: &[Case]) -> (Vec<MultimodalPrompt>, Tensor) {
    let prompts = cases.iter().map(|c| c.prompt.clone()).collect();
    let pixels: Vec<Tensor> = cases.iter().map(|c| c.pixels.shallow_clone()).collect();
    (prompts, Tensor::cat(&pixels, 0))
}

fn load(arch: &str) -> Qwen2VlForConditionalGeneration {
    Qwen2VlForConditionalGeneration::load(fixtures().join(arch), device(), Kind::Float)
        .unwrap_or_else(|e| panic!("{arch}: {e}"))
}

#[test]
fn logits_with_one_and_two_images_match_transformers() {
    for arch in ARCHITECTURES {
        let model = load(arch);
        for (i, case) in cases(arch, &model).iter().enumerate() {
            let logits = tch::no_grad(|| {
                model.forward(std::slice::from_ref(&case.prompt), Some(&case.pixels))
            })
            .unwrap();
            let err = max_abs_diff(&logits.get(0), &case.logits);
            eprintln!(
                "{arch} case {i} ({} images): max |Δlogit| = {err:e}",
                case.prompt.grids.len()
            );
            assert!(err <= 1e-4, "{arch} case {i}: max |Δlogit| = {err:e}");
        }
    }
}

#[test]
fn the_hub_config_layout_and_its_transformers_5_resave_load_as_the_same_model() {
    // `<arch>_hub`: the same weights under the hub's transformers-4 config.json (text keys at
    // the top level, `rope_scaling: {"type": "mrope"}`, `torch_dtype`, `in_chans`, a sliding
    // window that is switched off). `<arch>_resaved`: that directory re-saved by transformers 5,
    // whose rope_parameters carry both `rope_type` and `type`. transformers computes the base
    // case's logits from both (checked when the fixtures are made); so must grlhf.
    for arch in ARCHITECTURES {
        let reference = load(arch);
        let cases = cases(arch, &reference);
        for layout in ["hub", "resaved"] {
            let dir = format!("{arch}_{layout}");
            let model = load(&dir);
            assert_eq!(
                model.config().text_config.mrope_section(),
                reference.config().text_config.mrope_section(),
                "{dir}"
            );
            for (i, case) in cases.iter().enumerate() {
                let logits = tch::no_grad(|| {
                    model.forward(std::slice::from_ref(&case.prompt), Some(&case.pixels))
                })
                .unwrap();
                let err = max_abs_diff(&logits.get(0), &case.logits);
                assert!(err <= 1e-4, "{dir} case {i}: max |Δlogit| = {err:e}");
            }
        }
    }
}

#[test]
fn a_padded_batch_with_different_images_equals_one_by_one() {
    for arch in ARCHITECTURES {
        let model = load(arch);
        let cases = cases(arch, &model);
        let (prompts, pixels) = batched(&cases);
        let logits = tch::no_grad(|| model.forward(&prompts, Some(&pixels))).unwrap();
        let width = logits.size()[1];
        for (i, case) in cases.iter().enumerate() {
            let len = case.prompt.tokens.len() as i64;
            let got = logits.get(i as i64).narrow(0, width - len, len);
            let err = max_abs_diff(&got, &case.logits);
            assert!(err <= 1e-4, "{arch} row {i}: max |Δlogit| = {err:e}");
        }
    }
}

#[test]
fn mismatched_images_and_placeholders_are_errors() {
    for arch in ARCHITECTURES {
        let model = load(arch);
        let cases = cases(arch, &model);
        let case = &cases[1];
        // Patches for one image fewer than the prompt's placeholders.
        let one = MultimodalPrompt {
            tokens: case.prompt.tokens.clone(),
            grids: case.prompt.grids[..1].to_vec(),
        };
        let err = model
            .forward(&[one], Some(&case.pixels))
            .unwrap_err()
            .to_string();
        assert!(err.contains("image"), "{err}");
        let err = model
            .forward(std::slice::from_ref(&case.prompt), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pixel_values"), "{err}");
        let bad = MultimodalPrompt {
            tokens: vec![1, 400],
            grids: vec![],
        };
        let err = model.forward(&[bad], None).unwrap_err().to_string();
        assert!(err.contains("400"), "{err}");
    }
}

#[test]
fn greedy_generation_with_images_matches_transformers_alone_and_batched() {
    for arch in ARCHITECTURES {
        let model = load(arch);
        let cases = cases(arch, &model);
        let n = read_json(fixtures().join(arch).join("expected.json"))["max_new_tokens"]
            .as_u64()
            .unwrap() as usize;
        let config = GenerationConfig::greedy(n);
        for (i, case) in cases.iter().enumerate() {
            let out = model
                .generate(
                    std::slice::from_ref(&case.prompt),
                    Some(&case.pixels),
                    &config,
                )
                .unwrap();
            assert_eq!(
                out[0].tokens, case.greedy,
                "case {i}: greedy continuation differs"
            );
        }
        let (prompts, pixels) = batched(&cases);
        let out = model.generate(&prompts, Some(&pixels), &config).unwrap();
        for (i, (got, case)) in out.iter().zip(&cases).enumerate() {
            assert_eq!(
                got.tokens, case.greedy,
                "row {i} of the padded batch differs"
            );
        }
    }
}

#[test]
fn continuous_batching_with_images_matches_transformers_and_the_plain_batch() {
    for arch in ARCHITECTURES {
        let model = load(arch);
        let cases = cases(arch, &model);
        let n = read_json(fixtures().join(arch).join("expected.json"))["max_new_tokens"]
            .as_u64()
            .unwrap() as usize;
        let prompts: Vec<MultimodalPrompt> = cases.iter().map(|c| c.prompt.clone()).collect();
        let pixels: Vec<Option<&Tensor>> = cases.iter().map(|c| Some(&c.pixels)).collect();
        // Two greedy samples per prompt through one and two slots: transformers' continuation.
        for slots in [1, 2] {
            let out = model
                .generate_in_slots(&prompts, &pixels, 2, slots, &GenerationConfig::greedy(n))
                .unwrap();
            for (r, got) in out.iter().enumerate() {
                assert_eq!(
                    got.tokens,
                    cases[r / 2].greedy,
                    "{arch}: {slots} slots, request {r}"
                );
            }
        }
        // Sampled: request r samples what row r of the plain batch (each prompt repeated) does.
        let config = GenerationConfig {
            sampling: grlhf_models::SamplingParams {
                temperature: 1.0,
                ..grlhf_models::SamplingParams::greedy()
            },
            seed: 5,
            ..GenerationConfig::greedy(n)
        };
        let repeated: Vec<MultimodalPrompt> = prompts
            .iter()
            .flat_map(|p| [p.clone(), p.clone()])
            .collect();
        let all_pixels: Vec<Tensor> = cases
            .iter()
            .flat_map(|c| [c.pixels.shallow_clone(), c.pixels.shallow_clone()])
            .collect();
        let plain = model
            .generate(&repeated, Some(&Tensor::cat(&all_pixels, 0)), &config)
            .unwrap();
        let slotted = model
            .generate_in_slots(&prompts, &pixels, 2, 3, &config)
            .unwrap();
        for (r, (got, want)) in slotted.iter().zip(&plain).enumerate() {
            assert_eq!(got.tokens, want.tokens, "{arch}: sampled request {r}");
        }
    }
}

#[test]
fn teacher_forced_logprobs_with_images_equal_generation_and_reach_the_vision_tower() {
    for arch in ARCHITECTURES {
        let model = load(arch);
        let cases = cases(arch, &model);
        let (prompts, pixels) = batched(&cases);
        let config = GenerationConfig {
            max_new_tokens: 6,
            sampling: grlhf_models::SamplingParams {
                temperature: 0.9,
                top_k: None,
                top_p: Some(0.95),
                repetition_penalty: None,
            },
            stop_token_ids: vec![],
            seed: 5,
            poll_every: None,
            cuda_graphs: false,
        };
        let out = model.generate(&prompts, Some(&pixels), &config).unwrap();
        let responses: Vec<Vec<i64>> = out.iter().map(|g| g.tokens.clone()).collect();
        let forced = model
            .response_logprobs(&prompts, &responses, Some(&pixels), 0.9)
            .unwrap();
        for (row, g) in out.iter().enumerate() {
            let got = forced.logprobs.get(row as i64);
            let err = max_abs_diff(&got, &Tensor::from_slice(&g.logprobs));
            assert!(err < 1e-4, "{arch} row {row}: |Δlogprob| = {err:e}");
        }
        // Differentiable through the image features into the vision tower.
        forced.logprobs.sum(Kind::Float).backward();
        let vision_grad: f64 = model
            .var_store()
            .variables()
            .iter()
            .filter(|(name, _)| name.starts_with("visual."))
            .map(|(_, v)| v.grad().abs().sum(Kind::Float).double_value(&[]))
            .sum();
        assert!(
            vision_grad > 0.0,
            "{arch}: no gradient reached the vision tower"
        );
    }
}
