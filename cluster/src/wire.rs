//! What crosses the actor link between a head and its workers: small serde envelopes.
//!
//! Every message is an [`Envelope`] — wire protocol version, run id and the sender's
//! incarnation around a body — encoded as JSON into the one byte payload ractor_cluster carries
//! for us ([`crate::role_host::RoleHostMsg`]). Decoding is ours, not a
//! `BytesConvertable` impl: ractor allows those to panic on bad bytes, while here a malformed,
//! foreign-protocol or other-run message is an error that names what is wrong.
//!
//! Prompts travel as [`WirePrompt`] (their image as PNG bytes); rollouts as they are
//! ([`grlhf_actors::protocol::Rollout`] is serde already).

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;

use grlhf_actors::eval_engine::EvalStats;
use grlhf_actors::prompt_source::PromptSpec;
use grlhf_actors::protocol::{JudgeDetails, PromptItem, Rollout, RolloutGroup};
use grlhf_actors::rollout_engine::{GeneratedGroup, GeneratorConfig};
use grlhf_models::image_processor::RgbImage;
use grlhf_tasks::records::WorldKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::handshake::{RunIdentity, PROTOCOL_VERSION};
use crate::weight_buckets::BucketLayout;

/// The largest envelope sent over the actor link. ractor_cluster refuses inbound frames over
/// 16 MiB ([`ractor_cluster::DEFAULT_MAX_INBOUND_FRAME_SIZE`]) by closing the whole session, so
/// grlhf refuses an oversize message itself, before sending it, with an error that says what to
/// change; the margin covers ractor_cluster's own framing.
pub const MAX_ENVELOPE_BYTES: usize = 12 << 20;

/// A body with the fields every grlhf message carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub protocol: u32,
    pub run_id: String,
    /// The sender's incarnation (a restarted process has a newer one).
    pub incarnation: u64,
    pub body: T,
}

impl<T: Serialize> Envelope<T> {
    pub fn new(run_id: &str, incarnation: u64, body: T) -> Envelope<T> {
        Envelope {
            protocol: PROTOCOL_VERSION,
            run_id: run_id.to_string(),
            incarnation,
            body,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("grlhf's wire types serialise to JSON")
    }

    /// [`Envelope::encode`], refused over [`MAX_ENVELOPE_BYTES`]; `what` names the message
    /// and `fix` what would make it smaller.
    pub fn encode_within_limit(&self, what: &str, fix: &str) -> Result<Vec<u8>, String> {
        let bytes = self.encode();
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(format!(
                "{what} encodes to {:.1} MiB, over the actor link's limit of {} MiB ({fix})",
                bytes.len() as f64 / (1 << 20) as f64,
                MAX_ENVELOPE_BYTES >> 20
            ));
        }
        Ok(bytes)
    }
}

impl<T: DeserializeOwned> Envelope<T> {
    /// Decodes a payload from `peer`, refusing another protocol version or another run.
    pub fn decode(bytes: &[u8], run_id: &str, peer: &str) -> Result<Envelope<T>, ClusterError> {
        #[derive(Deserialize)]
        struct Head {
            protocol: u32,
            run_id: String,
        }
        let malformed = |e: serde_json::Error| ClusterError::Malformed {
            peer: peer.to_string(),
            message: format!("not a grlhf envelope: {e}"),
        };
        let head: Head = serde_json::from_slice(bytes).map_err(malformed)?;
        if head.protocol != PROTOCOL_VERSION {
            return Err(ClusterError::Mismatch {
                peer: peer.to_string(),
                field: "protocol",
                ours: PROTOCOL_VERSION.to_string(),
                theirs: head.protocol.to_string(),
            });
        }
        if head.run_id != run_id {
            return Err(ClusterError::Mismatch {
                peer: peer.to_string(),
                field: "run_id",
                ours: run_id.to_string(),
                theirs: head.run_id,
            });
        }
        serde_json::from_slice(bytes).map_err(malformed)
    }
}

/// A prompt as a remote engine needs it: the chat turns and the image (PNG).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WirePrompt {
    pub id: String,
    pub system: String,
    pub user: String,
    pub image_png: Option<Vec<u8>>,
}

impl WirePrompt {
    /// The chat turns and the image (encoded as PNG) of prompt `id`.
    fn new(
        id: &str,
        system: &str,
        user: &str,
        image: Option<&RgbImage>,
    ) -> Result<WirePrompt, ClusterError> {
        Ok(WirePrompt {
            id: id.to_string(),
            system: system.to_string(),
            user: user.to_string(),
            image_png: image.map(|i| encode_png(i, id)).transpose()?,
        })
    }

