//! Durable storage of the API tokens HTTP clients authenticate with.
//!
//! [`TokenStore`] is the seam between the token registry (`doppel-auth`) and a backend. The
//! registry keeps every token in memory and writes through; the store is read only at start.
//! Both backends use the key and value forms defined here, so they agree.
//!
//! The store knows nothing of what roles mean: it keeps their names as text, so that adding a
//! role is a change to `doppel-auth` alone and an older binary can still read a newer record.

use crate::StoreError;
use doppel_model::{Millis, ModelError, TenantId};
use serde::{Deserialize, Serialize};

/// Bytes of a token's secret hash (SHA-256).
pub const TOKEN_HASH_BYTES: usize = 32;

/// Longest token id a store keeps. The registry makes 16-character ids; the bound keeps a key
/// far below any backend's key limit, and lets `delete_token` answer `false` for an id no token
/// can have (such as one taken from a URL) without asking the backend.
pub const MAX_TOKEN_ID_BYTES: usize = 128;

/// Version written into every token record. Fields added later with a default do not change it;
/// a change an older binary would misread does, so that binary refuses the record instead.
const TOKEN_RECORD_VERSION: u32 = 1;

/// One token as it is kept: its id, the hash of its secret and what it grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    /// Names the token in lists and for revocation. Chosen by the registry; never empty and at
    /// most [`MAX_TOKEN_ID_BYTES`].
    pub id: String,
    /// SHA-256 of the secret. The secret itself is never stored.
    pub hash: [u8; TOKEN_HASH_BYTES],
    /// A label for operators ("grafana", "ci"); not unique.
    pub name: String,
    /// The names of the roles the token grants, as the registry spells them.
    pub roles: Vec<String>,
    /// The one tenant the token is limited to, or `None` for every tenant.
    pub tenant: Option<TenantId>,
    /// When the token was created; shown to operators deciding what to revoke.
    pub created_at: Millis,
    /// From when the token no longer verifies, or `None` if never.
    pub expires_at: Option<Millis>,
}

/// A durable home for API tokens.
///
/// # The contract (every backend, checked by [`conformance`](crate::conformance))
/// - **Durability:** `put_token` and `delete_token` return `Ok` only once the change is on stable
///   storage (fsync or equivalent); after a crash the store holds every change that returned
///   `Ok`, and none that returned `Err` may be assumed durable.
/// - **Atomicity:** each call is one change that becomes visible and durable whole or not at all.
/// - **Identity:** a token is identified by its `id` alone; putting one with the id of a stored
///   one replaces it.
/// - **Exact answers:** `delete_token` returns whether the token existed just before the call,
///   also when calls on the same token run concurrently, and `false` for any id no token can
///   have (empty or longer than [`MAX_TOKEN_ID_BYTES`]).
/// - **Loading:** `load_tokens` visits every stored token exactly once, with every field as it
///   was put.
pub trait TokenStore: Send + Sync + 'static {
    /// Stores `token` durably, replacing one with the same id. Refuses an empty or overlong id.
    fn put_token(&self, token: &StoredToken) -> Result<(), StoreError>;

    /// Deletes one token durably. Returns whether it existed.
    fn delete_token(&self, id: &str) -> Result<bool, StoreError>;

    /// Visits every stored token, to rebuild memory at start. Returns how many were visited.
    fn load_tokens(&self, visit: &mut dyn FnMut(StoredToken)) -> Result<u64, StoreError>;
}

/// The stored value: everything but the id, which is the key.
#[derive(Serialize, Deserialize)]
struct TokenValue {
    /// [`TOKEN_RECORD_VERSION`] when written.
    v: u32,
    /// The secret's SHA-256 in lowercase hex, so the record stays readable text.
    hash: String,
    name: String,
    roles: Vec<String>,
    tenant: Option<TenantId>,
    created_at: Millis,
    expires_at: Option<Millis>,
}

/// The storage key of the token `id`, or `None` if no token can have that id.
pub(crate) fn token_key(id: &str) -> Option<&[u8]> {
    (!id.is_empty() && id.len() <= MAX_TOKEN_ID_BYTES).then_some(id.as_bytes())
}

/// The key and stored value of `token`.
pub(crate) fn encode(token: &StoredToken) -> Result<(&[u8], Vec<u8>), StoreError> {
    let cannot = |what: String| {
        StoreError::Corrupt(ModelError::CorruptRecord(format!(
            "cannot encode token {:?}: {what}",
            token.id
        )))
    };
    let key = token_key(&token.id).ok_or_else(|| {
        cannot(format!(
            "its id must be 1 to {MAX_TOKEN_ID_BYTES} bytes long"
        ))
    })?;
    let value = TokenValue {
        v: TOKEN_RECORD_VERSION,
        hash: hex(&token.hash),
        name: token.name.clone(),
        roles: token.roles.clone(),
        tenant: token.tenant.clone(),
        created_at: token.created_at,
        expires_at: token.expires_at,
    };
    let value = serde_json::to_vec(&value).map_err(|err| cannot(err.to_string()))?;
    Ok((key, value))
}

