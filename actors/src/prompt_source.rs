//! The prompt source: iterates a prompt set over epochs and admits prompts under AReaL's rule —
//! by learner version v, at most (η + v + 1)·B prompts admitted (B groups per learner step, η
//! the staleness bound) — so stale work is not produced in the first place. With η = 0 this is
//! lockstep: exactly B prompts per version.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

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
}

pub struct PromptSourceArgs {
    pub prompts: Vec<PromptSpec>,
    pub batch_groups: usize,
    pub max_staleness: u64,
    pub seed: u64,
    pub ledger: Ledger,
}

pub struct PromptSourceState {
    args: PromptSourceArgs,
    order: Vec<usize>,
    cursor: usize,
    epoch: u64,
    next_uid: u64,
    version: Version,
    admitted: u64,
    waiting: Vec<Waker>,
    draining: bool,
    paused: bool,
}

impl PromptSourceState {
    fn allowance(&self) -> u64 {
        if self.draining || self.paused {
            return 0;
        }
        let limit = (self.args.max_staleness + self.version + 1) * self.args.batch_groups as u64;
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

    fn next_spec(&mut self) -> PromptSpec {
        if self.cursor == self.order.len() {
            self.epoch += 1;
            self.cursor = 0;
            let mut rng =
                ChaCha8Rng::seed_from_u64(self.args.seed ^ self.epoch.wrapping_mul(0x9E37_79B9));
            self.order.shuffle(&mut rng);
        }
        let spec = self.args.prompts[self.order[self.cursor]].clone();
        self.cursor += 1;
        spec
    }
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
        let mut order: Vec<usize> = (0..args.prompts.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(args.seed));
        Ok(PromptSourceState {
            args,
            order,
            cursor: 0,
            epoch: 0,
            next_uid: 0,
            version: 0,
            admitted: 0,
            waiting: Vec::new(),
            draining: false,
            paused: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PromptSourceMsg::Take { max, waker, reply } => {
                let count = (max as u64).min(state.allowance()) as usize;
                let mut out = Vec::with_capacity(count);
                for _ in 0..count {
                    let spec = state.next_spec();
                    let uid = state.next_uid;
                    state.next_uid += 1;
                    state.admitted += 1;
                    state.args.ledger.admit(uid, state.version);
                    let item = PromptItem {
                        uid,
                        id: spec.id.clone(),
                        question: spec.question.clone(),
                        image: spec.image.clone(),
                        reference: spec.reference.clone(),
                        world: spec.world.clone(),
                        admitted_at: state.version,
                    };
                    out.push((Arc::new(item), spec));
                }
                metrics::counter!("grlhf_prompts_admitted").increment(count as u64);
                if out.is_empty() {
                    state.waiting.push(waker);
                }
                let _ = reply.send(out);
            }
            PromptSourceMsg::Version(v) => {
                state.version = state.version.max(v);
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
        }
        Ok(())
    }
}
