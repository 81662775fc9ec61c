//! The prompt source: iterates a prompt set over epochs (shuffled per epoch, or in the order given
//! for a curriculum) and admits prompts under AReaL's rule —
//! by learner version v, at most (η + v + 1)·B prompts admitted (B groups per learner step, η
//! the staleness bound) — so stale work is not produced in the first place. With η = 0 this is
//! lockstep: exactly B prompts per version.
//!
//! Prompts handed back (a failed actor's, or those in flight at a checkpoint) are issued again
//! before any new one, under their original uid and admission version: admitted once, trained
//! at most once. The source's position (order, cursor, epoch, next uid) saves and restores for
//! checkpoints. A prompt dropped before it could be trained (a generation or judge error, a
//! skipped learner step) is replaced by one more admission ([`PromptSourceMsg::Replace`]), so a
//! step never waits for a group that will not come.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ledger::Ledger;
use crate::protocol::{Control, PromptItem, Version};

/// One prompt of a set, before admission. `system` and `user` are the chat turns the model sees
/// (the user turn carries the image placeholder).
#[derive(Debug, Clone)]
pub struct PromptSpec {
    pub id: String,
    pub question: String,
    pub system: String,
    pub user: String,
    pub image: Option<Arc<grlhf_models::image_processor::RgbImage>>,
    pub reference: Option<String>,
    pub world: Option<Arc<grlhf_tasks::records::WorldKey>>,
}

/// The order a prompt set is issued in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptOrder {
    /// Shuffled once per epoch from the run's seed (the default).
    #[default]
    Shuffled,
    /// In the order given, every epoch (a curriculum).
    AsGiven,
}

/// What a prompt source kind produces: the run's prompts and the order to issue them in.
#[derive(Debug, Clone)]
pub struct PromptSet {
    pub prompts: Vec<PromptSpec>,
    pub order: PromptOrder,
}

/// Called when admission opens again for a generator that found none.
pub type Waker = Box<dyn FnOnce() + Send>;

pub enum PromptSourceMsg {
    /// Up to `max` prompts (possibly none; then `waker` is called when more can be admitted).
    Take {
        max: usize,
        waker: Waker,
        reply: RpcReplyPort<Vec<(Arc<PromptItem>, PromptSpec)>>,
    },
    /// The learner reached a new version.
    Version(Version),
    /// Pause / Resume admission (the pipeline idles once in-flight work is done), Drain (admit
    /// nothing more, for good), Stop (stop the source).
    Control(Control),
    /// Prompts admitted so far.
    Admitted(RpcReplyPort<u64>),
    /// Issue these admitted prompts again (their holder failed); they go out before new ones.
    Requeue(Vec<u64>),
    /// Admit this many prompts beyond the rule, to replace prompts dropped before training.
    Replace(u64),
    /// The source's position, for a checkpoint.
    Snapshot(RpcReplyPort<SourceCheckpoint>),
}

// Local-only: ractor's `cluster` feature (on for the whole workspace, see grlhf-cluster) asks
// every message type to say whether it can cross the network; this one never does.
impl ractor::Message for PromptSourceMsg {}

/// Where the source stands: enough to continue the same prompt order after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    pub order: Vec<usize>,
    pub cursor: usize,
    pub epoch: u64,
    pub next_uid: u64,
    pub admitted: u64,
    pub version: Version,
    /// Admitted prompts' (uid, index in the prompt set, admission version); a checkpoint keeps
    /// only those still in flight.
    pub issued: Vec<(u64, usize, Version)>,
    /// Replacements granted so far (admitted beyond the rule).
    #[serde(default)]
    pub replacements: u64,
}

pub struct PromptSourceArgs {
    pub prompts: Vec<PromptSpec>,
    pub order: PromptOrder,
    pub batch_groups: usize,
    pub max_staleness: u64,
    pub seed: u64,
    pub ledger: Ledger,
    /// Continue from a checkpoint, issuing `requeue` (uids of `issued`) first.
    pub resume: Option<(SourceCheckpoint, Vec<u64>)>,
}

pub struct PromptSourceState {
    args: PromptSourceArgs,
    order: Vec<usize>,
    cursor: usize,
    epoch: u64,
    next_uid: u64,
    version: Version,
    admitted: u64,
    /// uid → (index in the prompt set, admission version) of each prompt in flight, to issue it
    /// again (finished ones are pruned on every new version).
    issued: HashMap<u64, (usize, Version)>,
    requeue: VecDeque<u64>,
    replacements: u64,
    waiting: Vec<Waker>,
    draining: bool,
    paused: bool,
}

impl PromptSourceState {
    fn allowance(&self) -> u64 {
        if self.draining || self.paused {
            return 0;
        }
        if !self.requeue.is_empty() {
            return u64::MAX;
        }
        let limit = (self.args.max_staleness + self.version + 1) * self.args.batch_groups as u64
            + self.replacements;
        limit.saturating_sub(self.admitted)
    }

    /// Calls the waiting generators back if admission is open.
    fn wake(&mut self) {
        if self.allowance() > 0 {
            for waker in self.waiting.drain(..) {
                waker();
            }
        }
    }

