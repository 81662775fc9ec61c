//! The generation engine against full recomputation: KV cache with padded batches, returned
//! log-probs against teacher forcing, seeded repeatability, top-k / top-p exclusion, stop tokens.

mod support;

use grlhf_models::decode_loop::poll_interval;
use grlhf_models::generation::{decode, left_pad, Prefilled, TokenDecoder};
use grlhf_models::logprobs::response_logprobs;
use grlhf_models::sampling::{apply_repetition_penalty, filter_logits, sample};
use grlhf_models::{
    generate, Config, FinishReason, GeneratedSequence, GenerationConfig, PositionIds,
    Qwen2ForCausalLM, SamplingParams,
};
use proptest::prelude::*;
use support::*;
use tch::{Device, Kind, Tensor};

fn tiny_config() -> Config {
    serde_json::from_value(serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": 97, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 10000.0, "tie_word_embeddings": true
    }))
    .unwrap()
}

fn tiny_model() -> Qwen2ForCausalLM {
    tch::manual_seed(11);
    Qwen2ForCausalLM::new(&tiny_config(), device(), Kind::Float).unwrap()
}

fn prompts() -> Vec<Vec<i64>> {
    vec![
        vec![5, 17, 3],
        vec![9, 8, 7, 6, 5, 4, 3],
        vec![42],
        vec![1, 2, 3, 4, 5],
    ]
}

/// Unpadded, uncached logits of one sequence: `[len, vocab]`.
fn full_logits(model: &Qwen2ForCausalLM, tokens: &[i64]) -> Tensor {
    let input = Tensor::from_slice(tokens)
        .unsqueeze(0)
        .to_device(model.device());
    let positions = PositionIds::sequential(1, tokens.len() as i64, 0, model.device());
    tch::no_grad(|| model.forward(&input, &positions, None, None))
        .unwrap()
        .get(0)
}

#[test]
fn kv_cache_decoding_equals_full_recomputation_with_padding() {
    let model = tiny_model();
    let prompts = prompts();
    let steps = 6;
    // Fixed continuation tokens per row, fed one at a time through the cache.
    let continuation: Vec<Vec<i64>> = (0..prompts.len() as i64)
        .map(|r| (0..steps).map(|s| (r * 13 + s * 7) % 97).collect())
        .collect();
    let width = prompts.iter().map(Vec::len).max().unwrap() as i64;
    let (input, mask) = left_pad(&prompts, width, model.device()).unwrap();
    let mut cache = model
        .new_cache(prompts.len() as i64, width + steps)
        .unwrap();
    let mut step_logits = Vec::new();
    tch::no_grad(|| {
        let positions = PositionIds::from_attention_mask(&mask);
        let hidden = model
            .hidden_states(&input, &positions, Some(&mask), Some(&mut cache))
            .unwrap();
        step_logits.push(model.logits(&hidden.select(1, width - 1)).unwrap());
        for s in 0..steps {
            let tokens: Vec<i64> = continuation.iter().map(|c| c[s as usize]).collect();
            let pos: Vec<i64> = prompts.iter().map(|p| p.len() as i64 + s).collect();
            let hidden = model
                .hidden_states(
                    &Tensor::from_slice(&tokens)
                        .unsqueeze(1)
                        .to_device(model.device()),
                    &PositionIds::Text(
                        Tensor::from_slice(&pos)
                            .unsqueeze(1)
                            .to_device(model.device()),
                    ),
                    None,
                    Some(&mut cache),
                )
                .unwrap();
            step_logits.push(model.logits(&hidden.select(1, 0)).unwrap());
        }
    });
    assert_eq!(cache.len(), width + steps);
    for (row, prompt) in prompts.iter().enumerate() {
        let mut sequence = prompt.clone();
        sequence.extend(&continuation[row]);
        let full = full_logits(&model, &sequence);
        for (s, cached) in step_logits.iter().enumerate() {
            let want = full.get(prompt.len() as i64 - 1 + s as i64);
            let err = max_abs_diff(&cached.get(row as i64), &want);
            assert!(
                err < 1e-4,
                "row {row} step {s}: cached vs full differ by {err:e}"
            );
        }
    }
}

