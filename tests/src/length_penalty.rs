//! An example of a user-defined actor kind: a post-judge stage that subtracts a penalty per
//! response token from every reward, then passes the group on. It is registered from outside the
//! library exactly as the built-ins are:
//!
//! ```no_run
//! let mut registry = grlhf_actors::registry::Registry::with_builtins();
//! grlhf_tests::length_penalty::register(&mut registry);
//! ```
//!
//! and used from a config with
//!
//! ```toml
//! [[post_judge]]
//! kind = "length_penalty"
//! per_token = 0.01
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use grlhf_actors::protocol::{ScoredGroup, ScoredSink};
use grlhf_actors::registry::{Registry, StageContext};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Deserialize;

/// The stage's settings (its `[[post_judge]]` table, minus `kind`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthPenaltyConfig {
    pub per_token: f32,
}

/// Groups the stage has passed on, for tests and reports.
pub static GROUPS_PASSED: AtomicU64 = AtomicU64::new(0);

pub struct LengthPenalty;

pub struct State {
    config: LengthPenaltyConfig,
    downstream: Arc<dyn ScoredSink>,
}

pub struct Scored(pub ScoredGroup);

// With ractor's `cluster` feature on (grlhf turns it on), a user's actor message says it is
// local-only; docs/plugins.md.
impl ractor::Message for Scored {}

impl Actor for LengthPenalty {
    type Msg = Scored;
    type State = State;
    type Arguments = (LengthPenaltyConfig, Arc<dyn ScoredSink>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Scored>,
        (config, downstream): Self::Arguments,
    ) -> Result<State, ActorProcessingErr> {
        Ok(State { config, downstream })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Scored>,
        Scored(mut group): Scored,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        for (reward, rollout) in group.rewards.iter_mut().zip(&group.group.rollouts) {
            *reward -= state.config.per_token * rollout.tokens.len() as f32;
        }
        GROUPS_PASSED.fetch_add(1, Ordering::Relaxed);
        state.downstream.send_scored(group)?;
        Ok(())
    }
}

struct Sink(ActorRef<Scored>);

impl ScoredSink for Sink {
    fn send_scored(&self, group: ScoredGroup) -> Result<(), String> {
        self.0.cast(Scored(group)).map_err(|e| e.to_string())
    }
}

/// Registers the `length_penalty` kind.
pub fn register(registry: &mut Registry) {
    registry.register_stage(
        "length_penalty",
        "subtracts a penalty per response token from every reward",
        |config: LengthPenaltyConfig, context: StageContext| {
            Box::pin(async move {
                let (actor, _) = Actor::spawn(None, LengthPenalty, (config, context.downstream))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Arc::new(Sink(actor)) as Arc<dyn ScoredSink>)
            })
        },
    );
}
