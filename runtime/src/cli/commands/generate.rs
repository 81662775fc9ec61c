//! `grlhf generate`: continuations of a prompt (token ids or text, optionally with images) from
//! a checkpoint, greedy or sampled, printed as text or JSON.

use crate::generate::{self, GenerateRequest, PromptInput};
use crate::token_list;
use anyhow::Result;
use grlhf_models::device::parse_device;
use grlhf_models::generation_config::GenerationDefaults;
use grlhf_models::SamplingParams;

use crate::cli::GenerateArgs;

/// Generates and prints the continuations.
pub fn generate(args: GenerateArgs) -> Result<()> {
    let prompt = match (&args.tokens, &args.prompt) {
        (Some(tokens), _) => PromptInput::Tokens(token_list::parse_token_list(tokens)?),
        (None, Some(text)) => PromptInput::Text {
            text: text.clone(),
            chat: args.chat,
            system: args.system.clone(),
        },
        (None, None) => unreachable!("clap requires --tokens or --prompt"),
    };
    let sampling = sampling(&args)?;
    let request = GenerateRequest {
        model_dir: args.model,
        prompt,
        images: args.images,
        num_samples: args.num_samples,
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop_token_ids: if args.ignore_eos {
            Some(Vec::new())
        } else {
            args.stop_token
        },
        seed: args.seed,
        device: parse_device(&args.device)?,
        kind: args.dtype.kind(),
    };
    let output = generate::run(&request)?;
    if args.json {
        println!("{}", serde_json::to_string(&output)?);
    } else {
        println!("{}", output.render());
    }
    Ok(())
}

/// Decoding: the checkpoint's generation_config.json (else greedy), overridden flag by flag.
fn sampling(args: &GenerateArgs) -> Result<SamplingParams> {
    let defaults = GenerationDefaults::from_dir(&args.model)?
        .map(|d| d.sampling())
        .unwrap_or_else(SamplingParams::greedy);
    let mut params = if args.greedy {
        SamplingParams {
            repetition_penalty: defaults.repetition_penalty,
            ..SamplingParams::greedy()
        }
    } else if let Some(temperature) = args.temperature {
        let sampled = !defaults.is_greedy();
        SamplingParams {
            temperature,
            top_k: args.top_k.or(defaults.top_k.filter(|_| sampled)),
            top_p: args.top_p.or(defaults.top_p.filter(|_| sampled)),
            repetition_penalty: defaults.repetition_penalty,
        }
    } else if defaults.is_greedy() && (args.top_k.is_some() || args.top_p.is_some()) {
        anyhow::bail!("--top-k / --top-p need --temperature (sampling); greedy ignores them")
    } else {
        SamplingParams {
            top_k: args.top_k.or(defaults.top_k),
            top_p: args.top_p.or(defaults.top_p),
            ..defaults
        }
    };
    if let Some(penalty) = args.repetition_penalty {
        params.repetition_penalty = (penalty != 1.0).then_some(penalty);
    }
    params.validate()?;
    Ok(params)
}
