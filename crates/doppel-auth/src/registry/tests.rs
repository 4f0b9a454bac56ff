use super::*;
use doppel_model::{AppName, DeviceId, PrincipalKind, TenantId};
use doppel_store::{HistoryBuckets, MemoryStore, StoreError};

const NOW: Millis = Millis(1_700_000_000_000);

fn memory() -> MemoryStore {
    MemoryStore::new(HistoryBuckets::new(1_000))
}

fn registry(store: &MemoryStore) -> Registry {
    Registry::load(Arc::new(store.clone()), default_concurrent_hashes()).unwrap()
}

fn device(name: &str) -> Principal {
    Principal::device(TenantId::new("acme").unwrap(), DeviceId::new(name).unwrap()).unwrap()
}

fn app(name: &str) -> Principal {
    Principal::app(TenantId::new("acme").unwrap(), AppName::new(name).unwrap())
}

/// Whether a verification of `username` is remembered.
fn remembered(registry: &Registry, username: &str, password: &str) -> bool {
    let state = registry.inner.lock();
    let digest = state.verified.digest(password.as_bytes());
    state.verified.lookup(username, &digest).is_some()
}

#[tokio::test]
async fn a_created_credential_verifies_and_a_wrong_password_does_not() {
    let registry = registry(&memory());
    let created = registry.create(device("pump-7"), None, NOW).await.unwrap();
    assert_eq!(created.username, "acme/devices/pump-7");
    assert_eq!(created.created_at, NOW);
    assert_eq!(created.password.len(), 43, "32 random bytes in base64url");
    assert_eq!(
        registry
            .verify(&created.username, created.password.as_bytes())
            .await,
        Some(device("pump-7"))
    );
    let mut wrong = created.password.clone().into_bytes();
    wrong[0] ^= 1;
    assert_eq!(registry.verify(&created.username, &wrong).await, None);
    assert_eq!(
        registry
            .verify("acme/devices/pump-8", created.password.as_bytes())
            .await,
        None
    );
    assert_eq!(
        registry
            .verify("acme/apps/pump-7", created.password.as_bytes())
            .await,
        None,
        "an application of the same name is another principal"
    );
}

#[tokio::test]
async fn a_supplied_password_is_used_and_its_length_is_checked() {
    let store = memory();
    let registry = registry(&store);
    let supplied = "a password of decent length";
    let created = registry
        .create(app("dashboard"), Some(supplied.into()), NOW)
        .await
        .unwrap();
    assert_eq!(created.password, supplied);
    assert_eq!(created.username, "acme/apps/dashboard");
    assert_eq!(
        registry
            .verify("acme/apps/dashboard", supplied.as_bytes())
            .await,
        Some(app("dashboard"))
    );
    for bad in ["short", &"x".repeat(257)] {
        let err = registry
            .create(app("dashboard"), Some(bad.to_owned()), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::InvalidPassword { length } if length == bad.len()),
            "{err}"
        );
    }
    assert_eq!(registry.list(&app("dashboard")).len(), 1);
}

#[tokio::test]
async fn a_named_shadow_cannot_hold_credentials() {
    let registry = registry(&memory());
    let shadow = Principal {
        tenant: TenantId::new("acme").unwrap(),
        kind: PrincipalKind::Device(DeviceId::new("pump-7/shadows/config").unwrap()),
    };
    let err = registry.create(shadow, None, NOW).await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidPrincipal(_)), "{err}");
}

#[tokio::test]
async fn deleting_revokes_one_credential_and_keeps_the_others() {
    let registry = registry(&memory());
    let old = registry.create(device("d"), None, NOW).await.unwrap();
    let new = registry
        .create(device("d"), None, Millis(NOW.0 + 1))
        .await
        .unwrap();
    assert!(
        registry
            .delete(&device("d"), &old.credential_id)
            .await
            .unwrap()
    );
    assert!(
        !registry
            .delete(&device("d"), &old.credential_id)
            .await
            .unwrap(),
        "a second delete finds nothing"
    );
    assert!(!registry.delete(&device("d"), "unknown").await.unwrap());
    assert_eq!(
        registry
            .verify(&old.username, old.password.as_bytes())
            .await,
        None
    );
    assert_eq!(
        registry
            .verify(&new.username, new.password.as_bytes())
            .await,
        Some(device("d"))
    );
    let listed = registry.list(&device("d"));
    assert_eq!(
        listed,
        [CredentialInfo {
            credential_id: new.credential_id,
            username: new.username,
            created_at: Millis(NOW.0 + 1),
        }]
    );
}

#[tokio::test]
async fn credentials_are_counted_per_tenant_devices_and_apps_together() {
    let registry = registry(&memory());
    assert!(registry.credentials_per_tenant().is_empty());
    registry
        .create(device("d"), None, NOW)
        .await
        .expect("the registry answers");
    let second = registry
        .create(device("d"), None, NOW)
        .await
        .expect("the registry answers");
    registry
        .create(app("dashboard"), None, NOW)
        .await
        .expect("the registry answers");
    let other = Principal::app(
        TenantId::new("zeta").expect("a valid tenant id"),
        AppName::new("a").expect("a valid tenant id"),
    );
    let only = registry
        .create(other.clone(), None, NOW)
        .await
        .expect("the registry answers");
    let count = |registry: &Registry, tenant: &str| {
        registry
            .credentials_per_tenant()
            .get(&TenantId::new(tenant).expect("a valid tenant id"))
            .copied()
    };
    assert_eq!(count(&registry, "acme"), Some(3));
    assert_eq!(count(&registry, "zeta"), Some(1));
    registry
        .delete(&device("d"), &second.credential_id)
        .await
        .expect("the registry answers");
    registry
        .delete(&other, &only.credential_id)
        .await
        .expect("the registry answers");
    assert_eq!(count(&registry, "acme"), Some(2));
    assert_eq!(
        count(&registry, "zeta"),
        None,
        "a tenant without any is left out"
    );
}

