//! API tokens: bearer secrets for the HTTP API, each with roles and a tenant scope.
//!
//! [`Tokens`] keeps every token in memory, writes changes through to a
//! [`TokenStore`](doppel_store::TokenStore) and verifies presented secrets. As in the credential
//! [`Registry`](crate::Registry), a change reaches memory only once the store has answered `Ok`,
//! so memory never holds a token a restart would lose, and a revocation takes effect in memory
//! only once it is durable.
//!
//! # Why SHA-256 and not Argon2
//! A token secret is 32 bytes from the operating system's random source (256 bits), and a
//! supplied one must look as random. No dictionary or rule list shortens the search for such a
//! secret, so a stolen hash is as hard to reverse with a fast hash as with a slow one: 2^256
//! guesses either way. A slow password hash would add nothing but tens of milliseconds of CPU
//! and 19 MiB to every HTTP request. Hashing still matters: a copy of the data folder does not
//! hand out working secrets.
//!
//! # Why a lookup by hash
//! `verify` hashes the presented secret and looks the hash up in a map, so no secret is ever
//! compared with another byte by byte. How long the lookup takes can depend on how many leading
//! bytes of the presented hash match a stored one, which tells an attacker nothing: finding a
//! secret whose hash shares a prefix with a stored hash does not bring them closer to the secret.

use crate::error::{AuthError, SecretProblem};
pub use crate::limits::{MAX_SECRET_BYTES, MAX_TOKEN_NAME_CHARS, MIN_SECRET_CHARS, SECRET_PREFIX};
use crate::password::{self, GENERATED_SECRET_BYTES};
use crate::task::{blocking, run_to_completion};
use doppel_model::{Millis, ModelError, TenantId};
use doppel_store::{StoreError, StoredToken, TOKEN_HASH_BYTES, TokenStore};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::broadcast;

/// Random bytes in a generated secret: 256 bits, beyond any guessing attack even if a hash
/// leaks. Encoded as 43 characters of base64url without padding.
pub const SECRET_BYTES: usize = GENERATED_SECRET_BYTES;

/// Fewest distinct characters a supplied secret must use. 43 random base64url characters use
/// about 31 on average and fewer than 16 practically never, while a placeholder such as
/// `dpt_aaaa…` or a short word repeated uses far fewer. This is no measure of entropy (nothing
/// can tell how a string was made); it only catches the secrets that plainly were not random.
pub const MIN_DISTINCT_SECRET_CHARS: usize = 16;

/// Random bytes in a token id: 64 bits, shown as 16 hex characters. Ids are not secret; they
/// only need to be unique among the hub's tokens.
const TOKEN_ID_BYTES: usize = 8;

/// Revocations buffered for a slow listener; an operator revokes tokens one at a time, so this
/// is never reached in practice.
const REVOCATION_BACKLOG: usize = 1024;

/// What a token allows. What each role grants is the HTTP layer's policy; the roles do not
/// imply one another here ([`TokenInfo::has_role`] is plain membership).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    Operator,
    AppWrite,
    AppRead,
}

impl Role {
    /// Every role, in the order they are listed to users.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::AppWrite, Role::AppRead];

    /// The role's name as users write it, in the API, the CLI and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::AppWrite => "app-write",
            Role::AppRead => "app-read",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| AuthError::UnknownRole {
                role: text.chars().take(MAX_TOKEN_NAME_CHARS).collect(),
            })
    }
}

/// How [`TenantScope::All`] is written where a tenant id could stand: in the token API and in
/// a JWT's tenant claim.
pub const ALL_TENANTS: &str = "*";

/// Which tenants' data a token reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant, present and future.
    All,
    /// This tenant only.
    Tenant(TenantId),
}

impl TenantScope {
    /// Whether the scope reaches the data of the tenant named `tenant` (as a request names it,
    /// valid or not: a scope of all tenants lets the request on to be judged on its own).
    pub fn covers(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Tenant(own) => own.as_str() == tenant,
        }
    }
}

/// A token as listed and as verification answers it: everything but its secret and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Names the token in lists and for revocation; 16 hex characters for tokens made here.
    pub id: String,
    /// Says who uses the token; not unique.
    pub name: String,
    /// What the token allows; sorted, without duplicates. Never empty when created; empty only
    /// if the store named roles this version does not know (see [`Tokens::load`]).
    pub roles: Vec<Role>,
    /// Which tenants the token reaches.
    pub tenant: TenantScope,
    /// When it was created, by the caller's clock.
    pub created_at: Millis,
    /// From this instant on the token no longer verifies; `None` if never. An expired token
    /// stays listed until it is revoked, so operators see what stopped working and why.
    pub expires_at: Option<Millis>,
}