    pub fn from_spec(spec: &PromptSpec) -> Result<WirePrompt, ClusterError> {
        let image = spec.image.as_deref();
        WirePrompt::new(&spec.id, &spec.system, &spec.user, image)
    }

    /// The spec a generation engine reads (the fields only judges use stay empty: judging
    /// happens on the head, which keeps the original).
    pub fn into_spec(self, peer: &str) -> Result<PromptSpec, ClusterError> {
        let image = match &self.image_png {
            Some(png) => Some(Arc::new(decode_png(png, &self.id, peer)?)),
            None => None,
        };
        Ok(PromptSpec {
            id: self.id,
            question: String::new(),
            system: self.system,
            user: self.user,
            image,
            reference: None,
            world: None,
        })
    }
}

fn encode_png(image: &RgbImage, id: &str) -> Result<Vec<u8>, ClusterError> {
    let buffer = image::RgbImage::from_raw(image.width, image.height, image.pixels.clone())
        .ok_or_else(|| ClusterError::Malformed {
            peer: "this process".into(),
            message: format!("prompt {id}: image buffer does not match its size"),
        })?;
    let mut png = Vec::new();
    buffer
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ClusterError::Malformed {
            peer: "this process".into(),
            message: format!("prompt {id}: encoding its image as PNG: {e}"),
        })?;
    Ok(png)
}

fn decode_png(png: &[u8], id: &str, peer: &str) -> Result<RgbImage, ClusterError> {
    let malformed = |message: String| ClusterError::Malformed {
        peer: peer.to_string(),
        message: format!("prompt {id}: {message}"),
    };
    let decoded = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|e| malformed(format!("image is not a PNG: {e}")))?
        .to_rgb8();
    RgbImage::from_rgb(decoded.width(), decoded.height(), decoded.into_raw())
        .map_err(|e| malformed(e.to_string()))
}

/// A generated group as a remote judge needs it: the prompt (with what rule rewards read: the
/// reference and the world's key), the chat turns, the responses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireGroup {
    pub uid: u64,
    pub prompt: WirePrompt,
    pub question: String,
    pub reference: Option<String>,
    pub world: Option<WorldKey>,
    pub admitted_at: u64,
    pub prompt_tokens: Vec<i64>,
    pub rollouts: Vec<Rollout>,
    pub policy_version: u64,
    pub generator: String,
    pub generate_ms: f64,
    pub temperature: f64,
}

impl WireGroup {
    pub fn from_group(group: &RolloutGroup) -> Result<WireGroup, ClusterError> {
        let item = &group.prompt;
        let image = item.image.as_deref();
        Ok(WireGroup {
            uid: item.uid,
            prompt: WirePrompt::new(&item.id, &group.system, &group.user, image)?,
            question: item.question.clone(),
            reference: item.reference.clone(),
            world: item.world.as_deref().cloned(),
            admitted_at: item.admitted_at,
            prompt_tokens: group.prompt_tokens.clone(),
            rollouts: group.rollouts.clone(),
            policy_version: group.policy_version,
            generator: group.generator.clone(),
            generate_ms: group.generate_ms,
            temperature: group.temperature,
        })
    }

    pub fn into_group(self, peer: &str) -> Result<RolloutGroup, ClusterError> {
        let (system, user) = (self.prompt.system.clone(), self.prompt.user.clone());
        let spec = self.prompt.into_spec(peer)?;
        Ok(RolloutGroup {
            prompt: Arc::new(PromptItem {
                uid: self.uid,
                id: spec.id,
                question: self.question,
                image: spec.image,
                reference: self.reference,
                world: self.world.map(Arc::new),
                admitted_at: self.admitted_at,
            }),
            system,
            user,
            prompt_tokens: self.prompt_tokens,
            rollouts: self.rollouts,
            policy_version: self.policy_version,
            generator: self.generator,
            generate_ms: self.generate_ms,
            temperature: self.temperature,
        })
    }
}

