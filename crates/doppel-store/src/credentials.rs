//! Durable storage of the password hashes devices and applications authenticate with.
//!
//! [`CredentialStore`] is the seam between the credential registry (`doppel-auth`) and a
//! backend. The registry keeps every credential in memory and writes through; the store is read
//! only at start. Both backends use the key and value forms defined here, so they agree.

use crate::StoreError;
use doppel_model::id::KEY_SEPARATOR;
use doppel_model::{AppName, DeviceId, Millis, ModelError, Principal, PrincipalKind, TenantId};
use serde::{Deserialize, Serialize};

/// Kind byte of a device principal in a credential key.
const DEVICE_KIND: u8 = b'd';
/// Kind byte of an application principal in a credential key.
const APP_KIND: u8 = b'a';

/// One credential as it is kept: whose it is, its id and the hash of its password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCredential {
    /// Who authenticates with it.
    pub principal: Principal,
    /// Names the credential among the principal's credentials, so one can be revoked while
    /// another keeps working (rotation). Chosen by the registry; never empty.
    pub credential_id: String,
    /// The password's hash as a PHC string (`$argon2id$v=19$m=...`), which carries its own
    /// algorithm, parameters and salt, so parameters can change without a migration.
    pub hash: String,
    /// When the credential was created; shown to operators deciding what to revoke.
    pub created_at: Millis,
}

/// A durable home for credentials.
///
/// # The contract (every backend, checked by [`conformance`](crate::conformance))
/// - **Durability:** `put_credential` and `delete_credential` return `Ok` only once the change
///   is on stable storage (fsync or equivalent); after a crash the store holds every change
///   that returned `Ok`, and none that returned `Err` may be assumed durable.
/// - **Atomicity:** each call is one change that becomes visible and durable whole or not at all.
/// - **Identity:** a credential is identified by its principal and `credential_id`; putting one
///   with the identity of a stored one replaces it. Principals never share credentials: the
///   same id under two principals names two credentials.
/// - **Exact answers:** `delete_credential` returns whether the credential existed just before
///   the call, also when calls on the same credential run concurrently.
/// - **Loading:** `load_credentials` visits every stored credential exactly once.
pub trait CredentialStore: Send + Sync + 'static {
    /// Stores `credential` durably, replacing one with the same principal and id.
    fn put_credential(&self, credential: &StoredCredential) -> Result<(), StoreError>;

    /// Deletes one credential durably. Returns whether it existed.
    fn delete_credential(
        &self,
        principal: &Principal,
        credential_id: &str,
    ) -> Result<bool, StoreError>;

    /// Visits every stored credential, to rebuild memory at start. Returns how many were visited.
    fn load_credentials(&self, visit: &mut dyn FnMut(StoredCredential)) -> Result<u64, StoreError>;
}

/// The stored value: what the key does not already say.
#[derive(Serialize, Deserialize)]
struct CredentialValue {
    hash: String,
    created_at: Millis,
}

/// The storage key: `tenant 0x00 kind 0x00 name 0x00 credential_id`. Ids cannot contain 0x00,
/// so one principal's credentials are a contiguous range and never mix with another's.
pub(crate) fn credential_key(principal: &Principal, credential_id: &str) -> Vec<u8> {
    let kind = match principal.kind {
        PrincipalKind::Device(_) => DEVICE_KIND,
        PrincipalKind::App(_) => APP_KIND,
    };
    let name = principal.kind.name();
    let mut key =
        Vec::with_capacity(principal.tenant.as_str().len() + name.len() + credential_id.len() + 4);
    key.extend_from_slice(principal.tenant.as_str().as_bytes());
    key.extend_from_slice(&[KEY_SEPARATOR, kind, KEY_SEPARATOR]);
    key.extend_from_slice(name.as_bytes());
    key.push(KEY_SEPARATOR);
    key.extend_from_slice(credential_id.as_bytes());
    key
}

/// The stored value of `credential`.
pub(crate) fn encode_value(credential: &StoredCredential) -> Result<Vec<u8>, StoreError> {
    let value = CredentialValue {
        hash: credential.hash.clone(),
        created_at: credential.created_at,
    };
    serde_json::to_vec(&value).map_err(|err| {
        StoreError::Corrupt(ModelError::CorruptRecord(format!(
            "cannot encode credential {}: {err}",
            credential.credential_id
        )))
    })
}

/// Reads a credential back from the key and value written by [`credential_key`] and
/// [`encode_value`].
pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<StoredCredential, StoreError> {
    let corrupt = |what: &str| {
        StoreError::Corrupt(ModelError::CorruptRecord(format!(
            "credential {}: {what}",
            String::from_utf8_lossy(key)
        )))
    };
    let mut parts = key.splitn(4, |b| *b == KEY_SEPARATOR);
    let (Some(tenant), Some(kind), Some(name), Some(credential_id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(corrupt("the key has fewer than four parts"));
    };
    let text =
        |part: &[u8]| String::from_utf8(part.to_vec()).map_err(|_| corrupt("the key is not UTF-8"));
    let tenant = TenantId::new(text(tenant)?)?;
    let kind = match kind {
        [DEVICE_KIND] => PrincipalKind::Device(DeviceId::new(text(name)?)?),
        [APP_KIND] => PrincipalKind::App(AppName::new(text(name)?)?),
        _ => return Err(corrupt("unknown principal kind")),
    };
    let value: CredentialValue =
        serde_json::from_slice(value).map_err(|err| corrupt(&err.to_string()))?;
    Ok(StoredCredential {
        principal: Principal { tenant, kind },
        credential_id: text(credential_id)?,
        hash: value.hash,
        created_at: value.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(kind: PrincipalKind, id: &str) -> StoredCredential {
        StoredCredential {
            principal: Principal {
                tenant: TenantId::new("acme").unwrap(),
                kind,
            },
            credential_id: id.into(),
            hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created_at: Millis(1_700_000_000_000),
        }
    }

    #[test]
    fn keys_and_values_round_trip() {
        for stored in [
            credential(PrincipalKind::Device(DeviceId::new("d").unwrap()), "0a1b"),
            credential(PrincipalKind::App(AppName::new("d").unwrap()), "ff"),
        ] {
            let key = credential_key(&stored.principal, &stored.credential_id);
            assert_eq!(
                decode(&key, &encode_value(&stored).unwrap()).unwrap(),
                stored
            );
        }
    }

    #[test]
    fn devices_and_apps_of_one_name_have_distinct_keys() {
        let device = credential(PrincipalKind::Device(DeviceId::new("x").unwrap()), "1");
        let app = credential(PrincipalKind::App(AppName::new("x").unwrap()), "1");
        assert_ne!(
            credential_key(&device.principal, "1"),
            credential_key(&app.principal, "1")
        );
    }

    #[test]
    fn damaged_records_are_corrupt_not_panics() {
        assert!(decode(b"acme\0d\0x", b"{}").is_err());
        assert!(decode(b"acme\0q\0x\0c1", b"{}").is_err());
        let key = credential_key(
            &credential(PrincipalKind::Device(DeviceId::new("x").unwrap()), "1").principal,
            "1",
        );
        assert!(decode(&key, b"not json").is_err());
    }
}