#[test]
fn generation_logprobs_equal_teacher_forced_logprobs() {
    let model = tiny_model();
    let prompts = prompts();
    for sampling in [
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.7,
            top_k: Some(20),
            top_p: Some(0.9),
            repetition_penalty: None,
        },
        SamplingParams {
            temperature: 1.3,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
        },
    ] {
        let config = GenerationConfig {
            max_new_tokens: 8,
            sampling: sampling.clone(),
            stop_token_ids: vec![],
            seed: 3,
            poll_every: None,
            cuda_graphs: false,
        };
        let out = generate(&model, &prompts, &config).unwrap();
        let responses: Vec<Vec<i64>> = out.iter().map(|g| g.tokens.clone()).collect();
        let forced = tch::no_grad(|| {
            response_logprobs(&model, &prompts, &responses, sampling.logprob_temperature())
        })
        .unwrap();
        for (row, g) in out.iter().enumerate() {
            let want = Tensor::from_slice(&g.logprobs);
            let got = forced
                .logprobs
                .get(row as i64)
                .narrow(0, 0, g.tokens.len() as i64);
            let err = max_abs_diff(&got, &want);
            assert!(err < 1e-4, "{sampling:?} row {row}: |Δlogprob| = {err:e}");
        }
    }
}

#[test]
fn teacher_forced_logprobs_are_differentiable() {
    let model = tiny_model();
    let out = response_logprobs(&model, &[vec![3, 4, 5]], &[vec![6, 7]], 1.0).unwrap();
    let loss = -(out.logprobs.sum(Kind::Float));
    loss.backward();
    let grads: f64 = model
        .var_store()
        .trainable_variables()
        .iter()
        .map(|v| v.grad().abs().sum(Kind::Float).double_value(&[]))
        .sum();
    assert!(grads > 0.0, "no gradient reached the parameters");
    assert_eq!(out.mask.sum(Kind::Float).double_value(&[]), 2.0);
}

#[test]
fn sampling_is_repeatable_for_a_seed() {
    let model = tiny_model();
    let config = GenerationConfig {
        max_new_tokens: 12,
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
        },
        stop_token_ids: vec![],
        seed: 1234,
        poll_every: None,
        cuda_graphs: false,
    };
    let a = generate(&model, &prompts(), &config).unwrap();
    let b = generate(&model, &prompts(), &config).unwrap();
    assert_eq!(a, b, "same seed, different samples");
    let c = generate(
        &model,
        &prompts(),
        &GenerationConfig {
            seed: 99,
            ..config.clone()
        },
    )
    .unwrap();
    assert_ne!(
        a.iter().map(|g| &g.tokens).collect::<Vec<_>>(),
        c.iter().map(|g| &g.tokens).collect::<Vec<_>>(),
        "a different seed should change some of 48 sampled tokens"
    );
}

#[test]
fn stop_tokens_end_rows_independently_with_finish_reasons() {
    let model = tiny_model();
    let prompts = prompts();
    // Find what greedy emits first for row 0, and make it a stop token.
    let free = generate(&model, &prompts, &GenerationConfig::greedy(5)).unwrap();
    assert!(free
        .iter()
        .all(|g| g.finish_reason == FinishReason::Length && g.tokens.len() == 5));
    let stop = free[0].tokens[0];
    let config = GenerationConfig {
        stop_token_ids: vec![stop],
        ..GenerationConfig::greedy(5)
    };
    let out = generate(&model, &prompts, &config).unwrap();
    for (g, f) in out.iter().zip(&free) {
        match f.tokens.iter().position(|&t| t == stop) {
            Some(i) => {
                assert_eq!(g.finish_reason, FinishReason::Stop);
                assert_eq!(
                    g.tokens,
                    f.tokens[..=i],
                    "stop token kept, nothing after it"
                );
            }
            None => {
                assert_eq!(g.finish_reason, FinishReason::Length);
                assert_eq!(g.tokens, f.tokens);
            }
        }
        assert_eq!(g.logprobs.len(), g.tokens.len());
    }
}

