//! The head's side of a remote evaluator: an [`EvalEngine`] whose evaluations run on a worker
//! (a policy replica there, with the held-out prompts and the metric the worker builds from the
//! same config), so the head's device is not spent on evaluation.
//!
//! The evaluator actor on the head drives it as it drives a local engine. Weights, the link and
//! the outcomes are the [`RemoteModel`]'s; a worker that cannot serve makes the evaluator skip
//! that version's evaluation with a warning (the next one tries again).

use std::path::Path;
use std::sync::Arc;

use grlhf_actors::error::ActorError;
use grlhf_actors::eval_engine::{EvalEngine, EvalEngineBuilder, EvalStats};
use grlhf_actors::protocol::Version;
use tch::Tensor;

use crate::remote_model::{unreachable, RemoteModel, RemoteModelSpec};
use crate::wire::{HostReply, HostRequest};

/// A builder of remote evaluation engines for an evaluator's plan.
pub fn remote_eval_engine(spec: RemoteModelSpec) -> EvalEngineBuilder {
    let spec = Arc::new(spec);
    Arc::new(move |start_from: Option<&Path>| {
        RemoteModel::new(spec.clone(), start_from)
            .map(|model| Box::new(RemoteEvaluator { model }) as Box<dyn EvalEngine>)
            .map_err(|e| ActorError::Engine(e.to_string()))
    })
}

pub struct RemoteEvaluator {
    model: RemoteModel,
}

impl EvalEngine for RemoteEvaluator {
    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        self.model.publish(tensors)
    }

    fn evaluate(&mut self, version: Version) -> Result<EvalStats, ActorError> {
        let (weights_version, weights_digest) = self.model.needed();
        let request = HostRequest::Evaluate {
            version,
            weights_version,
            weights_digest,
        };
        match self.model.work(request, 0)? {
            HostReply::Evaluated { stats, .. } => Ok(*stats),
            other => Err(unreachable(self.model.link().unexpected(other))),
        }
    }
}
