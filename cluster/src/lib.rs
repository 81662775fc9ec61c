//! grlhf across processes and machines.
//!
//! What is here:
//! - [`frame`]: length-prefixed control frames with a size limit checked before allocation;
//! - [`handshake`]: every connection's first exchange: grlhf version, wire protocol, run and
//!   config hash must agree, and a cluster cookie is proven without being sent; a peer older
//!   than one already accepted under its name is refused ([`incarnations`]);
//! - the weight data plane: [`weight_stream`] (one version as safetensors bytes, chunk-wise
//!   SHA-256), [`WeightServer`] on the learner's node and [`WeightClient`] on a subscriber's;
//! - the actor control plane on ractor_cluster: [`node`] (a process's node server, joining the
//!   head), [`wire`] (serde envelopes), remote roles: [`role_host`] on a worker hosts a
//!   generator's engine, a judge or the evaluator; on the head [`remote_engine`],
//!   [`remote_judge`] and [`remote_evaluator`] stand in for them (the first and last over a
//!   [`remote_model`] fed with weights), through [`remote_call`] (finding and attaching the host, deadlines, heartbeats);
//!   [`remote_stats`]: what the process boundary costs; [`tls`]: mutual TLS for the link;
//!   [`transport`]: which transport carries weights (TCP; NCCL's library is opened, its
//!   transport not built).
//!
//! docs/distributed.md says what is built and what is not.

pub mod bucket_broadcast;
pub mod collective_receiver;
pub mod collective_request;
pub mod collective_sender;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod incarnations;
pub mod loopback_collective;
pub mod nccl;
pub mod node;
pub mod remote_call;
pub mod remote_engine;
pub mod remote_evaluator;
pub mod remote_judge;
pub mod remote_model;
pub mod remote_stats;
pub mod role_host;
pub mod tls;
pub mod transport;
pub mod weight_buckets;
pub mod weight_client;
pub mod weight_server;
pub mod weight_stream;
pub mod wire;

pub use error::{ClusterError, FrameError};
pub use handshake::{Cookie, Handshake, RunIdentity, GRLHF_VERSION, PROTOCOL_VERSION};
pub use weight_client::{ReceivedWeights, WeightClient, WeightClientConfig};
pub use weight_server::{PublishStats, SubscriberStats, WeightServer, WeightServerConfig};
pub use weight_stream::{EncodedWeights, ReceiveLimits, VerifiedPayload, WeightHeader};