#[test]
fn bad_generation_inputs_are_errors() {
    let model = tiny_model();
    let greedy = GenerationConfig::greedy(3);
    let err = generate(&model, &[vec![1, 97]], &greedy)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("97") && err.contains("position 1") && err.contains("vocab_size = 97"),
        "{err}"
    );
    let err = generate(&model, &[vec![]], &greedy)
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt 0 is empty"), "{err}");
    let err = generate(&model, &[vec![1]], &GenerationConfig::greedy(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_new_tokens"), "{err}");
    let bad_p = GenerationConfig {
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.0),
            repetition_penalty: None,
        },
        ..greedy.clone()
    };
    assert!(generate(&model, &[vec![1]], &bad_p)
        .unwrap_err()
        .to_string()
        .contains("top_p"));
    let err = model
        .forward(
            &Tensor::from_slice(&[1i64, -4]).unsqueeze(0),
            &PositionIds::sequential(1, 2, 0, Device::Cpu),
            None,
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("-4"), "{err}");
}

/// Host-side reference for the set of tokens top-k / top-p may emit.
fn allowed(row: &[f32], params: &SamplingParams) -> Vec<bool> {
    let n = row.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
    let mut ok = vec![true; n];
    if let Some(k) = params.top_k {
        let kth = row[order[(k as usize).min(n) - 1]];
        for i in 0..n {
            ok[i] &= row[i] >= kth;
        }
    }
    if let Some(p) = params.top_p {
        let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let z: f64 = row.iter().map(|&x| ((x as f64) - max).exp()).sum();
        let mut before = 0.0;
        for &i in &order {
            // Generous slack: only tokens clearly past the nucleus must be excluded.
            if before > p + 1e-4 {
                ok[i] = false;
            }
            before += ((row[i] as f64) - max).exp() / z;
        }
    }
    ok
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn top_k_and_top_p_never_emit_excluded_tokens(
        seed in 0i64..10_000,
        top_k in proptest::option::of(1i64..12),
        top_p in proptest::option::of(0.05f64..1.0),
        temperature in 0.3f64..2.0,
    ) {
        tch::manual_seed(seed);
        let logits = Tensor::randn([4, 50], (Kind::Float, Device::Cpu)) * 3.0;
        let params = SamplingParams { temperature, top_k, top_p, repetition_penalty: None };
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|r| Vec::<f32>::try_from(logits.get(r) / temperature).unwrap())
            .collect();
        let filtered = filter_logits(&(&logits / temperature), &params);
        for trial in 0..16 {
            let uniforms = (Tensor::rand([4], (Kind::Double, Device::Cpu)) - 1.0).neg();
            let (tokens, _) = sample(&logits, &params, &uniforms);
            let tokens = Vec::<i64>::try_from(tokens).unwrap();
            for (r, &t) in tokens.iter().enumerate() {
                prop_assert!(allowed(&rows[r], &params)[t as usize],
                    "trial {trial}: row {r} emitted excluded token {t} ({params:?})");
                let kept = filtered.get(r as i64).get(t).double_value(&[]);
                prop_assert!(kept.is_finite(), "emitted a filtered token");
            }
        }
    }
}

#[test]
fn extreme_uniforms_stay_inside_the_filtered_set() {
    // u = 1 must land on the last kept token, never on a trailing excluded one.
    let logits = Tensor::from_slice(&[5.0f32, 4.0, -1.0, 3.0, -2.0]).unsqueeze(0);
    let params = SamplingParams {
        temperature: 1.0,
        top_k: Some(2),
        top_p: None,
        repetition_penalty: None,
    };
    for u in [1.0f64, 1e-12, 0.5] {
        let (tokens, _) = sample(&logits, &params, &Tensor::from_slice(&[u]));
        let t = tokens.int64_value(&[0]);
        assert!(t == 0 || t == 1, "u = {u} picked excluded token {t}");
    }
}

