//! Continuous batching against the plain engine: the slot cache against the batch cache, and
//! `generate_in_slots` against `generate` for every slot count, prompt order and sampling mode.
//! On the device `GRLHF_TEST_DEVICE` names (the CPU by default; scripts/gpu-check.sh sets cuda).

mod support;

use grlhf_models::generation::{generate_in_slots, TokenDecoder};
use grlhf_models::slot_decoding::SlotDecoder;
use grlhf_models::{
    generate, Config, FinishReason, GeneratedSequence, GenerationConfig, PositionIds,
    Qwen2ForCausalLM, SamplingParams,
};
use support::device;
use tch::{Kind, Tensor};

fn model() -> Qwen2ForCausalLM {
    let config: Config = serde_json::from_value(serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 97, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 10000.0, "tie_word_embeddings": true
    }))
    .unwrap();
    tch::manual_seed(11);
    Qwen2ForCausalLM::new(&config, device(), Kind::Float).unwrap()
}

fn prompts() -> Vec<Vec<i64>> {
    vec![
        vec![5, 17, 3],
        vec![9, 8, 7, 6, 5, 4, 3],
        vec![42],
        vec![1, 2, 3, 4, 5],
        vec![60, 61],
        vec![11, 12, 13, 14, 15, 16, 17, 18, 19],
        vec![70, 3, 70],
    ]
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The prompt pass alone into a batch-1 cache sized for `extra` more tokens.
fn prefill_alone(
    model: &Qwen2ForCausalLM,
    prompt: &[i64],
    extra: i64,
) -> (Tensor, grlhf_models::kv_cache::KvCache) {
    let len = prompt.len() as i64;
    let mut cache = model.new_cache(1, len + extra).unwrap();
    let hidden = model
        .hidden_states(
            &Tensor::from_slice(prompt).unsqueeze(0).to_device(device()),
            &PositionIds::sequential(1, len, 0, device()),
            None,
            Some(&mut cache),
        )
        .unwrap();
    (model.logits(&hidden.select(1, len - 1)).unwrap(), cache)
}

#[test]
fn slot_cache_decoding_equals_each_prompt_decoded_alone() {
    let model = model();
    let prompts = prompts();
    let steps = 6;
    let feed = |row: usize, step: i64| (row as i64 * 13 + step * 7) % 97;
    tch::no_grad(|| {
        // Slots hold prompts of different lengths, started together.
        let mut slots = model.new_slot_cache(prompts.len() as i64, 16).unwrap();
        let mut alone = Vec::new();
        for (row, prompt) in prompts.iter().enumerate() {
            let (_, cache) = prefill_alone(&model, prompt, steps);
            let (_, fill) = prefill_alone(&model, prompt, 0);
            slots.fill(row as i64, &fill).unwrap();
            alone.push(cache);
        }
        let mut worst = 0f64;
        for step in 0..steps {
            let tokens: Vec<i64> = (0..prompts.len()).map(|r| feed(r, step)).collect();
            let positions: Vec<i64> = prompts.iter().map(|p| p.len() as i64 + step).collect();
            let got = model
                .decode_slots(
                    &Tensor::from_slice(&tokens).unsqueeze(1).to_device(device()),
                    &Tensor::from_slice(&positions).to_device(device()),
                    &mut slots,
                )
                .unwrap();
            for (row, cache) in alone.iter_mut().enumerate() {
                let want = model
                    .decode_step(
                        &Tensor::from_slice(&[tokens[row]])
                            .unsqueeze(1)
                            .to_device(device()),
                        &Tensor::from_slice(&[positions[row]]).to_device(device()),
                        cache,
                    )
                    .unwrap();
                worst = worst.max(max_diff(&got.get(row as i64), &want.get(0)));
            }
        }
        assert!(worst <= 1e-5, "slot logits differ by {worst:e}");
    });
}

fn sampled(seed: u64, stops: Vec<i64>) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: 9,
        sampling: SamplingParams {
            temperature: 0.9,
            top_k: Some(20),
            top_p: Some(0.95),
            repetition_penalty: None,
        },
        stop_token_ids: stops,
        seed,
        poll_every: None,
        cuda_graphs: false,
    }
}

