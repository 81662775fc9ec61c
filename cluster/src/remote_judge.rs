//! The head's side of a remote judge: a [`Judge`] whose groups are scored by a judge hosted on
//! a worker ([`crate::role_host::RoleHost`]), for a generative reward model that needs a GPU of
//! its own.
//!
//! The judge actor on the head keeps its place in the judge pool and the ledger; this judge
//! sends each group (the prompt with its image as PNG, the reference and world key rule rewards
//! read, the responses) and gets the rewards and the judge's details back. A failure of the
//! worker — gone, frozen (heartbeat), refusing — is reported through [`Judge::unreachable`],
//! so the judge actor fails and its prompts are issued again; a failure of the worker's judge
//! on the group is an ordinary judge error (the group is dropped as `judge_error`).

use std::sync::Arc;

use grlhf_actors::judge::{Judge, JudgeBuilder};
use grlhf_actors::protocol::{JudgeDetails, RolloutGroup};
use grlhf_actors::supervisor::JudgeRebuild;
use ractor::ActorRef;

use crate::error::ClusterError;
use crate::remote_call::RemoteRole;
use crate::remote_stats::{CallTiming, RemoteStats};
use crate::role_host::RoleHostMsg;
use crate::wire::{HostReply, HostRequest, ScoreRequest, WireGroup};

/// Everything a remote judge needs, shared by the judges its actor builds over a run.
pub struct RemoteJudgeSpec {
    pub link: Arc<RemoteRole>,
    pub stats: RemoteStats,
}

/// The rebuild of a judge plan whose judge runs on a worker.
pub fn remote_judge(spec: RemoteJudgeSpec) -> JudgeRebuild {
    let spec = Arc::new(spec);
    Arc::new(move || {
        let spec = spec.clone();
        let build: JudgeBuilder = Box::new(move || {
            Ok(Box::new(RemoteJudge {
                spec,
                host: None,
                unreachable: None,
            }) as Box<dyn Judge>)
        });
        Ok(build)
    })
}

pub struct RemoteJudge {
    spec: Arc<RemoteJudgeSpec>,
    /// Found and attached at the first group.
    host: Option<ActorRef<RoleHostMsg>>,
    /// Why the last group failed, when the worker (not the group) was the cause.
    unreachable: Option<String>,
}

impl RemoteJudge {
    async fn request(&mut self, request: HostRequest) -> Result<HostReply, ClusterError> {
        let link = &self.spec.link;
        let host = match &self.host {
            Some(host) => host.clone(),
            None => {
                let host = link.attach(None, link.timeouts.attach).await?;
                self.spec.stats.attached(&link.role, &link.node);
                self.host = Some(host.clone());
                host
            }
        };
        link.call_watched(&host, request).await
    }
}

impl Judge for RemoteJudge {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        self.unreachable = None;
        let wire = WireGroup::from_group(group).map_err(|e| e.to_string())?;
        let request = HostRequest::Score(Box::new(ScoreRequest { group: wire }));
        let link = self.spec.link.clone();
        let started = std::time::Instant::now();
        let reply = link.runtime.block_on(self.request(request));
        let call_s = started.elapsed().as_secs_f64();
        match reply {
            Ok(HostReply::Scored {
                rewards,
                details,
                judge_s,
            }) => {
                let timing = CallTiming {
                    groups: 1,
                    call_s,
                    worker_weights_s: 0.0,
                    worker_compute_s: judge_s,
                };
                self.spec.stats.call(&link.role, &link.node, timing);
                Ok((rewards, details))
            }
            // The worker's judge failed on this group, as a local one would have.
            Ok(HostReply::EngineError { reason }) => Err(format!("{}: {reason}", link.peer())),
            // The group, not the worker: too large to send, or a reply that does not decode.
            Err(e @ (ClusterError::TooLargeToSend { .. } | ClusterError::Malformed { .. })) => {
                Err(e.to_string())
            }
            Ok(other) => {
                let why = link.unexpected(other).to_string();
                self.unreachable = Some(why.clone());
                Err(why)
            }
            Err(e) => {
                // The next group looks for the host again (a restarted worker).
                self.host = None;
                self.unreachable = Some(e.to_string());
                Err(e.to_string())
            }
        }
    }

    fn unreachable(&self) -> Option<String> {
        self.unreachable.clone()
    }
}
