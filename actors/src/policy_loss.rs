//! Policy losses: how the learner turns scored groups into a loss. A loss kind decides the
//! advantages of a group's rewards and the loss of a batch of teacher-forced log-probs; the
//! learner actor and its train engine do everything else (batching, micro-batches, staleness,
//! clipping the gradient, the optimiser). GRPO (`crate::grpo::Grpo`) is built in;
//! other kinds (Dr. GRPO, RLOO, a user's own) are registered by kind ([`crate::registry`]) and
//! chosen with `[learner.loss] kind = …`.

use tch::Tensor;

/// Loss terms of a batch (the loss keeps its graph; the rest are detached numbers).
#[derive(Debug)]
pub struct LossTerms {
    pub loss: Tensor,
    /// Mean token KL to the reference, when the loss has a KL term.
    pub kl: f64,
    /// Share of tokens whose importance ratio was clipped.
    pub clip_fraction: f64,
}

/// One micro-batch, as the train engine hands it to the loss. Tensors are `[batch, tokens]`
/// (`advantages`: `[batch]`). `mask` is 1 exactly on the tokens to train: response tokens the
/// policy produced — padding and a multi-turn trajectory's environment tokens are 0.
pub struct LossInputs<'a> {
    pub logp: &'a Tensor,
    /// Log-probs the samples were generated with.
    pub behaviour_logp: &'a Tensor,
    /// The frozen reference's log-probs (present when [`PolicyLoss::kl_beta`] > 0).
    pub reference_logp: Option<&'a Tensor>,
    pub advantages: &'a Tensor,
    pub mask: &'a Tensor,
    /// Trained tokens in the whole optimiser step (micro-batches accumulate gradients, so a loss
    /// normalised by this sums to the step's mean).
    pub step_tokens: usize,
    /// Sequences in the whole optimiser step.
    pub step_sequences: usize,
}

/// A loss kind.
pub trait PolicyLoss: Send + Sync {
    /// The advantage of each response from its group's rewards.
    fn advantages(&self, rewards: &[f32]) -> Vec<f32>;

    /// The loss of one micro-batch.
    fn loss(&self, inputs: &LossInputs<'_>) -> LossTerms;

    /// The KL term's weight; above 0 the learner keeps a frozen reference and passes its
    /// log-probs.
    fn kl_beta(&self) -> f64;
}