fn assert_same(got: &[GeneratedSequence], want: &[GeneratedSequence], label: &str) {
    assert_eq!(got.len(), want.len(), "{label}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.tokens, w.tokens, "{label}: request {i} tokens");
        assert_eq!(g.finish_reason, w.finish_reason, "{label}: request {i}");
        let worst = g
            .logprobs
            .iter()
            .zip(&w.logprobs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4,
            "{label}: request {i} log-probs differ by {worst:e}"
        );
    }
}

#[test]
fn every_request_is_decoded_once_as_in_one_plain_batch() {
    let model = model();
    let prompts = prompts();
    // Stop tokens that end some requests early, so slots free up at different steps.
    let free = generate(&model, &prompts, &GenerationConfig::greedy(9)).unwrap();
    let stops = vec![free[0].tokens[1], free[3].tokens[4], free[5].tokens[0]];
    let configs = [
        ("greedy", GenerationConfig::greedy(9)),
        (
            "greedy with stops",
            GenerationConfig {
                stop_token_ids: stops.clone(),
                ..GenerationConfig::greedy(9)
            },
        ),
        ("sampled", sampled(3, vec![])),
        ("sampled with stops", sampled(8, stops)),
    ];
    let mut stopped_early = 0;
    for (label, config) in &configs {
        let plain = generate(&model, &prompts, config).unwrap();
        stopped_early += plain
            .iter()
            .filter(|g| g.finish_reason == FinishReason::Stop)
            .count();
        for slots in [1, 2, 3, 7, 12] {
            // Reads every step, every 3rd and every 8th: a slot that stops between reads keeps
            // decoding until the host sees it, and those tokens are dropped.
            for poll_every in [None, Some(3), Some(8)] {
                let config = GenerationConfig {
                    poll_every,
                    ..config.clone()
                };
                let got = generate_in_slots(&model, &prompts, slots, &config).unwrap();
                assert_same(
                    &got,
                    &plain,
                    &format!("{label}, {slots} slots, poll {poll_every:?}"),
                );
            }
        }
    }
    assert!(
        stopped_early >= 3,
        "the stop tokens never ended a request early"
    );
}

#[test]
fn greedy_requests_equal_each_prompt_generated_alone() {
    let model = model();
    let config = GenerationConfig::greedy(8);
    let got = generate_in_slots(&model, &prompts(), 3, &config).unwrap();
    for (i, prompt) in prompts().iter().enumerate() {
        let alone = generate(&model, std::slice::from_ref(prompt), &config).unwrap();
        assert_same(&got[i..=i], &alone, &format!("prompt {i}"));
    }
}