impl TokenInfo {
    /// Whether the token holds `role` itself; no role implies another.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the token has expired at `now`: its expiry is `now` or earlier.
    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|expires_at| expires_at <= now)
    }

    /// Whether the token reaches the data of the tenant named `tenant` (see
    /// [`TenantScope::covers`]).
    pub fn covers(&self, tenant: &str) -> bool {
        self.tenant.covers(tenant)
    }
}

/// What a caller asks for when creating a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    /// Says who uses the token: 1 to [`MAX_TOKEN_NAME_CHARS`] printable characters.
    pub name: String,
    /// At least one; duplicates are dropped.
    pub roles: Vec<Role>,
    pub tenant: TenantScope,
    /// Must lie after the creation instant; `None` for a token that does not expire.
    pub expires_at: Option<Millis>,
}

/// A token just created: the only time its secret can be read.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedToken {
    pub info: TokenInfo,
    /// The bearer secret in clear: returned once, stored only as a hash.
    pub secret: String,
}

/// Keeps the secret out of logs.
impl fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedToken")
            .field("info", &self.info)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// SHA-256 of a token secret: how memory and the store know a token.
type SecretHash = [u8; TOKEN_HASH_BYTES];

/// The API tokens, loaded at start and verified from memory. Cloning shares them.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    /// The durable copy; written before memory changes.
    store: Arc<dyn TokenStore>,
    /// Every token, read by each HTTP request and written only by an operator's change: a
    /// read-write lock lets requests verify in parallel.
    state: RwLock<State>,
    /// Serialises create and revoke, which check memory (a free id, an unused secret) before
    /// their store write and change memory after it. They are an operator's actions, so this
    /// costs nothing.
    writes: tokio::sync::Mutex<()>,
    /// Tells listeners (open event streams) which token was revoked, so that they end at once
    /// rather than at their next request.
    revocations: broadcast::Sender<String>,
}

#[derive(Default)]
struct State {
    /// Token ids by the hash of their secret: what `verify` looks up.
    by_hash: HashMap<SecretHash, String>,
    /// Tokens by id, with the hash that keys them in `by_hash`.
    by_id: HashMap<String, (TokenInfo, SecretHash)>,
}

impl State {
    /// Adds a token whose id and hash are both unused. Returns the id already holding `hash`
    /// otherwise, and changes nothing.
    fn add(&mut self, info: TokenInfo, hash: SecretHash) -> Result<(), String> {
        if self.by_id.contains_key(&info.id) {
            return Err(info.id);
        }
        match self.by_hash.entry(hash) {
            Entry::Occupied(holder) => Err(holder.get().clone()),
            Entry::Vacant(slot) => {
                slot.insert(info.id.clone());
                self.by_id.insert(info.id.clone(), (info, hash));
                Ok(())
            }
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some((_, hash)) = self.by_id.remove(id) {
            self.by_hash.remove(&hash);
        }
    }
}

impl Tokens {
    /// Reads every token from `store` into memory. Blocking: call it before serving, or on a
    /// blocking thread.
    ///
    /// A stored role this version does not know is left out of the token (with a warning)
    /// rather than refused: the token then allows less, never more, and an older binary still
    /// starts on a newer store.
    pub fn load(store: Arc<dyn TokenStore>) -> Result<Tokens, AuthError> {
        let mut state = State::default();
        let mut duplicate = None;
        let count = store.load_tokens(&mut |stored| {
            let (info, hash) = from_stored(stored);
            let id = info.id.clone();
            if let Err(holder) = state.add(info, hash) {
                duplicate.get_or_insert((id, holder));
            }
        })?;
        if let Some((id, holder)) = duplicate {
            return Err(StoreError::Corrupt(ModelError::CorruptRecord(format!(
                "tokens {holder} and {id} have the same secret hash"
            )))
            .into());
        }
        tracing::debug!(tokens = count, "loaded API tokens");
        Ok(Tokens {
            inner: Arc::new(Inner {
                store,
                state: RwLock::new(state),
                writes: tokio::sync::Mutex::new(()),
                revocations: broadcast::channel(REVOCATION_BACKLOG).0,
            }),
        })
    }

