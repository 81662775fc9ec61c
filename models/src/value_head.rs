//! A scalar reward model: the Qwen2 decoder with a one-output linear head read at each
//! sequence's last real token (a Bradley–Terry reward model when trained on preference pairs).
//!
//! Parameter names match transformers' `Qwen2ForSequenceClassification` with `num_labels = 1`
//! (`model.*` plus `score.weight`, no bias), so such checkpoints load directly.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::generation::left_pad;
use crate::qwen2::{check_token_ids, linear_no_bias, write_checkpoint, PositionIds, Qwen2Model};
use crate::weights::{self, LoadOptions};

/// Qwen2 decoder + scalar value head.
#[derive(Debug)]
pub struct Qwen2RewardModel {
    vs: nn::VarStore,
    model: Qwen2Model,
    score: nn::Linear,
    config: Config,
}

impl Qwen2RewardModel {
    /// A randomly initialised reward model.
    pub fn new(config: &Config, device: Device, kind: Kind) -> Result<Qwen2RewardModel> {
        config.validate(&crate::config::in_memory())?;
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut model = Qwen2Model::new(&root / "model", config);
        let score = linear_no_bias(&root / "score", config.hidden_size, 1);
        crate::qwen2::init_like_transformers(&vs, config.initializer_range);
        vs.set_kind(kind);
        model.fuse_projections();
        Ok(Qwen2RewardModel {
            vs,
            model,
            score,
            config: config.clone(),
        })
    }

    /// Loads a `Qwen2ForSequenceClassification` checkpoint with one label.
    pub fn load(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Qwen2RewardModel> {
        let dir = dir.as_ref();
        let path = dir.join("config.json");
        let config = Config::from_file(&path)?;
        if let Some(labels) = &config.id2label {
            if labels.len() != 1 {
                return Err(ModelError::ConfigValue {
                    path,
                    field: "id2label".to_string(),
                    message: format!(
                        "a reward model has one output; this head has {} labels",
                        labels.len()
                    ),
                });
            }
        }
        let mut model = Qwen2RewardModel::new(&config, device, kind)?;
        let options = LoadOptions {
            // A reward model initialised from a causal LM may still carry the LM head.
            ignore: vec!["lm_head.weight".to_string()],
            ..Default::default()
        };
        weights::load_checkpoint(&mut model.vs, dir, &options)?;
        Ok(model)
    }

    /// Saves `config.json` and `model.safetensors` in transformers' layout.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let mut config = self.config.clone();
        config.architectures = vec!["Qwen2ForSequenceClassification".to_string()];
        config.id2label = Some(BTreeMap::from([("0".to_string(), "LABEL_0".to_string())]));
        let kind = self.model.embedding_weight().kind();
        write_checkpoint(dir.as_ref(), config, &self.vs, kind)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Scores `[batch]` (f32) for `input_ids` `[batch, seq]` under `attention_mask`
    /// (`[batch, seq]`, 1 = real); each row is read at its last real token.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, seq) = (input_ids.size()[0], input_ids.size()[1]);
        let device = input_ids.device();
        let positions = match attention_mask {
            Some(mask) => PositionIds::from_attention_mask(mask),
            None => PositionIds::sequential(batch, seq, 0, device),
        };
        let embeds = self.model.embed(input_ids)?;
        let hidden = self
            .model
            .forward_embeds(&embeds, &positions, attention_mask, None)?;
        let last = match attention_mask {
            Some(mask) => {
                let index = Tensor::arange(seq, (Kind::Int64, device)).unsqueeze(0)
                    * mask.to_kind(Kind::Int64);
                index.argmax(-1, false)
            }
            None => Tensor::full([batch], seq - 1, (Kind::Int64, device)),
        };
        let picked = hidden
            .gather(
                1,
                &last
                    .view([batch, 1, 1])
                    .expand([batch, 1, self.config.hidden_size], false),
                false,
            )
            .squeeze_dim(1);
        Ok(self
            .score
            .forward(&picked)
            .squeeze_dim(-1)
            .to_kind(Kind::Float))
    }

    /// Scores whole token sequences (left-padded into one batch).
    pub fn score_sequences(&self, sequences: &[Vec<i64>]) -> Result<Tensor> {
        if sequences.is_empty() || sequences.iter().any(Vec::is_empty) {
            return Err(ModelError::invalid(
                "sequences",
                "empty batch or empty sequence",
            ));
        }
        for (i, s) in sequences.iter().enumerate() {
            check_token_ids(s, self.config.vocab_size, &format!("sequence {i}"))?;
        }
        let width = sequences.iter().map(Vec::len).max().unwrap_or(0) as i64;
        let (ids, mask) = left_pad(sequences, width, self.vs.device())?;
        let padded = sequences.iter().any(|s| s.len() as i64 != width);
        self.forward(&ids, padded.then_some(&mask))
    }
}