/// Reads a token back from the key and value written by [`encode`].
pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<StoredToken, StoreError> {
    let corrupt = |what: &str| {
        StoreError::Corrupt(ModelError::CorruptRecord(format!(
            "token {}: {what}",
            String::from_utf8_lossy(key)
        )))
    };
    let id = String::from_utf8(key.to_vec()).map_err(|_| corrupt("the key is not UTF-8"))?;
    let value: TokenValue =
        serde_json::from_slice(value).map_err(|err| corrupt(&err.to_string()))?;
    if value.v > TOKEN_RECORD_VERSION {
        return Err(corrupt(&format!(
            "record version {} was written by a newer doppel, which this one cannot read",
            value.v
        )));
    }
    let hash = unhex(&value.hash).ok_or_else(|| corrupt("the hash is not 64 hex digits"))?;
    Ok(StoredToken {
        id,
        hash,
        name: value.name,
        roles: value.roles,
        tenant: value.tenant,
        created_at: value.created_at,
        expires_at: value.expires_at,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; TOKEN_HASH_BYTES]> {
    if text.len() != 2 * TOKEN_HASH_BYTES {
        return None;
    }
    // Digit by digit rather than `from_str_radix`, which would also take a sign ("+f").
    let nibble = |digit: u8| char::from(digit).to_digit(16).map(|n| n as u8);
    let mut bytes = [0; TOKEN_HASH_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str) -> StoredToken {
        StoredToken {
            id: id.into(),
            hash: std::array::from_fn(|i| (i * 37) as u8),
            name: "grafana".into(),
            roles: vec!["app-read".into(), "operator".into()],
            tenant: Some(TenantId::new("acme").expect("a valid tenant id")),
            created_at: Millis(1_700_000_000_000),
            expires_at: Some(Millis(1_800_000_000_000)),
        }
    }

    #[test]
    fn records_round_trip() {
        let everywhere = StoredToken {
            tenant: None,
            expires_at: None,
            ..token("00ff")
        };
        for stored in [token("0a1b2c3d4e5f6071"), everywhere] {
            let (key, value) = encode(&stored).expect("the record encodes");
            assert_eq!(key, stored.id.as_bytes());
            assert_eq!(decode(key, &value).expect("the record decodes"), stored);
        }
    }

    #[test]
    fn the_value_is_versioned_text_without_the_id() {
        let (_, value) = encode(&token("0a1b")).expect("the record encodes");
        let value: serde_json::Value = serde_json::from_slice(&value).expect("the record is JSON");
        assert_eq!(value["v"], 1);
        assert_eq!(value["hash"].as_str().expect("the hash is text").len(), 64);
        assert!(value.get("id").is_none());
    }

    #[test]
    fn ids_no_token_can_have_are_refused() {
        assert!(token_key("").is_none());
        assert!(token_key(&"a".repeat(MAX_TOKEN_ID_BYTES + 1)).is_none());
        assert!(token_key(&"a".repeat(MAX_TOKEN_ID_BYTES)).is_some());
        assert!(encode(&token("")).is_err());
    }

    #[test]
    fn damaged_or_newer_records_are_corrupt_not_panics() {
        let stored = token("0a1b");
        let (key, value) = encode(&stored).expect("the record encodes");
        assert!(decode(key, b"not json").is_err());
        assert!(decode(b"\xff", &value).is_err());
        let mut record: serde_json::Value =
            serde_json::from_slice(&value).expect("the record is JSON");
        record["hash"] = "zz".repeat(32).into();
        assert!(decode(key, &serde_json::to_vec(&record).expect("JSON serializes")).is_err());
        record["hash"] = format!("+f{}", "ab".repeat(31)).into();
        assert!(decode(key, &serde_json::to_vec(&record).expect("JSON serializes")).is_err());
        record["hash"] = "ab".into();
        assert!(decode(key, &serde_json::to_vec(&record).expect("JSON serializes")).is_err());
        let mut record: serde_json::Value =
            serde_json::from_slice(&value).expect("the record is JSON");
        record["v"] = 2.into();
        let err = decode(key, &serde_json::to_vec(&record).expect("JSON serializes")).unwrap_err();
        assert!(err.to_string().contains("newer doppel"), "{err}");
    }
}
