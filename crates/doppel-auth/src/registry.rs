//! The credential registry: every credential in memory, written through to a [`CredentialStore`].
//!
//! Management (create, delete) writes the store first and changes memory only once the store has
//! answered `Ok`, so memory never holds a credential that a restart would lose, and a delete
//! revokes only what is revoked on disk too. Verification reads memory only.
//!
//! Known weakness: a username with no credential is refused at once, while a wrong password costs
//! an Argon2 run, so timing tells whether a username has credentials. Usernames are made of
//! tenant and device ids, which are not secrets.

use crate::error::AuthError;
use crate::limits::{MAX_CREDENTIALS_PER_PRINCIPAL, MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
use crate::password;
use crate::task::{blocking, run_to_completion};
use crate::verified::{Verified, VerifiedCache};
use doppel_model::{Millis, Principal, TenantId};
use doppel_store::{CredentialStore, StoredCredential};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{Semaphore, broadcast};

/// Revocations buffered for a slow listener; an operator removes credentials one at a time, so
/// this is never reached in practice.
const REVOCATION_BACKLOG: usize = 1024;

/// A credential that was removed: sessions that logged in with it must end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub username: String,
    pub credential_id: String,
}

/// Argon2 runs at once when the number of cores cannot be read.
const FALLBACK_CONCURRENT_HASHES: usize = 2;

/// Argon2 runs at once by default: one per core. Each keeps a core busy for tens of milliseconds;
/// more at once would only make each one slower and hold more memory.
pub fn default_concurrent_hashes() -> usize {
    std::thread::available_parallelism().map_or(FALLBACK_CONCURRENT_HASHES, std::num::NonZero::get)
}

/// Bytes of the key that makes the verification cache's digests unique to this process.
const CACHE_KEY_BYTES: usize = 32;

/// A credential just created: the only time its password can be read.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedCredential {
    /// Whose credential it is.
    pub principal: Principal,
    /// Names the credential for listing and removal.
    pub credential_id: String,
    /// What the client sends as its MQTT username.
    pub username: String,
    /// The password in clear: returned once, stored only as a hash.
    pub password: String,
    /// When it was created, by the caller's clock.
    pub created_at: Millis,
}

/// Keeps the password out of logs.
impl fmt::Debug for CreatedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedCredential")
            .field("principal", &self.principal)
            .field("credential_id", &self.credential_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A credential as listed: neither its password nor its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialInfo {
    /// Names the credential for removal.
    pub credential_id: String,
    /// What the client sends as its MQTT username.
    pub username: String,
    /// When it was created.
    pub created_at: Millis,
}

/// Devices' and applications' credentials, loaded at start and verified from memory.
/// Cloning shares the registry.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// The durable copy; written before memory changes.
    store: Arc<dyn CredentialStore>,
    /// Credentials and remembered verifications under one lock, so that a verification that
    /// ends while a delete runs cannot remember a credential the delete has just removed.
    state: Mutex<State>,
    /// Serialises create and delete, which check the per-principal limit before their store
    /// write and change memory after it. They are an operator's actions, so this costs nothing.
    writes: tokio::sync::Mutex<()>,
    /// Bounds Argon2 runs in flight (to the number of cores unless configured): each holds
    /// 19 MiB and a core for tens of milliseconds, so running more at once only costs memory
    /// (think of a thousand devices reconnecting after a restart) and makes every one of them
    /// slower. Hashes for new credentials and password checks at login share it.
    hashing: Semaphore,
    /// Tells listeners (the MQTT side) which credential was removed, so that it can end the
    /// sessions that logged in with it.
    revocations: broadcast::Sender<Revocation>,
}

struct State {
    /// Credentials by username.
    holders: HashMap<String, Holder>,
    /// Successful verifications, so that a reconnecting client skips Argon2.
    verified: VerifiedCache,
}

/// One principal's credentials.
struct Holder {
    principal: Principal,
    credentials: Vec<Credential>,
}

#[derive(Clone)]
struct Credential {
    id: String,
    hash: String,
    created_at: Millis,
}

/// What memory alone says about a login, before any Argon2 work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Recall {
    /// The password's length rules it out: no credential was ever made with such a password.
    Malformed,
    /// No credential has this username.
    UnknownUsername,
    /// The password verified for this username before, against this credential, which still
    /// exists.
    Known(Principal, String),
    /// Only Argon2 can tell.
    Unknown,
}