/// The prompt pass `generate` does, built from the public API: left-padded prompts through the
/// model into a fresh cache.
fn prefill(model: &Qwen2ForCausalLM, prompts: &[Vec<i64>], max_new: usize) -> Prefilled {
    let width = prompts.iter().map(Vec::len).max().unwrap() as i64;
    let (input, mask) = left_pad(prompts, width, model.device()).unwrap();
    let mut cache = model
        .new_cache(prompts.len() as i64, width + max_new as i64)
        .unwrap();
    let positions = PositionIds::from_attention_mask(&mask);
    let hidden = model
        .hidden_states(&input, &positions, Some(&mask), Some(&mut cache))
        .unwrap();
    Prefilled {
        logits: model.logits(&hidden.select(1, width - 1)).unwrap(),
        cache,
        next_positions: prompts.iter().map(|p| p.len() as i64).collect(),
        prompts: prompts.to_vec(),
    }
}

/// The sampling loop as it was before it went sync-free: uniforms drawn and uploaded, tokens and
/// log-probs read back, stop tokens checked and positions built on the host at every step.
fn stepwise_decode(
    model: &Qwen2ForCausalLM,
    prefilled: Prefilled,
    config: &GenerationConfig,
) -> Vec<GeneratedSequence> {
    use rand::Rng;
    use rand_chacha::rand_core::SeedableRng;
    let Prefilled {
        mut logits,
        mut cache,
        next_positions,
        prompts,
    } = prefilled;
    let device = model.device();
    let mut seen = prompts;
    let batch = next_positions.len();
    let mut rngs: Vec<rand_chacha::ChaCha8Rng> = (0..batch as u64)
        .map(|row| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
            rng.set_stream(row);
            rng
        })
        .collect();
    let mut out: Vec<GeneratedSequence> = (0..batch)
        .map(|_| GeneratedSequence {
            tokens: vec![],
            logprobs: vec![],
            finish_reason: FinishReason::Length,
        })
        .collect();
    let mut done = vec![false; batch];
    let max_new = config.max_new_tokens as i64;
    for step in 0..max_new {
        let uniforms: Vec<f64> = rngs.iter_mut().map(|r| 1.0 - r.random::<f64>()).collect();
        if let Some(penalty) = config.sampling.repetition_penalty {
            logits = apply_repetition_penalty(&logits, &seen, penalty);
        }
        let (tokens, logprobs) = sample(
            &logits,
            &config.sampling,
            &Tensor::from_slice(&uniforms).to_device(device),
        );
        let tokens_host = Vec::<i64>::try_from(tokens.to_device(Device::Cpu)).unwrap();
        let logprobs_host = Vec::<f32>::try_from(logprobs.to_device(Device::Cpu)).unwrap();
        for row in 0..batch {
            if done[row] {
                continue;
            }
            out[row].tokens.push(tokens_host[row]);
            out[row].logprobs.push(logprobs_host[row]);
            seen[row].push(tokens_host[row]);
            if config.stop_token_ids.contains(&tokens_host[row]) {
                out[row].finish_reason = FinishReason::Stop;
                done[row] = true;
            }
        }
        if step + 1 == max_new || done.iter().all(|&d| d) {
            break;
        }
        let positions: Vec<i64> = next_positions.iter().map(|p| p + step).collect();
        logits = model
            .decode_step(
                &tokens.unsqueeze(1),
                &Tensor::from_slice(&positions).to_device(device),
                &mut cache,
            )
            .unwrap();
    }
    out
}