    /// Creates a token with a new random secret and returns it with the secret: the only time
    /// the secret is shown. Returns once the token is durable; it verifies from then on.
    ///
    /// Runs to completion even if the caller stops waiting, so memory and store agree.
    pub async fn create(&self, new: NewToken, now: Millis) -> Result<CreatedToken, AuthError> {
        self.create_with_secret(new, &generate_secret()?, now).await
    }

    /// Creates a token with a secret the operator supplies, such as a bootstrap token set in
    /// the environment before the first start. The secret must look like a generated one (see
    /// [`check_secret`]), so that it carries as many bits as one.
    ///
    /// Runs to completion even if the caller stops waiting, so memory and store agree.
    pub async fn create_with_secret(
        &self,
        new: NewToken,
        secret: &str,
        now: Millis,
    ) -> Result<CreatedToken, AuthError> {
        check_secret(secret)?;
        let NewToken {
            name,
            mut roles,
            tenant,
            expires_at,
        } = new;
        check_name(&name)?;
        roles.sort_unstable();
        roles.dedup();
        if roles.is_empty() {
            return Err(AuthError::NoRoles);
        }
        if let Some(expires_at) = expires_at.filter(|expires_at| *expires_at <= now) {
            return Err(AuthError::ExpiryInPast { expires_at, now });
        }
        let hash = hash(secret);
        let secret = secret.to_owned();
        let inner = Arc::clone(&self.inner);
        run_to_completion(async move {
            let _writes = inner.writes.lock().await;
            let id = {
                let state = inner.read();
                if let Some(holder) = state.by_hash.get(&hash) {
                    return Err(AuthError::TokenSecretInUse { id: holder.clone() });
                }
                // 64 random bits never collide in practice; checking keeps a put from ever
                // replacing a token.
                loop {
                    let id = password::random_hex::<TOKEN_ID_BYTES>()?;
                    if !state.by_id.contains_key(&id) {
                        break id;
                    }
                }
            };
            let info = TokenInfo {
                id,
                name,
                roles,
                tenant,
                created_at: now,
                expires_at,
            };
            let stored = to_stored(&info, hash);
            let store = Arc::clone(&inner.store);
            blocking(move || store.put_token(&stored)).await??;
            // Cannot clash: `writes` has been held since the id and the hash were found free.
            if let Err(holder) = inner.write().add(info.clone(), hash) {
                return Err(AuthError::TokenSecretInUse { id: holder });
            }
            Ok(CreatedToken { info, secret })
        })
        .await
    }

    /// Every token, expired ones included, oldest first (ties by id). Never secrets or hashes.
    pub fn list(&self) -> Vec<TokenInfo> {
        let mut tokens: Vec<TokenInfo> = self
            .inner
            .read()
            .by_id
            .values()
            .map(|(info, _)| info.clone())
            .collect();
        tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        tokens
    }

    /// The token `id`, expired or not.
    pub fn get(&self, id: &str) -> Option<TokenInfo> {
        self.inner
            .read()
            .by_id
            .get(id)
            .map(|(info, _)| info.clone())
    }

    /// Revokes the token `id`. Returns whether it existed. Once this returns `Ok`, the token
    /// verifies no more, now or after a restart, and its id has been sent to every
    /// [`revocations`](Self::revocations) receiver.
    ///
    /// Runs to completion even if the caller stops waiting, so memory and store agree.
    pub async fn revoke(&self, id: &str) -> Result<bool, AuthError> {
        let inner = Arc::clone(&self.inner);
        let id = id.to_owned();
        run_to_completion(async move {
            let _writes = inner.writes.lock().await;
            let store = Arc::clone(&inner.store);
            let existed = {
                let id = id.clone();
                blocking(move || store.delete_token(&id)).await??
            };
            // Only now: had the delete failed, the token would still work after a restart, and
            // the caller must not be told it is gone.
            inner.write().remove(&id);
            if existed {
                // Nobody listening (no open stream) is fine.
                let _ = inner.revocations.send(id);
            }
            Ok(existed)
        })
        .await
    }

