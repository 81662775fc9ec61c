//! Continuous batching: decode many requests through a fixed number of slots, and give a slot
//! whose sequence finished to the next waiting request at once.
//!
//! A plain batch ([`crate::decode_loop`]) decodes every row until its longest row ends, so when
//! response lengths vary, most of the late steps are spent on rows that have already stopped.
//! Here `slots` rows decode together; each request is prefilled alone when a slot frees up
//! ([`Admitted`]: its own prompt pass, a batch-1 cache), copied into that slot
//! ([`crate::slot_cache::SlotCache::fill`]), and decoded with the others from the next step.
//!
//! Sampling keeps the contract of [`crate::generation`]: request `i` draws one uniform per step
//! from ChaCha8 stream `i` of the seed, whichever slot it lands in and whenever. So request `i`
//! samples what row `i` of one plain batch of all requests samples (the logits agree to float
//! rounding: a prompt prefilled alone vs. left-padded in a batch).
//!
//! Like the plain loop, a step does not wait for the device: uniforms live on the device (one
//! row per slot, written when a request is admitted) and are picked by a per-slot step counter,
//! positions advance on the device, and the host reads the sampled tokens only every
//! [`crate::decode_loop::poll_interval`] steps, when it also retires finished requests and
//! admits waiting ones. A slot keeps decoding (discarded tokens) between its last token and that
//! read, so the cache's capacity includes that slack.

use std::collections::VecDeque;
use std::rc::Rc;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::cuda_graph::{self, CudaGraph};
use crate::decode_loop::checked_poll_every;
use crate::error::{ModelError, Result};
use crate::generation_io::{FinishReason, GeneratedSequence, GenerationConfig};
use crate::kv_cache::KvCache;
use crate::sampling::{sample, SamplingParams};
use crate::slot_cache::SlotCache;

/// A model that decodes one text token per slot.
pub trait SlotDecoder {
    fn device(&self) -> Device;

    /// An empty slot cache for this model.
    fn new_slot_cache(&self, slots: i64, capacity: i64) -> Result<SlotCache>;

    /// Logits `[slots, vocab]` for one token per slot (`tokens`: `[slots, 1]`) at the given
    /// rotary positions (`[slots]` i64 on the device), appended to each slot.
    fn decode_slots(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        cache: &mut SlotCache,
    ) -> Result<Tensor>;
}

/// One request's prompt pass: what it takes to put the request in a slot.
#[derive(Debug)]
pub struct Admitted {
    /// `[1, vocab]` logits at the prompt's last position.
    pub logits: Tensor,
    /// The prompt's keys and values (batch 1, no padding). Shared: the samples of one prompt
    /// are admitted from one prompt pass (the slot copies it).
    pub cache: Rc<KvCache>,
    /// Rotary position of the first generated token.
    pub next_position: i64,
}

impl Admitted {
    /// Another handle on the same prompt pass (for another sample of the same prompt).
    pub fn share(&self) -> Admitted {
        Admitted {
            logits: self.logits.shallow_clone(),
            cache: Rc::clone(&self.cache),
            next_position: self.next_position,
        }
    }
}

/// A request in a slot: which one, and its tokens the host has read so far.
#[derive(Debug, Clone)]
struct Occupant {
    request: usize,
    sequence: GeneratedSequence,
}

/// The device-side state of every slot, and the host's view of who is where.
struct Slots {
    cache: SlotCache,
    logits: Tensor,
    positions: Tensor,
    /// `[slots, max_new]` f64: the occupant's uniforms for each of its steps.
    uniforms: Tensor,
    /// `[slots]` i64: the occupant's next step (indexes `uniforms`).
    steps: Tensor,
    /// `[slots]`: the tokens and log-probs the last step sampled.
    tokens: Tensor,
    logprobs: Tensor,
    /// The last index of `uniforms`' second dimension.
    last_step: i64,
    occupants: Vec<Option<Occupant>>,
}

