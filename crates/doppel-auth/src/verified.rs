//! Verifications remembered so that a client that reconnects does not pay for Argon2 again.
//!
//! An entry holds a keyed SHA-256 digest of a password that verified for a username and the
//! credential it matched, one entry per credential (several instances of an application may each
//! hold their own). SHA-256 is fast, which is the point here and why it is only ever compared
//! with a password that Argon2 has already accepted. The registry forgets a credential's entry in
//! the same locked step that removes the credential.
//!
//! This is also what keeps a device in while its username is under attack: the login guard
//! refuses unknown passwords for a username in backoff, and a remembered one is not unknown.

use crate::limits::MAX_CREDENTIALS_PER_PRINCIPAL;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Most usernames remembered at once: about 150 bytes per credential, so 15 MB for usernames
/// with one credential each and 60 MB at most. When full the cache starts over, which costs one
/// Argon2 run per client at its next connection, no more. Only passwords that Argon2 accepted
/// are remembered, so only an operator (creating credentials) can fill it.
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
    /// The verifications that succeeded, by username: at most one per credential, so at most
    /// [`MAX_CREDENTIALS_PER_PRINCIPAL`] per username.
    entries: HashMap<String, Vec<Verified>>,
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
            .get(username)?
            .iter()
            .find(|verified| verified.digest == *digest)
            .map(|verified| verified.credential_id.as_str())
    }

    /// Remembers `verified`, replacing what was remembered for the same credential.
    pub fn remember(&mut self, username: String, verified: Verified) {
        if self.entries.len() >= MAX_VERIFIED_USERNAMES && !self.entries.contains_key(&username) {
            self.entries.clear();
        }
        let remembered = self.entries.entry(username).or_default();
        remembered.retain(|known| known.credential_id != verified.credential_id);
        // The registry never holds more credentials than this for one username; should it ever,
        // the oldest verification goes.
        if remembered.len() >= MAX_CREDENTIALS_PER_PRINCIPAL {
            remembered.remove(0);
        }
        remembered.push(verified);
    }

    /// Forgets the verification of one credential, which is being removed.
    pub fn forget(&mut self, username: &str, credential_id: &str) {
        if let Some(remembered) = self.entries.get_mut(username) {
            remembered.retain(|known| known.credential_id != credential_id);
            if remembered.is_empty() {
                self.entries.remove(username);
            }
        }
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
        cache.forget("t/devices/d", "c1");
        assert_eq!(cache.lookup("t/devices/d", &digest), None);
        assert_eq!(cache.len(), 0, "an empty username is dropped");
    }

    #[test]
    fn each_credential_of_a_username_is_remembered_and_forgotten_alone() {
        let mut cache = VerifiedCache::new([7; DIGEST_KEY_BYTES]);
        let passwords: Vec<String> = (0..MAX_CREDENTIALS_PER_PRINCIPAL)
            .map(|n| format!("password {n}"))
            .collect();
        for (n, password) in passwords.iter().enumerate() {
            cache.remember(
                "t/apps/a".into(),
                Verified {
                    digest: cache.digest(password.as_bytes()),
                    credential_id: format!("c{n}"),
                },
            );
        }
        for (n, password) in passwords.iter().enumerate() {
            let id = format!("c{n}");
            assert_eq!(
                cache.lookup("t/apps/a", &cache.digest(password.as_bytes())),
                Some(id.as_str())
            );
        }
        cache.forget("t/apps/a", "c1");
        assert_eq!(
            cache.lookup("t/apps/a", &cache.digest(passwords[1].as_bytes())),
            None
        );
        assert_eq!(
            cache.lookup("t/apps/a", &cache.digest(passwords[0].as_bytes())),
            Some("c0"),
            "the other credentials stay remembered"
        );
        // A credential's new verification replaces its old one.
        let digest = cache.digest(b"rehashed");
        cache.remember(
            "t/apps/a".into(),
            Verified {
                digest,
                credential_id: "c0".into(),
            },
        );
        assert_eq!(cache.lookup("t/apps/a", &digest), Some("c0"));
        assert_eq!(
            cache.lookup("t/apps/a", &cache.digest(passwords[0].as_bytes())),
            None
        );
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