#[test]
fn bad_slot_requests_are_errors() {
    let model = model();
    let err = generate_in_slots(&model, &prompts(), 0, &GenerationConfig::greedy(4))
        .unwrap_err()
        .to_string();
    assert!(err.contains("slots"), "{err}");
    let err = generate_in_slots(&model, &[vec![1, 200]], 2, &GenerationConfig::greedy(4))
        .unwrap_err()
        .to_string();
    assert!(err.contains("200"), "{err}");
    // A slot takes one unpadded prompt that leaves room to decode.
    let mut slots = model.new_slot_cache(2, 4).unwrap();
    let (_, four) = tch::no_grad(|| prefill_alone(&model, &[1, 2, 3, 4], 0));
    let err = slots.fill(0, &four).unwrap_err().to_string();
    assert!(err.contains("capacity 4"), "{err}");
    let two_rows = model.new_cache(2, 3).unwrap();
    let err = slots.fill(1, &two_rows).unwrap_err().to_string();
    assert!(err.contains("one unpadded prompt"), "{err}");
    let (_, one) = tch::no_grad(|| prefill_alone(&model, &[1], 0));
    let err = slots.fill(2, &one).unwrap_err().to_string();
    assert!(err.contains("slot 2 of 2"), "{err}");
    assert!(slots
        .reset(-1)
        .unwrap_err()
        .to_string()
        .contains("slot -1 of 2"));
    // A full slot is an error before anything is written (on a GPU, an out-of-bounds write
    // would be a device assert).
    let (_, three) = tch::no_grad(|| prefill_alone(&model, &[1, 2, 3], 0));
    slots.fill(0, &three).unwrap();
    let step = |slots: &mut grlhf_models::slot_cache::SlotCache| {
        tch::no_grad(|| {
            model.decode_slots(
                &Tensor::from_slice(&[4i64, 4])
                    .unsqueeze(1)
                    .to_device(device()),
                &Tensor::from_slice(&[3i64, 0]).to_device(device()),
                slots,
            )
        })
    };
    let _ = step(&mut slots).unwrap();
    let err = step(&mut slots).unwrap_err().to_string();
    assert!(err.contains("slot 0 is full"), "{err}");
    // A repetition penalty needs a per-slot seen mask, which slots do not keep: refused.
    let penalty = GenerationConfig {
        sampling: SamplingParams {
            repetition_penalty: Some(1.2),
            ..SamplingParams::greedy()
        },
        ..GenerationConfig::greedy(4)
    };
    let err = generate_in_slots(&model, &prompts(), 2, &penalty)
        .unwrap_err()
        .to_string();
    assert!(err.contains("repetition_penalty"), "{err}");
}

/// CUDA graphs: the slot step recorded once and replayed gives what running it eagerly gives,
/// token for token. Skipped, saying so, only when libtorch sees no CUDA device
/// (`scripts/gpu-check.sh` runs it on a GPU machine).
#[test]
fn cuda_graph_replay_equals_the_eager_step_token_for_token() {
    if !tch::Cuda::is_available() {
        eprintln!("SKIPPED cuda_graph_replay_equals_the_eager_step_token_for_token: no CUDA device visible to libtorch");
        return;
    }
    assert!(
        grlhf_models::cuda_graph::available(),
        "a GPU is present but this build has no CUDA-graph shim"
    );
    let config: Config = serde_json::from_value(serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 97, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 10000.0, "tie_word_embeddings": false
    }))
    .unwrap();
    tch::manual_seed(7);
    let model = Qwen2ForCausalLM::new(&config, tch::Device::Cuda(0), Kind::Float).unwrap();
    let prompts = prompts();
    let free = generate(&model, &prompts, &GenerationConfig::greedy(12)).unwrap();
    let stops = vec![free[1].tokens[2], free[4].tokens[5]];
    for (label, base) in [
        ("greedy", GenerationConfig::greedy(12)),
        ("sampled with stops", sampled(21, stops)),
    ] {
        for poll_every in [Some(1), Some(4)] {
            let eager = GenerationConfig {
                max_new_tokens: 12,
                poll_every,
                ..base.clone()
            };
            let graphed = GenerationConfig {
                cuda_graphs: true,
                ..eager.clone()
            };
            let want = generate_in_slots(&model, &prompts, 3, &eager).unwrap();
            let got = generate_in_slots(&model, &prompts, 3, &graphed).unwrap();
            assert_same(
                &got,
                &want,
                &format!("{label}, poll {poll_every:?}, graph vs eager"),
            );
        }
    }
}

#[test]
fn cuda_graphs_are_refused_where_they_cannot_run() {
    let model = model();
    let config = GenerationConfig {
        cuda_graphs: true,
        ..GenerationConfig::greedy(4)
    };
    if model.device() == tch::Device::Cpu {
        let err = generate_in_slots(&model, &prompts(), 2, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cuda_graphs") && err.contains("Cpu"), "{err}");
    }
    let err = grlhf_models::cuda_graph::CudaGraph::capture(tch::Device::Cpu, None, || Ok(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("CUDA work"), "{err}");
}