impl State {
    fn recall(&self, username: &str, password: &[u8]) -> Recall {
        // (Were these bounds ever narrowed, stored passwords outside them would stop verifying
        // here.)
        if !(MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
            return Recall::Malformed;
        }
        let Some(holder) = self.holders.get(username) else {
            return Recall::UnknownUsername;
        };
        match self
            .verified
            .lookup(username, &self.verified.digest(password))
        {
            Some(id) if self.holds(username, id) => {
                Recall::Known(holder.principal.clone(), id.to_owned())
            }
            _ => Recall::Unknown,
        }
    }

    fn credentials(&self, username: &str) -> &[Credential] {
        self.holders
            .get(username)
            .map_or(&[], |holder| &holder.credentials)
    }

    fn holds(&self, username: &str, credential_id: &str) -> bool {
        self.credentials(username)
            .iter()
            .any(|credential| credential.id == credential_id)
    }

    fn add(&mut self, stored: StoredCredential) {
        let username = stored.principal.username();
        let holder = self.holders.entry(username).or_insert_with(|| Holder {
            principal: stored.principal,
            credentials: Vec::new(),
        });
        holder.credentials.retain(|c| c.id != stored.credential_id);
        holder.credentials.push(Credential {
            id: stored.credential_id,
            hash: stored.hash,
            created_at: stored.created_at,
        });
    }

    fn remove(&mut self, username: &str, credential_id: &str) {
        if let Some(holder) = self.holders.get_mut(username) {
            holder.credentials.retain(|c| c.id != credential_id);
            if holder.credentials.is_empty() {
                self.holders.remove(username);
            }
        }
    }
}

impl Registry {
    /// Reads every credential from `store` into memory. Blocking: call it before serving, or on
    /// a blocking thread. At most `concurrent_hashes` Argon2 runs go at once (at least one; see
    /// [`default_concurrent_hashes`]).
    pub fn load(
        store: Arc<dyn CredentialStore>,
        concurrent_hashes: usize,
    ) -> Result<Registry, AuthError> {
        let mut state = State {
            holders: HashMap::new(),
            verified: VerifiedCache::new(password::random_bytes::<CACHE_KEY_BYTES>()?),
        };
        let count = store.load_credentials(&mut |stored| state.add(stored))?;
        tracing::debug!(
            credentials = count,
            principals = state.holders.len(),
            "loaded credentials"
        );
        let permits = concurrent_hashes.max(1);
        Ok(Registry {
            inner: Arc::new(Inner {
                store,
                state: Mutex::new(state),
                writes: tokio::sync::Mutex::new(()),
                hashing: Semaphore::new(permits),
                revocations: broadcast::channel(REVOCATION_BACKLOG).0,
            }),
        })
    }

    /// Creates a credential for `principal`, with `password` or, if `None`, a generated one, and
    /// returns it with its password: the only time the password is shown. Returns once the
    /// credential is durable; it verifies from then on. The principal's twin need not exist.
    ///
    /// Runs to completion even if the caller stops waiting, so memory and store agree.
    pub async fn create(
        &self,
        principal: Principal,
        password: Option<String>,
        now: Millis,
    ) -> Result<CreatedCredential, AuthError> {
        principal.check()?;
        let password = match password {
            Some(supplied) => {
                password::check_supplied(&supplied)?;
                supplied
            }
            None => password::generate()?,
        };
        let inner = Arc::clone(&self.inner);
        run_to_completion(async move {
            let hash = inner.hash(password.clone().into_bytes()).await?;
            let username = principal.username();
            let _writes = inner.writes.lock().await;
            let credential_id = {
                let state = inner.lock();
                let existing = state.credentials(&username);
                if existing.len() >= MAX_CREDENTIALS_PER_PRINCIPAL {
                    return Err(AuthError::TooManyCredentials {
                        username,
                        limit: MAX_CREDENTIALS_PER_PRINCIPAL,
                    });
                }
                // 64 random bits never collide in practice; checking keeps a put from ever
                // replacing a credential.
                loop {
                    let id = password::generate_credential_id()?;
                    if !state.holds(&username, &id) {
                        break id;
                    }
                }
            };
            let stored = StoredCredential {
                principal: principal.clone(),
                credential_id: credential_id.clone(),
                hash,
                created_at: now,
            };
            let store = Arc::clone(&inner.store);
            let stored = blocking(move || store.put_credential(&stored).map(|()| stored)).await??;
            // The new credential has an id of its own, so what is remembered for the others stays
            // true: a device keeps its fast login (and its way in while its username is under
            // attack) through a rotation.
            inner.lock().add(stored);
            Ok(CreatedCredential {
                principal,
                credential_id,
                username,
                password,
                created_at: now,
            })
        })
        .await
    }