#[tokio::test]
async fn a_verification_is_remembered_until_its_credential_is_removed() {
    let registry = registry(&memory());
    let first = registry.create(device("d"), None, NOW).await.unwrap();
    let username = first.username.clone();
    assert!(
        registry
            .verify(&username, first.password.as_bytes())
            .await
            .is_some()
    );
    assert!(remembered(&registry, &username, &first.password));

    // Answered from memory: with the hash spoiled, only the cache can still say yes.
    let hash = {
        let mut state = registry.inner.lock();
        let credential = &mut state.holders.get_mut(&username).unwrap().credentials[0];
        std::mem::replace(&mut credential.hash, "spoiled".into())
    };
    assert!(
        registry
            .verify(&username, first.password.as_bytes())
            .await
            .is_some()
    );
    registry
        .inner
        .lock()
        .holders
        .get_mut(&username)
        .unwrap()
        .credentials[0]
        .hash = hash;

    // A rotation: the new credential leaves what is remembered of the old one alone.
    let second = registry.create(device("d"), None, NOW).await.unwrap();
    assert!(
        remembered(&registry, &username, &first.password),
        "a create keeps the principal's verifications"
    );
    assert!(
        registry
            .verify(&username, second.password.as_bytes())
            .await
            .is_some()
    );
    assert!(remembered(&registry, &username, &second.password));
    assert!(
        registry
            .delete(&device("d"), &first.credential_id)
            .await
            .unwrap()
    );
    assert!(
        !remembered(&registry, &username, &first.password),
        "a delete forgets its credential's verification"
    );
    assert!(
        remembered(&registry, &username, &second.password),
        "and only that one"
    );
    assert_eq!(
        registry.verify(&username, first.password.as_bytes()).await,
        None
    );
    assert!(
        registry
            .verify(&username, second.password.as_bytes())
            .await
            .is_some()
    );
}

#[tokio::test]
async fn credentials_are_loaded_from_the_store_at_start() {
    let store = memory();
    let created = registry(&store)
        .create(device("d"), None, NOW)
        .await
        .unwrap();
    let reopened = registry(&store);
    assert_eq!(reopened.list(&device("d")).len(), 1);
    assert_eq!(
        reopened
            .verify(&created.username, created.password.as_bytes())
            .await,
        Some(device("d"))
    );
    let mut stored = Vec::new();
    store
        .load_credentials(&mut |credential| stored.push(credential))
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].hash.starts_with("$argon2id$"),
        "only the hash is stored"
    );
    assert!(!stored[0].hash.contains(&created.password));
}

#[tokio::test]
async fn a_principal_holds_a_bounded_number_of_credentials() {
    let registry = registry(&memory());
    for _ in 0..MAX_CREDENTIALS_PER_PRINCIPAL {
        registry.create(device("d"), None, NOW).await.unwrap();
    }
    let err = registry.create(device("d"), None, NOW).await.unwrap_err();
    assert!(
        matches!(&err, AuthError::TooManyCredentials { username, limit }
            if username == "acme/devices/d" && *limit == MAX_CREDENTIALS_PER_PRINCIPAL),
        "{err}"
    );
    assert!(registry.create(device("e"), None, NOW).await.is_ok());
}

/// A store whose writes fail, as a full disk would make them.
struct BrokenStore;

impl CredentialStore for BrokenStore {
    fn put_credential(&self, _: &StoredCredential) -> Result<(), StoreError> {
        Err(StoreError::Locked)
    }
    fn delete_credential(&self, _: &Principal, _: &str) -> Result<bool, StoreError> {
        Err(StoreError::Locked)
    }
    fn load_credentials(&self, _: &mut dyn FnMut(StoredCredential)) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[tokio::test]
async fn a_failed_store_write_changes_nothing_in_memory() {
    let registry = Registry::load(Arc::new(BrokenStore), default_concurrent_hashes()).unwrap();
    let err = registry.create(device("d"), None, NOW).await.unwrap_err();
    assert!(matches!(err, AuthError::Store(_)), "{err}");
    assert!(registry.list(&device("d")).is_empty());
}

#[tokio::test]
async fn a_removed_credential_is_announced_with_the_id_verification_named() {
    let registry = registry(&memory());
    let mut revocations = registry.revocations();
    let kept = registry.create(device("pump-9"), None, NOW).await.unwrap();
    let removed = registry.create(device("pump-9"), None, NOW).await.unwrap();
    let (principal, id) = registry
        .verify_credential(&removed.username, removed.password.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        (principal, id.as_str()),
        (device("pump-9"), removed.credential_id.as_str())
    );
    // Answered from the cache the second time, with the same id.
    let (_, cached) = registry
        .verify_credential(&removed.username, removed.password.as_bytes())
        .await
        .unwrap();
    assert_eq!(cached, removed.credential_id);
    assert!(
        registry
            .delete(&device("pump-9"), "no-such-id")
            .await
            .is_ok()
    );
    assert!(
        registry
            .delete(&device("pump-9"), &removed.credential_id)
            .await
            .unwrap()
    );
    assert_eq!(
        revocations.try_recv().unwrap(),
        Revocation {
            username: removed.username.clone(),
            credential_id: removed.credential_id.clone(),
        },
        "only a credential that existed is announced"
    );
    assert!(revocations.try_recv().is_err());
    let (_, id) = registry
        .verify_credential(&kept.username, kept.password.as_bytes())
        .await
        .unwrap();
    assert_eq!(id, kept.credential_id);
}