#[test]
fn sync_free_loop_equals_the_stepwise_loop_bit_for_bit() {
    let model = tiny_model();
    let prompts = prompts();
    let sampled = |top_k, top_p, repetition_penalty| SamplingParams {
        temperature: 0.8,
        top_k,
        top_p,
        repetition_penalty,
    };
    // Tokens greedy decoding emits early on, used as stop tokens so rows finish at different
    // steps (and the whole batch finishes before max_new_tokens in some cases).
    let free = generate(&model, &prompts, &GenerationConfig::greedy(10)).unwrap();
    let early_stops = vec![free[0].tokens[2], free[2].tokens[0]];
    let all_stop: Vec<i64> = free.iter().map(|g| g.tokens[1]).collect();
    let cases = [
        ("greedy", SamplingParams::greedy(), vec![]),
        (
            "greedy with stops",
            SamplingParams::greedy(),
            early_stops.clone(),
        ),
        (
            "greedy, every row stops",
            SamplingParams::greedy(),
            all_stop.clone(),
        ),
        ("temperature", sampled(None, None, None), vec![]),
        (
            "top-k, top-p",
            sampled(Some(7), Some(0.9), None),
            early_stops.clone(),
        ),
        (
            "repetition penalty",
            sampled(None, Some(0.95), Some(1.3)),
            all_stop,
        ),
        (
            "greedy penalty",
            SamplingParams {
                repetition_penalty: Some(1.5),
                ..SamplingParams::greedy()
            },
            early_stops,
        ),
    ];
    for (label, sampling, stop_token_ids) in cases {
        // Reading back every step (the CPU's default), every 3rd, and every 8th (a GPU's):
        // rows that finish between reads keep decoding, and their extra tokens are dropped.
        for (seed, poll_every) in [(0u64, None), (7, Some(3)), (3, Some(8))] {
            let config = GenerationConfig {
                max_new_tokens: 10,
                sampling: sampling.clone(),
                stop_token_ids: stop_token_ids.clone(),
                seed,
                poll_every,
                cuda_graphs: false,
            };
            let (new, old) = tch::no_grad(|| {
                (
                    decode(&model, prefill(&model, &prompts, 10), &config).unwrap(),
                    stepwise_decode(&model, prefill(&model, &prompts, 10), &config),
                )
            });
            assert_eq!(
                new, old,
                "{label}, seed {seed}, poll {poll_every:?}: the loops differ"
            );
            assert_eq!(new, generate(&model, &prompts, &config).unwrap(), "{label}");
        }
    }
    // The stops above really end rows early, and once the whole batch.
    let config = GenerationConfig {
        stop_token_ids: free.iter().map(|g| g.tokens[1]).collect(),
        ..GenerationConfig::greedy(10)
    };
    let out = generate(&model, &prompts, &config).unwrap();
    assert!(out
        .iter()
        .all(|g| g.finish_reason == FinishReason::Stop && g.tokens.len() <= 2));
}

#[test]
fn finished_batches_poll_rarely_on_devices_and_every_step_on_the_cpu() {
    assert_eq!(poll_interval(Device::Cpu), 1);
    assert!(poll_interval(Device::Cuda(0)) > 1);
}

#[test]
fn a_bad_decode_request_is_an_error_not_a_panic() {
    let model = tiny_model();
    let run = |config: GenerationConfig| {
        tch::no_grad(|| decode(&model, prefill(&model, &[vec![1, 2]], 4), &config).map(|_| ()))
    };
    let zero = run(GenerationConfig::greedy(0)).unwrap_err().to_string();
    assert!(zero.contains("max_new_tokens"), "{zero}");
    let never = GenerationConfig {
        poll_every: Some(0),
        ..GenerationConfig::greedy(3)
    };
    assert!(run(never).unwrap_err().to_string().contains("poll_every"));
    let outside = GenerationConfig {
        stop_token_ids: vec![97],
        ..GenerationConfig::greedy(3)
    };
    let err = run(outside).unwrap_err().to_string();
    assert!(
        err.contains("stop_token_ids") && err.contains("97"),
        "{err}"
    );
    // A hand-built prompt pass whose prompt ids are outside the vocabulary, with a penalty
    // (which indexes a mask by them).
    let mut bad = prefill(&model, &[vec![1, 2]], 4);
    bad.prompts = vec![vec![1, 500]];
    let penalty = GenerationConfig {
        sampling: SamplingParams {
            repetition_penalty: Some(1.2),
            ..SamplingParams::greedy()
        },
        ..GenerationConfig::greedy(3)
    };
    let err = tch::no_grad(|| decode(&model, bad, &penalty))
        .unwrap_err()
        .to_string();
    assert!(err.contains("500"), "{err}");
}