/// What a head asks of a role host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HostRequest {
    /// Are you alive (and which incarnation are you)? Answered at once, even mid-batch.
    Ping,
    /// Serve `role` (`generator-0`, `judge-0-1`) for this run; an engine takes its weights
    /// from `weights` (the head's weight server for it). Refused when the identity differs,
    /// naming the field.
    Attach {
        identity: RunIdentity,
        role: String,
        weights: Option<SocketAddr>,
    },
    /// One generation batch, after applying weights version `weights_version` of the attached
    /// weight server (0: the engine's own weights), whose digest must be `weights_digest`: the
    /// weight stream is checked against what this link says.
    Generate {
        prompts: Vec<WirePrompt>,
        n: u32,
        config: GeneratorConfig,
        seed: u64,
        weights_version: u64,
        weights_digest: Option<String>,
    },
    /// Later turns of multi-turn rollouts: one continuation of each conversation, after the
    /// same weights check as `Generate`.
    Continue {
        conversations: Vec<WireConversation>,
        config: GeneratorConfig,
        seed: u64,
        weights_version: u64,
        weights_digest: Option<String>,
    },
    /// An environment's reply as the engine's chat template writes it (token ids).
    UserTurn { text: String, close_turn: bool },
    /// A held-out evaluation (the evaluator), labelled `version`, after the same weights check
    /// as `Generate`.
    Evaluate {
        version: u64,
        weights_version: u64,
        weights_digest: Option<String>,
    },
    /// Score one group (a hosted judge).
    Score(Box<ScoreRequest>),
    /// Can this host receive weights by a collective broadcast (NCCL), and over what?
    /// Answered at once.
    CollectiveInfo,
    /// Join communicator `id` as `rank` of `nranks` (the head is rank 0 and joins at the same
    /// time); it replaces any communicator the host had.
    JoinCollective {
        id: String,
        nranks: u32,
        rank: u32,
        /// How long the host waits for the other ranks (the head's own deadline).
        deadline_s: f64,
        /// Numbers this request, for `AbandonCollective`.
        seq: u64,
    },
    /// The head gave up on collective request `seq` (and every older one): stop waiting for it
    /// (frees the host's device thread at once instead of at its deadline). Answered at once.
    AbandonCollective { seq: u64 },
    /// Receive weights version `version` by broadcast from rank 0, laid out as `layout` (the
    /// head broadcasts as this request arrives), and apply it.
    ReceiveWeights {
        version: u64,
        layout: BucketLayout,
        seq: u64,
    },
}

/// A conversation to continue: its prompt, and the tokens after the prompt so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireConversation {
    pub prompt: WirePrompt,
    pub so_far: Vec<i64>,
}

/// A hosted judge's work: score one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreRequest {
    pub group: WireGroup,
}

/// A role host's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HostReply {
    Pong {
        node: String,
        busy: bool,
    },
    Attached {
        node: String,
    },
    Generated {
        groups: Vec<GeneratedGroup>,
        /// Seconds the host waited for and applied the weights the batch named.
        weights_s: f64,
        /// Seconds the engine generated.
        generate_s: f64,
    },
    Continued {
        rollouts: Vec<Rollout>,
        weights_s: f64,
        generate_s: f64,
    },
    Tokens {
        tokens: Vec<i64>,
    },
    Evaluated {
        stats: Box<EvalStats>,
        weights_s: f64,
        eval_s: f64,
    },
    Scored {
        rewards: Vec<f32>,
        details: JudgeDetails,
        /// Seconds the judge scored.
        judge_s: f64,
    },
    /// `CollectiveInfo`'s answer: what carries broadcast weights here, or why nothing can.
    CollectiveInfo {
        available: Result<String, String>,
    },
    /// Joined a communicator.
    Joined,
    /// `AbandonCollective` noted.
    Abandoned,
    /// The host could not do its part of a collective (join or receive), and why: under
    /// `transport = "auto"` the head then uses TCP for it. (Not `Failed`, which means the
    /// worker is unfit.)
    CollectiveFailed {
        reason: String,
    },
    /// A broadcast version arrived and was applied, in `seconds` (receiving, unpacking and
    /// applying).
    WeightsApplied {
        version: u64,
        seconds: f64,
    },
    /// Not served, and never will be as things stand (another run, config or generator).
    Refused {
        reason: String,
    },
    /// The host could not serve this call (weights did not arrive, a bad payload, a thread
    /// gone): the worker is unfit, not the prompts.
    Failed {
        reason: String,
    },
    /// The engine itself failed on these prompts, as a local engine would have.
    EngineError {
        reason: String,
    },
}

impl HostReply {
    /// What would make this reply smaller, should it be too large to send.
    pub fn how_to_shrink(&self) -> &'static str {
        match self {
            HostReply::Evaluated { .. } => "fewer held-out prompts: evaluator.prompts_per_family",
            HostReply::Scored { .. } => "a smaller group: group_size",
            _ => "fewer prompts per batch (generator.batch_prompts) or shorter responses (generator.max_new_tokens)",
        }
    }
}

impl HostRequest {
    /// What would make this request smaller, should it be too large to send.
    pub fn how_to_shrink(&self) -> &'static str {
        match self {
            HostRequest::Score(_) => {
                "a group this large: shorter responses (generator.max_new_tokens) or smaller images"
            }
            _ => "fewer prompts per batch: generator.batch_prompts",
        }
    }
}
