//! The actors crate's error type. Messages keep naming the file, tensor or thread concerned, as
//! they did when they were strings; the variants say what kind of failure it was, so a caller
//! (the learner skipping a step, the run refusing a resume) can tell them apart without parsing
//! text. The plug-in traits a user implements (`Judge`, the sinks, registry factories) keep
//! `String` errors, so a user's crate needs no dependency on this type.

use std::path::PathBuf;

/// What went wrong in an actor, an engine or the files they keep.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// Reading or writing a file or directory.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint that is missing, damaged or does not belong to this run.
    #[error("{0}")]
    Checkpoint(String),
    /// Weights or optimiser state that do not fit the model (names, shapes, counts).
    #[error("{0}")]
    Weights(String),
    /// A device thread that could not start, stopped, or panicked in a job.
    #[error("{0}")]
    Thread(String),
    /// A non-finite loss or gradient: the learner skips the step.
    #[error("non-finite loss ({loss}) or gradient norm ({grad_norm})")]
    NonFinite { loss: f64, grad_norm: f64 },
    /// Anything an engine or model reports (loading, encoding, generating).
    #[error("{0}")]
    Engine(String),
    /// An engine hosted elsewhere (a worker node) is gone, frozen, or refused to serve. Not the
    /// prompts' fault: a generator fails on it, so its supervisor restarts it and the prompts
    /// it held are issued again under their uids, instead of being dropped.
    #[error("{0}")]
    Unreachable(String),
    /// A worker refused to serve this run (another config, build or run): trying again will not
    /// help. A generator fails on it as on an unreachable worker (the restart budget then stops
    /// the run); an evaluator stops the run.
    #[error("{0}")]
    Refused(String),
}

impl ActorError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ActorError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<String> for ActorError {
    fn from(message: String) -> ActorError {
        ActorError::Engine(message)
    }
}

impl From<&str> for ActorError {
    fn from(message: &str) -> ActorError {
        ActorError::Engine(message.to_string())
    }
}

impl From<ActorError> for String {
    fn from(error: ActorError) -> String {
        error.to_string()
    }
}
