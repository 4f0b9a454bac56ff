//! The live connections the connect admission counts: over every listener, and per principal.
//!
//! Sessions are kept per principal and client id, so one credential could otherwise open
//! connections under as many client ids as it likes, up to the whole of `mqtt.max_connections`:
//! a leaked device password would lock every other device out. Counting by principal bounds
//! what one credential can take.

use crate::identity;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Live connections, raised by the connected hook and lowered by the disconnected hook.
#[derive(Default)]
pub struct LiveConnections {
    /// Every live connection, on every listener.
    total: AtomicUsize,
    /// Per principal, the live connections under each of its session keys. A key has one
    /// connection, except for the moment of a takeover: the new connection is counted before
    /// the one it replaces has gone.
    by_principal: Mutex<HashMap<String, HashMap<String, usize>>>,
}

impl LiveConnections {
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether a connection under `session_key` keeps its principal within `limit` sessions.
    /// Resuming or taking over a session the principal already holds adds none. Anonymous
    /// clients have no principal to count together (see [`identity::principal_of_session_key`]).
    pub fn admits(&self, session_key: &str, limit: usize) -> bool {
        let Some(principal) = identity::principal_of_session_key(session_key) else {
            return true;
        };
        let by_principal = self
            .by_principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_principal
            .get(principal)
            .is_none_or(|sessions| sessions.contains_key(session_key) || sessions.len() < limit)
    }

    pub fn opened(&self, session_key: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Some(principal) = identity::principal_of_session_key(session_key) {
            let mut by_principal = self
                .by_principal
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *by_principal
                .entry(principal.to_owned())
                .or_default()
                .entry(session_key.to_owned())
                .or_default() += 1;
        }
    }

    pub fn closed(&self, session_key: &str) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let Some(principal) = identity::principal_of_session_key(session_key) else {
            return;
        };
        let mut by_principal = self
            .by_principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(sessions) = by_principal.get_mut(principal) else {
            return;
        };
        if let Some(live) = sessions.get_mut(session_key) {
            *live -= 1;
            if *live == 0 {
                sessions.remove(session_key);
            }
        }
        if sessions.is_empty() {
            by_principal.remove(principal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LiveConnections;

    #[test]
    fn a_principal_is_held_to_its_limit_of_sessions() {
        let live = LiveConnections::default();
        live.opened("t1/devices/pump-7|a");
        live.opened("t1/devices/pump-7|b");
        assert!(!live.admits("t1/devices/pump-7|c", 2));
        // Another principal, and the same principal's own sessions, are still let in.
        assert!(live.admits("t1/devices/pump-8|c", 2));
        assert!(live.admits("t1/devices/pump-7|a", 2));
        live.closed("t1/devices/pump-7|b");
        assert!(live.admits("t1/devices/pump-7|c", 2));
        assert_eq!(live.total(), 1);
    }

    #[test]
    fn a_takeover_counts_one_session_until_both_connections_have_gone() {
        let live = LiveConnections::default();
        live.opened("t1/devices/pump-7|a");
        // The new connection is counted before the replaced one's disconnect arrives.
        live.opened("t1/devices/pump-7|a");
        assert!(live.admits("t1/devices/pump-7|a", 1));
        assert!(!live.admits("t1/devices/pump-7|b", 1));
        live.closed("t1/devices/pump-7|a");
        assert!(!live.admits("t1/devices/pump-7|b", 1));
        live.closed("t1/devices/pump-7|a");
        assert!(live.admits("t1/devices/pump-7|b", 1));
        assert_eq!(live.total(), 0);
    }

    #[test]
    fn anonymous_clients_are_not_counted_together() {
        let live = LiveConnections::default();
        live.opened("default/anonymous/|pump-1");
        live.opened("default/anonymous/|pump-2");
        assert!(live.admits("default/anonymous/|pump-3", 1));
        assert_eq!(live.total(), 2);
    }
}