    /// The next prompt to issue: a handed-back one, else a new admission.
    fn next_item(&mut self) -> (Arc<PromptItem>, PromptSpec) {
        while let Some(uid) = self.requeue.pop_front() {
            if let Some(&(index, admitted_at)) = self.issued.get(&uid) {
                return self.item(uid, index, admitted_at);
            }
            tracing::error!("prompt source: cannot re-issue unknown prompt {uid}");
        }
        if self.cursor == self.order.len() {
            self.epoch += 1;
            self.cursor = 0;
            if self.args.order == PromptOrder::Shuffled {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    self.args.seed ^ self.epoch.wrapping_mul(0x9E37_79B9),
                );
                self.order.shuffle(&mut rng);
            }
        }
        let index = self.order[self.cursor];
        self.cursor += 1;
        let uid = self.next_uid;
        self.next_uid += 1;
        self.admitted += 1;
        self.args.ledger.admit(uid, self.version);
        self.issued.insert(uid, (index, self.version));
        self.item(uid, index, self.version)
    }

    fn item(&self, uid: u64, index: usize, admitted_at: Version) -> (Arc<PromptItem>, PromptSpec) {
        let spec = self.args.prompts[index].clone();
        (prompt_item(uid, &spec, admitted_at), spec)
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        let mut issued: Vec<(u64, usize, Version)> = self
            .issued
            .iter()
            .map(|(&uid, &(index, at))| (uid, index, at))
            .collect();
        issued.sort_unstable();
        SourceCheckpoint {
            order: self.order.clone(),
            cursor: self.cursor,
            epoch: self.epoch,
            next_uid: self.next_uid,
            admitted: self.admitted,
            version: self.version,
            issued,
            replacements: self.replacements,
        }
    }
}

/// The prompt item the source issues for `spec` as `uid` (also rebuilt from a checkpoint).
pub fn prompt_item(uid: u64, spec: &PromptSpec, admitted_at: Version) -> Arc<PromptItem> {
    Arc::new(PromptItem {
        uid,
        id: spec.id.clone(),
        question: spec.question.clone(),
        image: spec.image.clone(),
        reference: spec.reference.clone(),
        world: spec.world.clone(),
        admitted_at,
    })
}

/// The actor (configuration lives in the arguments; the mutable part in the state).
pub struct PromptSource;

impl Actor for PromptSource {
    type Msg = PromptSourceMsg;
    type State = PromptSourceState;
    type Arguments = PromptSourceArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        if args.prompts.is_empty() {
            return Err("the prompt set is empty".into());
        }
        let mut state = PromptSourceState {
            order: (0..args.prompts.len()).collect(),
            cursor: 0,
            epoch: 0,
            next_uid: 0,
            version: 0,
            admitted: 0,
            issued: HashMap::new(),
            requeue: VecDeque::new(),
            replacements: 0,
            waiting: Vec::new(),
            draining: false,
            paused: false,
            args,
        };
        if state.args.order == PromptOrder::Shuffled {
            state
                .order
                .shuffle(&mut ChaCha8Rng::seed_from_u64(state.args.seed));
        }
        if let Some((saved, requeue)) = state.args.resume.take() {
            let n = state.args.prompts.len();
            if saved.order.len() != n
                || saved.cursor > n
                || saved.order.iter().any(|&i| i >= n)
                || saved.issued.iter().any(|&(_, i, _)| i >= n)
            {
                return Err(format!(
                    "the checkpoint's prompt order ({} entries, cursor {}) does not fit this run's {n} prompts",
                    saved.order.len(),
                    saved.cursor
                )
                .into());
            }
            state.order = saved.order;
            state.cursor = saved.cursor;
            state.epoch = saved.epoch;
            state.next_uid = saved.next_uid;
            state.admitted = saved.admitted;
            state.version = saved.version;
            state.replacements = saved.replacements;
            state.issued = saved
                .issued
                .into_iter()
                .map(|(uid, index, at)| (uid, (index, at)))
                .collect();
            state.requeue = requeue.into();
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PromptSourceMsg::Take { max, waker, reply } => {
                let mut out = Vec::with_capacity(max);
                // The allowance is re-read per item: re-issued prompts need none.
                while out.len() < max && state.allowance() > 0 {
                    out.push(state.next_item());
                }
                metrics::counter!(crate::metric_series::PROMPTS_ISSUED).increment(out.len() as u64);
                if out.is_empty() {
                    state.waiting.push(waker);
                }
                let _ = reply.send(out);
            }
            PromptSourceMsg::Version(v) => {
                state.version = state.version.max(v);
                // Only a prompt in flight can be handed back: forget the others, so the map
                // stays the size of what is in flight however long the run.
                let ledger = &state.args.ledger;
                state.issued.retain(|&uid, _| ledger.is_in_flight(uid));
                state.wake();
            }
            PromptSourceMsg::Control(control) => match control {
                Control::Pause => state.paused = true,
                Control::Resume => {
                    state.paused = false;
                    state.wake();
                }
                Control::Drain => {
                    state.draining = true;
                    state.waiting.clear();
                }
                Control::Stop => myself.stop(None),
            },
            PromptSourceMsg::Admitted(reply) => {
                let _ = reply.send(state.admitted);
            }
            PromptSourceMsg::Requeue(uids) => {
                metrics::counter!(crate::metric_series::PROMPTS_REQUEUED)
                    .increment(uids.len() as u64);
                state.requeue.extend(uids);
                state.wake();
            }
            PromptSourceMsg::Replace(n) => {
                state.replacements += n;
                state.wake();
            }
            PromptSourceMsg::Snapshot(reply) => {
                let _ = reply.send(state.checkpoint());
            }
        }
        Ok(())
    }
}
