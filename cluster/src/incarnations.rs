//! The newest incarnation each peer has been accepted with.
//!
//! A process bumps its incarnation every time it starts again (a restarted worker, a rejoin).
//! Once the accepting side has welcomed `node2/generator-0` at incarnation 3, a connection
//! claiming incarnation 2 under that name comes from a process that was replaced (one that was
//! frozen and woke up, say) and must not be served: it would apply weights, or hand back
//! results, for a run that has moved on. The same incarnation is welcome again (a reconnect of
//! the same process), and a newer one replaces the record.
//!
//! Only authenticated peers are recorded: the handshake checks the cookie first, so a peer
//! without it cannot lock a name out by claiming a huge incarnation.

use std::collections::HashMap;
use std::sync::Mutex;

/// Peer name → the newest incarnation accepted under it.
#[derive(Debug, Default)]
pub struct Incarnations {
    newest: Mutex<HashMap<String, u64>>,
}

impl Incarnations {
    /// Accepts `incarnation` for `peer_name` and records it, unless a newer one was accepted
    /// before: then returns that newer one.
    pub fn admit(&self, peer_name: &str, incarnation: u64) -> Result<(), u64> {
        let mut newest = self.newest.lock().expect("incarnation registry");
        match newest.get(peer_name) {
            Some(&known) if known > incarnation => Err(known),
            _ => {
                newest.insert(peer_name.to_string(), incarnation);
                Ok(())
            }
        }
    }

    /// Records `incarnation` for `peer_name` even when an older one than the record: the
    /// caller knows the newer process is gone (it left the process group), so an older one —
    /// a replacement on a machine whose clock is behind — may serve.
    pub fn replace(&self, peer_name: &str, incarnation: u64) {
        let mut newest = self.newest.lock().expect("incarnation registry");
        newest.insert(peer_name.to_string(), incarnation);
    }

    /// The newest incarnation accepted for `peer_name`, if any.
    pub fn newest(&self, peer_name: &str) -> Option<u64> {
        self.newest
            .lock()
            .expect("incarnation registry")
            .get(peer_name)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_incarnations_are_refused_and_equal_or_newer_ones_welcome() {
        let registry = Incarnations::default();
        assert_eq!(registry.admit("node2/generator-0", 2), Ok(()));
        assert_eq!(registry.admit("node2/generator-0", 1), Err(2));
        assert_eq!(
            registry.admit("node2/generator-0", 2),
            Ok(()),
            "a reconnect"
        );
        assert_eq!(registry.admit("node2/generator-0", 5), Ok(()));
        assert_eq!(registry.admit("node2/generator-0", 4), Err(5));
        assert_eq!(
            registry.admit("node3/judge-0", 0),
            Ok(()),
            "names are separate"
        );
        assert_eq!(registry.newest("node2/generator-0"), Some(5));
        assert_eq!(registry.newest("nobody"), None);
    }
}
