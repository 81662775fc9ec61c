//! A remote evaluator and its host in one process: an evaluation runs on the worker after the
//! weights it names arrived, its statistics come back whole; without a worker it says it is
//! unreachable (the evaluator actor then skips that version instead of stopping the run).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grlhf_actors::error::ActorError;
use grlhf_actors::eval_engine::{EvalEngine, EvalEngineBuilder, EvalStats};
use grlhf_cluster::remote_evaluator::remote_eval_engine;
use grlhf_cluster::remote_model::RemoteModelSpec;
use grlhf_cluster::remote_stats::RemoteStats;
use grlhf_cluster::role_host::{HostedRole, RoleHost, RoleHostArgs};
use grlhf_cluster::RunIdentity;
use ractor::Actor;
use support::{link, runtime};
use tch::Tensor;

/// Scores every "prompt" with the current weight `w`.
struct WeightEval {
    w: f64,
}

impl EvalEngine for WeightEval {
    fn apply_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<(), ActorError> {
        self.w = tensors[0].1.double_value(&[0]);
        Ok(())
    }

    fn evaluate(&mut self, version: u64) -> Result<EvalStats, ActorError> {
        Ok(EvalStats {
            version,
            mean: self.w,
            per_family: [("counting".to_string(), self.w / 2.0)].into(),
            scores: vec![self.w; 3],
            answers: vec!["a".into(), "b".into(), "c".into()],
            prompts: 3,
            ..EvalStats::default()
        })
    }
}

fn identity() -> RunIdentity {
    support::identity("eval-test", "c")
}

/// The head's stand-in for `role` (each test its own: process groups are the process's).
fn on_head(rt: &tokio::runtime::Runtime, role: &str, attach: Duration) -> Box<dyn EvalEngine> {
    let spec = RemoteModelSpec {
        link: link(role, identity(), attach, rt),
        weights_ip: "127.0.0.1".parse().unwrap(),
        stats: RemoteStats::default(),
        collective: None,
    };
    remote_eval_engine(spec)(None).unwrap()
}

#[test]
fn an_evaluation_runs_on_the_worker_with_the_weights_it_names() {
    let rt = runtime();
    let engine: EvalEngineBuilder =
        Arc::new(|_: Option<&Path>| Ok(Box::new(WeightEval { w: 0.0 }) as Box<dyn EvalEngine>));
    let args = RoleHostArgs {
        role: "evaluator".into(),
        node: "w1".into(),
        incarnation: 1,
        identity: identity(),
        cookie: None,
        hosted: HostedRole::Evaluator(engine),
        device: tch::Device::Cpu,
        head_ip: "127.0.0.1".parse().unwrap(),
        weights_timeout: Duration::from_secs(5),
        collectives: None,
    };
    rt.block_on(Actor::spawn(None, RoleHost, args)).unwrap();
    let mut evaluator = on_head(&rt, "evaluator", Duration::from_secs(5));
    let first = evaluator.evaluate(0).unwrap();
    assert_eq!((first.version, first.mean), (0, 0.0));
    evaluator
        .apply_weights(&[("w".into(), Tensor::from_slice(&[0.5f32]))])
        .unwrap();
    let stats = evaluator.evaluate(4).unwrap();
    assert_eq!((stats.version, stats.mean, stats.prompts), (4, 0.5, 3));
    assert_eq!(stats.per_family["counting"], 0.25);
    assert_eq!(stats.answers, vec!["a", "b", "c"]);
}

#[test]
fn an_evaluator_without_a_worker_is_unreachable_not_failed() {
    let rt = runtime();
    let mut evaluator = on_head(&rt, "evaluator-nowhere", Duration::from_millis(300));
    let err = evaluator.evaluate(0).unwrap_err();
    assert!(matches!(err, ActorError::Unreachable(_)), "{err:?}");
}