/// Decodes `requests` requests through `slots` slots (see the module docs). `admit(i)` gives
/// request `i`'s prompt pass; it is called once per request, in order, as slots free up.
/// `longest_prompt` bounds the prompt passes' lengths (it sizes the cache). Returns one
/// sequence per request, in request order.
pub fn decode_in_slots(
    model: &impl SlotDecoder,
    requests: usize,
    longest_prompt: usize,
    mut admit: impl FnMut(usize) -> Result<Admitted>,
    slots: usize,
    config: &GenerationConfig,
) -> Result<Vec<GeneratedSequence>> {
    if slots == 0 {
        return Err(ModelError::invalid("slots", "must be at least 1"));
    }
    if config.sampling.repetition_penalty.is_some() {
        // It needs a per-slot seen-token mask reset on every admission; not built.
        return Err(ModelError::invalid(
            "repetition_penalty",
            "not supported with continuous batching (slots); decode as one batch instead",
        ));
    }
    let device = model.device();
    let slots = slots.min(requests.max(1));
    let max_new = config.max_new_tokens;
    // Stop ids are checked against the vocabulary by the callers' request checks.
    let poll_every = checked_poll_every(config, None, device)?;
    if config.cuda_graphs && !(matches!(device, Device::Cuda(_)) && cuda_graph::available()) {
        return Err(ModelError::invalid(
            "cuda_graphs",
            format!(
                "needs a CUDA device and a build with CUDA-graph support (device {device:?}, \
                 support {})",
                cfg!(grlhf_cuda_graphs)
            ),
        ));
    }
    // A slot may run `poll_every - 1` steps past its last token before the host sees it, and
    // every step decodes the token it sampled (one more write after the last one).
    let capacity = (longest_prompt + max_new + poll_every + 1) as i64;
    let mut state = Slots {
        cache: model.new_slot_cache(slots as i64, capacity)?,
        logits: Tensor::new(),
        positions: Tensor::f_zeros([slots as i64], (Kind::Int64, device))?,
        uniforms: Tensor::f_ones([slots as i64, max_new as i64], (Kind::Double, device))?,
        steps: Tensor::f_zeros([slots as i64], (Kind::Int64, device))?,
        tokens: Tensor::f_zeros([slots as i64], (Kind::Int64, device))?,
        logprobs: Tensor::f_zeros([slots as i64], (Kind::Float, device))?,
        last_step: (max_new as i64 - 1).max(0),
        occupants: vec![None; slots],
    };
    let mut waiting: VecDeque<usize> = (0..requests).collect();
    let mut out: Vec<Option<GeneratedSequence>> = vec![None; requests];
    let mut window: Vec<(Tensor, Tensor)> = Vec::with_capacity(poll_every);
    let mut graph: Option<CudaGraph> = None;
    let mut steps_run = 0usize;
    loop {
        admit_waiting(&mut state, &mut waiting, &mut admit, config)?;
        if state.occupants.iter().all(Option::is_none) {
            break;
        }
        match &graph {
            Some(graph) => state.replay(graph)?,
            // The first step runs eagerly on the capture stream (the warm-up), the second is
            // recorded, then replayed, and later ones replay.
            None if config.cuda_graphs && steps_run > 0 => {
                let (captured, ()) =
                    CudaGraph::capture(device, None, || state.step(model, &config.sampling))?;
                // Capture recorded the step without running it.
                state.cache.uncount_step();
                state.replay(&captured)?;
                graph = Some(captured);
            }
            None if config.cuda_graphs => {
                cuda_graph::warm_up(device, || state.step(model, &config.sampling))?
            }
            None => state.step(model, &config.sampling)?,
        }
        steps_run += 1;
        window.push((state.tokens.copy(), state.logprobs.copy()));
        let must_read = window.len() == poll_every || soonest_end(&state, max_new) <= window.len();
        if must_read {
            retire_finished(&mut state, &mut window, config, &mut out)?;
            if state.occupants.iter().all(Option::is_none) && waiting.is_empty() {
                break;
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.ok_or_else(|| ModelError::invalid("slots", format!("request {i} was never decoded")))
        })
        .collect()
}

/// Steps until the first occupant reaches `max_new` tokens (counting tokens not yet read).
fn soonest_end(state: &Slots, max_new: usize) -> usize {
    state
        .occupants
        .iter()
        .flatten()
        .map(|o| max_new - o.sequence.tokens.len())
        .min()
        .unwrap_or(0)
}

/// Fills every free slot with the next waiting request.
fn admit_waiting(
    state: &mut Slots,
    waiting: &mut VecDeque<usize>,
    admit: &mut impl FnMut(usize) -> Result<Admitted>,
    config: &GenerationConfig,
) -> Result<()> {
    let free: Vec<usize> = (0..state.occupants.len())
        .filter(|&slot| state.occupants[slot].is_none())
        .collect();
    for slot in free {
        let Some(request) = waiting.pop_front() else {
            break;
        };
        let admitted = admit(request)?;
        let s = slot as i64;
        state.cache.fill(s, &admitted.cache)?;
        if !state.logits.defined() {
            // The first admission sets the logits' dtype and vocabulary width.
            let shape = [state.occupants.len() as i64, admitted.logits.size()[1]];
            state.logits = Tensor::f_zeros(shape, (admitted.logits.kind(), state.device()))?;
        }
        state.logits.get(s).f_copy_(&admitted.logits.get(0))?;
        let _ = state.positions.get(s).f_fill_(admitted.next_position)?;
        let uniforms = request_uniforms(config, request);
        let uniforms = Tensor::from_slice(&uniforms).to_device(state.device());
        state.uniforms.get(s).f_copy_(&uniforms)?;
        let _ = state.steps.get(s).f_fill_(0)?;
        state.occupants[slot] = Some(Occupant {
            request,
            sequence: empty_sequence(),
        });
    }
    Ok(())
}

/// Reads the window's tokens, hands them to their requests, and frees the slots of requests
/// that stopped or reached `max_new_tokens`.
fn retire_finished(
    state: &mut Slots,
    window: &mut Vec<(Tensor, Tensor)>,
    config: &GenerationConfig,
    out: &mut [Option<GeneratedSequence>],
) -> Result<()> {
    let steps = window.len();
    let (tokens, logprobs): (Vec<Tensor>, Vec<Tensor>) = window.drain(..).unzip();
    let host = |t: &[Tensor]| Tensor::stack(t, 1).flatten(0, -1).to_device(Device::Cpu);
    let tokens = Vec::<i64>::try_from(host(&tokens))?;
    let logprobs = Vec::<f32>::try_from(host(&logprobs))?;
    for (slot, place) in state.occupants.iter_mut().enumerate() {
        let Some(occupant) = place.as_mut() else {
            continue;
        };
        let sequence = &mut occupant.sequence;
        let mut finished = None;
        for step in 0..steps {
            let (token, logprob) = (tokens[slot * steps + step], logprobs[slot * steps + step]);
            sequence.tokens.push(token);
            sequence.logprobs.push(logprob);
            if config.stop_token_ids.contains(&token) {
                finished = Some(FinishReason::Stop);
            } else if sequence.tokens.len() == config.max_new_tokens {
                finished = Some(FinishReason::Length);
            }
            if finished.is_some() {
                break;
            }
        }
        if let Some(reason) = finished {
            let mut done = place.take().expect("occupied");
            done.sequence.finish_reason = reason;
            out[done.request] = Some(done.sequence);
            // An idle slot keeps decoding (shapes are fixed); from length 0 it cannot outgrow
            // the capacity before the last occupant ends.
            state.cache.reset(slot as i64)?;
        }
    }
    Ok(())
}

/// Request `i`'s uniforms: one per step from ChaCha8 stream `i` (all ones when greedy, unused).
fn request_uniforms(config: &GenerationConfig, request: usize) -> Vec<f64> {
    if config.sampling.is_greedy() {
        return vec![1.0; config.max_new_tokens];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(request as u64);
    (0..config.max_new_tokens)
        .map(|_| 1.0 - rng.random::<f64>())
        .collect()
}

fn empty_sequence() -> GeneratedSequence {
    GeneratedSequence {
        tokens: Vec::new(),
        logprobs: Vec::new(),
        finish_reason: FinishReason::Length,
    }
}

impl Slots {
    fn device(&self) -> Device {
        self.positions.device()
    }

    /// One step, entirely on the device and in place (what a CUDA graph records): sample a
    /// token per slot from `logits`, then decode those tokens into the next `logits`.
    fn step(&mut self, model: &impl SlotDecoder, sampling: &SamplingParams) -> Result<()> {
        let uniforms = self
            .uniforms
            .gather(1, &self.steps.unsqueeze(1), false)
            .squeeze_dim(1);
        let (tokens, logprobs) = sample(&self.logits, sampling, &uniforms);
        self.tokens.f_copy_(&tokens)?;
        self.logprobs.f_copy_(&logprobs)?;
        let _ = self.steps.g_add_scalar_(1).clamp_max_(self.last_step);
        let logits =
            model.decode_slots(&self.tokens.unsqueeze(1), &self.positions, &mut self.cache)?;
        self.logits.f_copy_(&logits)?;
        let _ = self.positions.g_add_scalar_(1);
        Ok(())
    }

    /// The captured step again, with the host's view of the slot lengths kept in step.
    fn replay(&mut self, graph: &CudaGraph) -> Result<()> {
        self.cache.check_room()?;
        graph.replay()?;
        self.cache.count_step();
        Ok(())
    }
}
