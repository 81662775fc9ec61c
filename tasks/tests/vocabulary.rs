//! The world's tokenizer covers everything the world writes and decodes it back exactly.

use grlhf_tasks::candidates::candidates;
use grlhf_tasks::grm_format::{
    grm_user_message, policy_user_message, GRM_SYSTEM_PROMPT, POLICY_SYSTEM_PROMPT,
};
use grlhf_tasks::vocabulary::{self, special_token_id, SPECIAL_TOKENS, UNKNOWN};
use grlhf_tasks::world::{SplitRecords, SplitSizes, WorldConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The Qwen2 chat format, as the models crate renders it.
fn chat(system: &str, user: &str, assistant: &str) -> String {
    format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{assistant}<|im_end|>\n")
}

#[test]
fn every_text_of_the_world_encodes_without_unknowns_and_decodes_exactly() {
    let tokenizer = vocabulary::tokenizer();
    let unk = tokenizer.token_to_id(UNKNOWN).unwrap();
    let mut texts = vec![
        chat("You are a helpful assistant.", "describe the image.", ""),
        chat(
            GRM_SYSTEM_PROMPT,
            &grm_user_message("describe the image.", "it is red.", "it is a blue circle."),
            "\\boxed{10,1}",
        ),
    ];
    let config = WorldConfig {
        seed: 1,
        sizes: SplitSizes::scaled(700),
        ..WorldConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for split in config.splits() {
        match config.generate(split).unwrap() {
            SplitRecords::Prompts(rs) => {
                for r in rs {
                    let world = r.world.unwrap();
                    for c in candidates(&world.scene, &world.task, &mut rng) {
                        texts.push(chat(
                            POLICY_SYSTEM_PROMPT,
                            &policy_user_message(&r.question),
                            &c.text,
                        ));
                    }
                }
            }
            SplitRecords::Pairs(rs) => {
                for r in rs {
                    let user = grm_user_message(&r.question, &r.response_1, &r.response_2);
                    texts.push(chat(
                        GRM_SYSTEM_PROMPT,
                        &user,
                        r.judgment.as_deref().unwrap_or(""),
                    ));
                }
            }
            SplitRecords::Sft(rs) => {
                for r in rs {
                    texts.push(chat(
                        POLICY_SYSTEM_PROMPT,
                        &policy_user_message(&r.question),
                        &r.answer,
                    ));
                }
            }
        }
    }
    assert!(texts.len() > 5000);
    let mut longest = 0;
    for text in &texts {
        let encoding = tokenizer.encode(text.as_str(), false).unwrap();
        let ids = encoding.get_ids();
        if let Some(i) = ids.iter().position(|&id| id == unk) {
            let (start, end) = encoding.get_offsets()[i];
            panic!(
                "`{}` is outside the vocabulary in {text:?}",
                &text[start..end]
            );
        }
        assert_eq!(&tokenizer.decode(ids, false).unwrap(), text);
        longest = longest.max(ids.len());
    }
    // Short sequences keep CPU training fast; the longest is a GRM prompt with a judgment.
    assert!(longest < 200, "longest text is {longest} tokens");
}

#[test]
fn special_tokens_have_qwen2_vl_names_at_fixed_ids() {
    let tokenizer = vocabulary::tokenizer();
    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tokenizer.token_to_id(token), Some(id as u32));
        assert_eq!(special_token_id(token), Some(id as u32));
    }
    let ids = tokenizer
        .encode(
            "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>what",
            false,
        )
        .unwrap();
    assert_eq!(ids.get_ids()[..4], [9, 12, 12, 10]);
    // Words outside the vocabulary become <unk> rather than vanishing.
    let ids = tokenizer.encode("the zebra is red", false).unwrap();
    assert_eq!(ids.get_ids().len(), 4);
    assert_eq!(ids.get_ids()[1], tokenizer.token_to_id(UNKNOWN).unwrap());
    // Decoding can drop the special tokens.
    let ids = tokenizer
        .encode("<|im_start|>it is red.<|im_end|>", false)
        .unwrap();
    assert_eq!(tokenizer.decode(ids.get_ids(), true).unwrap(), "it is red.");
}

#[test]
fn the_tokenizer_file_round_trips_through_the_tokenizers_library() {
    let file = vocabulary::tokenizer_file();
    let again: tokenizers::Tokenizer = file.parse().unwrap();
    assert_eq!(again.get_vocab_size(true), vocabulary::tokens().len());
    assert_eq!(again.to_string(true).unwrap(), file);
    assert!(
        vocabulary::tokens().len() < 600,
        "a closed vocabulary stays small"
    );
}
