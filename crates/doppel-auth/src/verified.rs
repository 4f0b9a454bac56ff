//! Verifications remembered so that a client that reconnects does not pay for Argon2 again.
//!
//! An entry holds a keyed SHA-256 digest of the password that last verified for a username and
//! the credential it matched. SHA-256 is fast, which is the point here and why it is only ever
//! compared with a password that Argon2 has already accepted. The registry forgets a username's
//! entry whenever that principal's credentials change.

use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Most usernames remembered at once: about 150 bytes each, so 15 MB at most. When full the
/// cache starts over, which costs one Argon2 run per client at its next connection, no more.
pub const MAX_VERIFIED_USERNAMES: usize = 100_000;

/// Bytes of the per-process digest key.
const DIGEST_KEY_BYTES: usize = 32;

/// What a successful verification proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The keyed digest of the password that matched.
    pub digest: [u8; 32],
    /// The credential it matched: the entry is good only while that credential exists.
    pub credential_id: String,
}

pub(crate) struct VerifiedCache {
    /// Prefixed to every password before digesting, and new in every process, so that digests
    /// held in memory match no precomputed table of SHA-256 values.
    key: [u8; DIGEST_KEY_BYTES],
    /// The last verification that succeeded, by username.
    entries: HashMap<String, Verified>,
}

impl VerifiedCache {
    pub fn new(key: [u8; DIGEST_KEY_BYTES]) -> Self {
        Self {
            key,
            entries: HashMap::new(),
        }
    }

    pub fn digest(&self, password: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(password);
        hasher.finalize().into()
    }

    /// The credential `password` verified against for `username` before, if it did.
    pub fn lookup(&self, username: &str, digest: &[u8; 32]) -> Option<&str> {
        // A plain comparison: its timing could at most reveal a prefix of a keyed digest of a
        // password, which helps find neither the password nor the key.
        self.entries
            .get(username)
            .filter(|verified| verified.digest == *digest)
            .map(|verified| verified.credential_id.as_str())
    }

    pub fn remember(&mut self, username: String, verified: Verified) {
        if self.entries.len() >= MAX_VERIFIED_USERNAMES && !self.entries.contains_key(&username) {
            self.entries.clear();
        }
        self.entries.insert(username, verified);
    }

    pub fn forget(&mut self, username: &str) {
        self.entries.remove(username);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_password_hits() {
        let mut cache = VerifiedCache::new([7; DIGEST_KEY_BYTES]);
        let digest = cache.digest(b"secret");
        cache.remember(
            "t/devices/d".into(),
            Verified {
                digest,
                credential_id: "c1".into(),
            },
        );
        assert_eq!(cache.lookup("t/devices/d", &digest), Some("c1"));
        assert_eq!(cache.lookup("t/devices/d", &cache.digest(b"other")), None);
        assert_eq!(cache.lookup("t/devices/e", &digest), None);
        cache.forget("t/devices/d");
        assert_eq!(cache.lookup("t/devices/d", &digest), None);
    }

    #[test]
    fn digests_depend_on_the_process_key() {
        let a = VerifiedCache::new([1; DIGEST_KEY_BYTES]);
        let b = VerifiedCache::new([2; DIGEST_KEY_BYTES]);
        assert_ne!(a.digest(b"secret"), b.digest(b"secret"));
        assert_eq!(a.digest(b"secret"), a.digest(b"secret"));
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let mut cache = VerifiedCache::new([0; DIGEST_KEY_BYTES]);
        let verified = Verified {
            digest: [0; 32],
            credential_id: "c".into(),
        };
        for n in 0..MAX_VERIFIED_USERNAMES {
            cache.remember(format!("t/devices/d{n}"), verified.clone());
        }
        assert_eq!(cache.len(), MAX_VERIFIED_USERNAMES);
        cache.remember("t/devices/d0".into(), verified.clone());
        assert_eq!(
            cache.len(),
            MAX_VERIFIED_USERNAMES,
            "a known username replaces"
        );
        cache.remember("t/devices/new".into(), verified);
        assert_eq!(cache.len(), 1);
    }
}