    /// The credentials of `principal`, oldest first, without secrets.
    pub fn list(&self, principal: &Principal) -> Vec<CredentialInfo> {
        let username = principal.username();
        let state = self.inner.lock();
        let mut items: Vec<CredentialInfo> = state
            .credentials(&username)
            .iter()
            .map(|credential| CredentialInfo {
                credential_id: credential.id.clone(),
                username: username.clone(),
                created_at: credential.created_at,
            })
            .collect();
        items.sort_by(|a, b| {
            (a.created_at, &a.credential_id).cmp(&(b.created_at, &b.credential_id))
        });
        items
    }

    /// How many credentials the devices and applications of each tenant have, for every tenant
    /// that has one.
    pub fn credentials_per_tenant(&self) -> HashMap<TenantId, usize> {
        let state = self.inner.lock();
        let mut per_tenant = HashMap::new();
        for holder in state.holders.values() {
            *per_tenant
                .entry(holder.principal.tenant.clone())
                .or_default() += holder.credentials.len();
        }
        per_tenant
    }

    /// Revokes one credential of `principal`. Returns whether it existed. Once this returns
    /// `Ok`, the credential verifies no more, now or after a restart.
    ///
    /// Runs to completion even if the caller stops waiting, so memory and store agree.
    pub async fn delete(
        &self,
        principal: &Principal,
        credential_id: &str,
    ) -> Result<bool, AuthError> {
        let inner = Arc::clone(&self.inner);
        let principal = principal.clone();
        let credential_id = credential_id.to_owned();
        run_to_completion(async move {
            let _writes = inner.writes.lock().await;
            let store = Arc::clone(&inner.store);
            let existed = {
                let (principal, credential_id) = (principal.clone(), credential_id.clone());
                blocking(move || store.delete_credential(&principal, &credential_id)).await??
            };
            let username = principal.username();
            {
                let mut state = inner.lock();
                state.remove(&username, &credential_id);
                state.verified.forget(&username, &credential_id);
            }
            if existed {
                // Nobody listening (no MQTT side) is fine.
                let _ = inner.revocations.send(Revocation {
                    username,
                    credential_id,
                });
            }
            Ok(existed)
        })
        .await
    }

    /// What memory alone says about `password` for `username`: no Argon2 work, no waiting.
    pub(crate) fn recall(&self, username: &str, password: &[u8]) -> Recall {
        self.inner.lock().recall(username, password)
    }

    /// Every credential removed from now on.
    pub fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.inner.revocations.subscribe()
    }

    /// The principal `username` names if `password` matches one of its credentials.
    pub async fn verify(&self, username: &str, password: &[u8]) -> Option<Principal> {
        self.verify_credential(username, password)
            .await
            .map(|(principal, _)| principal)
    }

    /// The principal `username` names and the id of the credential `password` matches. A client
    /// that verified before with the same password is answered from memory; otherwise each of
    /// the principal's credentials is checked with Argon2 on a blocking thread.
    pub async fn verify_credential(
        &self,
        username: &str,
        password: &[u8],
    ) -> Option<(Principal, String)> {
        let (principal, candidates, digest) = {
            let state = self.inner.lock();
            match state.recall(username, password) {
                // Spare the Argon2 runs: no credential could match.
                Recall::Malformed | Recall::UnknownUsername => return None,
                Recall::Known(principal, id) => return Some((principal, id)),
                Recall::Unknown => {}
            }
            let holder = state.holders.get(username)?;
            let digest = state.verified.digest(password);
            (holder.principal.clone(), holder.credentials.clone(), digest)
        };
        let password = password.to_vec();
        let matched = self
            .inner
            .with_hashing_permit(move || {
                candidates
                    .into_iter()
                    .find(|credential| password::matches(&password, &credential.hash))
                    .map(|credential| credential.id)
            })
            .await;
        let matched = match matched {
            Ok(matched) => matched?,
            Err(err) => {
                tracing::warn!(username, error = %err, "cannot verify a password");
                return None;
            }
        };
        let mut state = self.inner.lock();
        // A delete may have run while Argon2 did: accept only a credential that still exists.
        if !state.holds(username, &matched) {
            return None;
        }
        state.verified.remember(
            username.to_owned(),
            Verified {
                digest,
                credential_id: matched.clone(),
            },
        );
        Some((principal, matched))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn hash(&self, password: Vec<u8>) -> Result<String, AuthError> {
        self.with_hashing_permit(move || password::hash(&password))
            .await?
    }

    /// Runs Argon2 work on a blocking thread once one of the hashing permits is free.
    async fn with_hashing_permit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|err| AuthError::Task {
                reason: err.to_string(),
            })?;
        blocking(work).await
    }
}

#[cfg(test)]
mod tests;