    /// The token `secret` belongs to, unless it is unknown, revoked or expired at `now`. One
    /// SHA-256 and one map lookup: cheap enough for every request.
    pub fn verify(&self, secret: &str, now: Millis) -> Option<TokenInfo> {
        // No token has such a secret; spare the hash of an oversized header.
        if secret.len() > MAX_SECRET_BYTES || !secret.starts_with(SECRET_PREFIX) {
            return None;
        }
        let hash = hash(secret);
        let state = self.inner.read();
        let (info, _) = state.by_id.get(state.by_hash.get(&hash)?)?;
        (!info.is_expired(now)).then(|| info.clone())
    }

    /// The id of every token revoked from now on, for ending the streams it opened. A receiver
    /// that falls more than 1024 revocations behind gets `RecvError::Lagged`; it should then
    /// check each of its streams' tokens with [`get`](Self::get).
    pub fn revocations(&self) -> broadcast::Receiver<String> {
        self.inner.revocations.subscribe()
    }

    /// Whether there is no token at all (expired ones count): when bootstrapping is called for.
    pub fn is_empty(&self) -> bool {
        self.inner.read().by_id.is_empty()
    }
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks that a supplied secret has the form of a generated one: the prefix, then at least
/// [`MIN_SECRET_CHARS`] base64url characters using at least [`MIN_DISTINCT_SECRET_CHARS`]
/// distinct ones, at most [`MAX_SECRET_BYTES`] in all.
/// A new random token secret, for a caller that must keep it somewhere before the token exists
/// (the first admin token, written to a file first): the same 32 random bytes in base64url as
/// a generated device password, after [`SECRET_PREFIX`].
pub fn generate_secret() -> Result<String, AuthError> {
    Ok(format!("{SECRET_PREFIX}{}", password::generate()?))
}

pub fn check_secret(secret: &str) -> Result<(), AuthError> {
    let problem = |problem| Err(AuthError::InvalidTokenSecret { problem });
    let Some(body) = secret.strip_prefix(SECRET_PREFIX) else {
        return problem(SecretProblem::MissingPrefix);
    };
    if secret.len() > MAX_SECRET_BYTES {
        return problem(SecretProblem::TooLong {
            bytes: secret.len(),
        });
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return problem(SecretProblem::NotBase64Url);
    }
    // All ASCII from here on, so bytes are characters.
    if body.len() < MIN_SECRET_CHARS {
        return problem(SecretProblem::TooShort { chars: body.len() });
    }
    let mut seen = [false; 256];
    for byte in body.bytes() {
        seen[usize::from(byte)] = true;
    }
    let distinct = seen.iter().filter(|seen| **seen).count();
    if distinct < MIN_DISTINCT_SECRET_CHARS {
        return problem(SecretProblem::Repetitive { distinct });
    }
    Ok(())
}

/// Checks a token name: not blank, not too long, nothing that would garble a list or a log.
fn check_name(name: &str) -> Result<(), AuthError> {
    if name.trim().is_empty() {
        return Err(AuthError::EmptyTokenName);
    }
    let length = name.chars().count();
    if length > MAX_TOKEN_NAME_CHARS {
        return Err(AuthError::TokenNameTooLong { length });
    }
    if name.chars().any(char::is_control) {
        return Err(AuthError::TokenNameNotPrintable);
    }
    Ok(())
}

fn hash(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

fn to_stored(info: &TokenInfo, hash: SecretHash) -> StoredToken {
    StoredToken {
        id: info.id.clone(),
        hash,
        name: info.name.clone(),
        roles: info
            .roles
            .iter()
            .map(|role| role.as_str().to_owned())
            .collect(),
        tenant: match &info.tenant {
            TenantScope::All => None,
            TenantScope::Tenant(tenant) => Some(tenant.clone()),
        },
        created_at: info.created_at,
        expires_at: info.expires_at,
    }
}

fn from_stored(stored: StoredToken) -> (TokenInfo, SecretHash) {
    let mut roles: Vec<Role> = stored
        .roles
        .iter()
        .filter_map(|name| match name.parse() {
            Ok(role) => Some(role),
            Err(_) => {
                tracing::warn!(token = %stored.id, role = %name, "a stored token has a role this version does not know; the token works without it");
                None
            }
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let info = TokenInfo {
        id: stored.id,
        name: stored.name,
        roles,
        tenant: stored.tenant.map_or(TenantScope::All, TenantScope::Tenant),
        created_at: stored.created_at,
        expires_at: stored.expires_at,
    };
    (info, stored.hash)
}

#[cfg(test)]
mod tests;
