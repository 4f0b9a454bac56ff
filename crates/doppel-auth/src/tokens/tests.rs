use super::*;
use doppel_store::{HistoryBuckets, MemoryStore};
use std::sync::atomic::{AtomicBool, Ordering};

const NOW: Millis = Millis(1_700_000_000_000);
const HOUR_MS: i64 = 3_600_000;

/// A valid supplied secret: 43 characters, all 64 of base64url's alphabet in play.
const SUPPLIED: &str = "dpt_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq";

fn memory() -> MemoryStore {
    MemoryStore::new(HistoryBuckets::new(1_000))
}

fn tokens(store: &MemoryStore) -> Tokens {
    Tokens::load(Arc::new(store.clone())).unwrap()
}

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn new_token(name: &str, roles: &[Role]) -> NewToken {
    NewToken {
        name: name.into(),
        roles: roles.to_vec(),
        tenant: TenantScope::Tenant(acme()),
        expires_at: None,
    }
}

#[test]
fn roles_spell_the_same_in_text_and_json() {
    for (role, text) in [
        (Role::Admin, "admin"),
        (Role::Operator, "operator"),
        (Role::AppWrite, "app-write"),
        (Role::AppRead, "app-read"),
    ] {
        assert_eq!(role.to_string(), text);
        assert_eq!(text.parse::<Role>().unwrap(), role);
        assert_eq!(serde_json::to_value(role).unwrap(), text);
        assert_eq!(serde_json::from_value::<Role>(text.into()).unwrap(), role);
    }
    for unknown in ["Admin", "app_read", "", "root"] {
        assert!(
            matches!(unknown.parse::<Role>(), Err(AuthError::UnknownRole { role }) if role == unknown),
            "{unknown:?}"
        );
    }
}

#[test]
fn token_info_answers_roles_expiry_and_tenants() {
    let mut info = TokenInfo {
        id: "0011223344556677".into(),
        name: "grafana".into(),
        roles: vec![Role::AppRead],
        tenant: TenantScope::Tenant(acme()),
        created_at: NOW,
        expires_at: Some(Millis(NOW.0 + 10)),
    };
    assert!(info.has_role(Role::AppRead));
    assert!(
        !info.has_role(Role::AppWrite),
        "no role implies another, nor is implied"
    );
    assert!(!info.is_expired(Millis(NOW.0 + 9)));
    assert!(info.is_expired(Millis(NOW.0 + 10)), "expiry is exclusive");
    assert!(info.covers(acme().as_str()));
    assert!(!info.covers("acme2"));
    info.tenant = TenantScope::All;
    info.expires_at = None;
    assert!(info.covers("acme2"));
    assert!(!info.is_expired(Millis(i64::MAX)));
}

#[tokio::test]
async fn a_created_token_verifies_and_other_secrets_do_not() {
    let tokens = tokens(&memory());
    assert!(tokens.is_empty());
    let created = tokens
        .create(
            new_token("grafana", &[Role::AppRead, Role::Operator, Role::AppRead]),
            NOW,
        )
        .await
        .unwrap();
    assert!(!tokens.is_empty());
    let info = &created.info;
    assert_eq!(info.name, "grafana");
    assert_eq!(
        info.roles,
        [Role::Operator, Role::AppRead],
        "sorted, duplicates dropped"
    );
    assert_eq!(info.created_at, NOW);
    assert_eq!(info.id.len(), 16);
    assert!(
        info.id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let secret = &created.secret;
    assert!(secret.starts_with("dpt_"), "{secret}");
    assert_eq!(secret.len(), 4 + 43, "32 random bytes in base64url");
    assert!(
        check_secret(secret).is_ok(),
        "a generated secret meets the bar set for supplied ones"
    );
    assert_eq!(tokens.verify(secret, NOW).as_ref(), Some(info));

    let mut wrong = secret.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap();
    assert_eq!(tokens.verify(&wrong, NOW), None);
    assert_eq!(tokens.verify(&secret[4..], NOW), None, "without the prefix");
    assert_eq!(tokens.verify("", NOW), None);
    assert_eq!(tokens.verify(&format!("{secret}x"), NOW), None);

    let other = tokens
        .create(new_token("ci", &[Role::AppWrite]), NOW)
        .await
        .unwrap();
    assert_ne!(other.secret, created.secret);
    assert_ne!(other.info.id, created.info.id);
    assert_eq!(tokens.verify(&other.secret, NOW), Some(other.info));
}

#[tokio::test]
async fn tokens_survive_a_restart_with_every_field_and_their_secret_only_as_a_hash() {
    let store = memory();
    let (scoped, everywhere) = {
        let tokens = tokens(&store);
        let scoped = tokens
            .create(
                NewToken {
                    expires_at: Some(Millis(NOW.0 + HOUR_MS)),
                    ..new_token("grafana", &[Role::AppRead])
                },
                NOW,
            )
            .await
            .unwrap();
        let everywhere = tokens
            .create_with_secret(
                NewToken {
                    tenant: TenantScope::All,
                    ..new_token("bootstrap", &[Role::Admin])
                },
                SUPPLIED,
                NOW,
            )
            .await
            .unwrap();
        (scoped, everywhere)
    };
    let reloaded = tokens(&store);
    assert_eq!(
        reloaded.verify(&scoped.secret, NOW),
        Some(scoped.info.clone())
    );
    assert_eq!(
        reloaded.verify(SUPPLIED, NOW),
        Some(everywhere.info.clone())
    );
    let mut stored = Vec::new();
    store.load_tokens(&mut |token| stored.push(token)).unwrap();
    assert_eq!(stored.len(), 2);
    for token in &stored {
        assert!(
            token.hash == hash(&scoped.secret) || token.hash == hash(SUPPLIED),
            "the store keeps the SHA-256 of the secret"
        );
    }
    let record = format!("{stored:?}");
    assert!(!record.contains(&scoped.secret[4..]), "{record}");
    assert!(!record.contains(&SUPPLIED[4..]), "{record}");
}

#[tokio::test]
async fn the_list_is_oldest_first_and_never_shows_a_secret() {
    let tokens = tokens(&memory());
    let later = tokens
        .create(new_token("later", &[Role::AppRead]), Millis(NOW.0 + 1))
        .await
        .unwrap();
    let mut first = Vec::new();
    for name in ["a", "b", "c"] {
        first.push(
            tokens
                .create(new_token(name, &[Role::AppRead]), NOW)
                .await
                .unwrap(),
        );
    }
    first.sort_by(|a, b| a.info.id.cmp(&b.info.id));
    let mut expected: Vec<TokenInfo> = first.iter().map(|c| c.info.clone()).collect();
    expected.push(later.info.clone());
    let listed = tokens.list();
    assert_eq!(listed, expected, "by created_at, then by id");
    assert_eq!(tokens.get(&later.info.id), Some(later.info.clone()));
    assert_eq!(tokens.get("none"), None);

    let shown = format!("{listed:?} {later:?}");
    for created in first.iter().chain([&later]) {
        assert!(!shown.contains(&created.secret[4..]), "{shown}");
    }
    assert!(
        format!("{later:?}").contains("<redacted>"),
        "Debug of a created token redacts its secret"
    );
}

#[tokio::test]
async fn a_revoked_token_stops_verifying_is_announced_and_stays_revoked() {
    let store = memory();
    let tokens = tokens(&store);
    let mut revocations = tokens.revocations();
    let kept = tokens
        .create(new_token("kept", &[Role::AppRead]), NOW)
        .await
        .unwrap();
    let revoked = tokens
        .create(new_token("revoked", &[Role::AppRead]), NOW)
        .await
        .unwrap();
    assert!(tokens.revoke(&revoked.info.id).await.unwrap());
    assert_eq!(tokens.verify(&revoked.secret, NOW), None);
    assert_eq!(tokens.get(&revoked.info.id), None);
    assert_eq!(tokens.list(), std::slice::from_ref(&kept.info));
    assert_eq!(revocations.try_recv().unwrap(), revoked.info.id);

    assert!(!tokens.revoke(&revoked.info.id).await.unwrap());
    assert!(!tokens.revoke("unknown").await.unwrap());
    assert!(!tokens.revoke("").await.unwrap());
    assert!(
        revocations.try_recv().is_err(),
        "only a token that existed is announced"
    );

    let reloaded = Tokens::load(Arc::new(store)).unwrap();
    assert_eq!(reloaded.verify(&revoked.secret, NOW), None);
    assert_eq!(reloaded.verify(&kept.secret, NOW), Some(kept.info));
}

#[tokio::test]
async fn an_expired_token_stops_verifying_at_once_and_stays_listed() {
    let tokens = tokens(&memory());
    let expires_at = Millis(NOW.0 + HOUR_MS);
    let created = tokens
        .create(
            NewToken {
                expires_at: Some(expires_at),
                ..new_token("short-lived", &[Role::AppRead])
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(
        tokens
            .verify(&created.secret, Millis(expires_at.0 - 1))
            .is_some()
    );
    assert_eq!(tokens.verify(&created.secret, expires_at), None);
    assert_eq!(tokens.verify(&created.secret, Millis(i64::MAX)), None);
    assert_eq!(tokens.list(), std::slice::from_ref(&created.info));
    assert_eq!(tokens.list()[0].expires_at, Some(expires_at));
    assert!(!tokens.is_empty(), "an expired token still counts");
    assert!(tokens.revoke(&created.info.id).await.unwrap());
    assert!(tokens.is_empty());
}

/// Whether an error is the one a case expects.
type Expected = fn(&AuthError) -> bool;

#[tokio::test]
async fn bad_requests_are_refused_with_their_reason_and_store_nothing() {
    let store = memory();
    let tokens = tokens(&store);
    let long = "n".repeat(MAX_TOKEN_NAME_CHARS + 1);
    let cases: Vec<(NewToken, Expected)> = vec![
        (new_token("", &[Role::AppRead]), |e| {
            matches!(e, AuthError::EmptyTokenName)
        }),
        (new_token(" \t", &[Role::AppRead]), |e| {
            matches!(e, AuthError::EmptyTokenName)
        }),
        (
            new_token(&long, &[Role::AppRead]),
            |e| matches!(e, AuthError::TokenNameTooLong { length } if *length == MAX_TOKEN_NAME_CHARS + 1),
        ),
        (new_token("two\nlines", &[Role::AppRead]), |e| {
            matches!(e, AuthError::TokenNameNotPrintable)
        }),
        (new_token("grafana", &[]), |e| {
            matches!(e, AuthError::NoRoles)
        }),
        (
            NewToken {
                expires_at: Some(NOW),
                ..new_token("grafana", &[Role::AppRead])
            },
            |e| matches!(e, AuthError::ExpiryInPast { expires_at, now } if *expires_at == NOW && *now == NOW),
        ),
        (
            NewToken {
                expires_at: Some(Millis(NOW.0 - HOUR_MS)),
                ..new_token("grafana", &[Role::AppRead])
            },
            |e| matches!(e, AuthError::ExpiryInPast { .. }),
        ),
    ];
    for (new, expected) in cases {
        let err = tokens.create(new.clone(), NOW).await.unwrap_err();
        assert!(expected(&err), "{new:?} gave {err}");
    }
    // The limits themselves are allowed: 64 characters, also when they are not ASCII.
    for name in [
        "n".repeat(MAX_TOKEN_NAME_CHARS),
        "é".repeat(MAX_TOKEN_NAME_CHARS),
    ] {
        let created = tokens
            .create(new_token(&name, &[Role::AppRead]), NOW)
            .await
            .unwrap();
        assert!(tokens.revoke(&created.info.id).await.unwrap());
    }
    assert!(tokens.is_empty());
    let mut stored = 0;
    store.load_tokens(&mut |_| stored += 1).unwrap();
    assert_eq!(stored, 0);
}

#[test]
fn supplied_secrets_must_look_generated() {
    assert!(check_secret(SUPPLIED).is_ok());
    let long_enough = format!("dpt_{}", &SUPPLIED[4..].repeat(6)[..MAX_SECRET_BYTES - 4]);
    assert!(check_secret(&long_enough).is_ok());
    let too_long = format!("{long_enough}A");
    let cases: Vec<(String, SecretProblem)> = vec![
        (SUPPLIED[4..].into(), SecretProblem::MissingPrefix),
        (
            SUPPLIED.replace("dpt_", "DPT_"),
            SecretProblem::MissingPrefix,
        ),
        (
            SUPPLIED[..SUPPLIED.len() - 1].into(),
            SecretProblem::TooShort { chars: 42 },
        ),
        ("dpt_".into(), SecretProblem::TooShort { chars: 0 }),
        (
            too_long,
            SecretProblem::TooLong {
                bytes: MAX_SECRET_BYTES + 1,
            },
        ),
        (format!("{SUPPLIED}="), SecretProblem::NotBase64Url),
        (format!("{SUPPLIED}+/"), SecretProblem::NotBase64Url),
        (format!("{SUPPLIED}é"), SecretProblem::NotBase64Url),
        (
            format!("dpt_{}", "a".repeat(MIN_SECRET_CHARS)),
            SecretProblem::Repetitive { distinct: 1 },
        ),
        (
            format!("dpt_{}", "password".repeat(6)),
            SecretProblem::Repetitive { distinct: 7 },
        ),
    ];
    for (secret, expected) in cases {
        match check_secret(&secret) {
            Err(AuthError::InvalidTokenSecret { problem }) => {
                assert_eq!(problem, expected, "{secret:?}")
            }
            other => panic!("{secret:?} gave {other:?}"),
        }
    }
    // 16 distinct characters are enough, 15 are not.
    let sixteen = format!("dpt_{}", "ABCDEFGHIJKLMNOP".repeat(3));
    assert!(check_secret(&sixteen).is_ok());
    let fifteen = format!("dpt_{}", "ABCDEFGHIJKLMNO".repeat(3));
    assert_eq!(
        check_secret(&fifteen).unwrap_err().to_string(),
        AuthError::InvalidTokenSecret {
            problem: SecretProblem::Repetitive { distinct: 15 }
        }
        .to_string()
    );
}

#[tokio::test]
async fn a_supplied_secret_is_checked_and_cannot_be_used_twice() {
    let store = memory();
    let tokens = tokens(&store);
    let err = tokens
        .create_with_secret(new_token("bootstrap", &[Role::Admin]), "dpt_short", NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::InvalidTokenSecret {
                problem: SecretProblem::TooShort { chars: 5 }
            }
        ),
        "{err}"
    );
    assert!(
        !err.to_string().contains("dpt_short"),
        "the secret stays out of the message: {err}"
    );
    let first = tokens
        .create_with_secret(new_token("bootstrap", &[Role::Admin]), SUPPLIED, NOW)
        .await
        .unwrap();
    assert_eq!(first.secret, SUPPLIED);
    let err = tokens
        .create_with_secret(new_token("again", &[Role::Admin]), SUPPLIED, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuthError::TokenSecretInUse { id } if *id == first.info.id),
        "{err}"
    );
    assert_eq!(tokens.list(), std::slice::from_ref(&first.info));
    let reloaded =
        Tokens::load(Arc::new(store)).expect("the refused token never reached the store");
    assert_eq!(reloaded.list(), [first.info]);
}

#[test]
fn unknown_stored_roles_are_dropped_and_duplicate_hashes_refused() {
    let store = memory();
    let stored = |id: &str, roles: &[&str], seed: u8| StoredToken {
        id: id.into(),
        hash: [seed; TOKEN_HASH_BYTES],
        name: id.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        tenant: None,
        created_at: NOW,
        expires_at: None,
    };
    store
        .put_token(&stored("a", &["app-read", "superuser", "admin"], 1))
        .unwrap();
    let tokens = tokens(&store);
    assert_eq!(
        tokens.get("a").unwrap().roles,
        [Role::Admin, Role::AppRead],
        "the unknown role is left out, the others kept"
    );
    store.put_token(&stored("b", &["admin"], 1)).unwrap();
    let err = Tokens::load(Arc::new(store)).err().unwrap();
    assert!(
        matches!(err, AuthError::Store(StoreError::Corrupt(_))),
        "{err}"
    );
}

/// A store whose writes fail, as a full disk would make them, and which then lets them pass.
struct FlakyStore {
    inner: MemoryStore,
    broken: AtomicBool,
}

impl FlakyStore {
    fn new() -> Self {
        Self {
            inner: memory(),
            broken: AtomicBool::new(false),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StoreError::Locked)
        } else {
            Ok(())
        }
    }
}

impl TokenStore for FlakyStore {
    fn put_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_token(token)
    }
    fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete_token(id)
    }
    fn load_tokens(&self, visit: &mut dyn FnMut(StoredToken)) -> Result<u64, StoreError> {
        self.inner.load_tokens(visit)
    }
}

#[tokio::test]
async fn a_failed_store_write_changes_nothing_in_memory() {
    let store = Arc::new(FlakyStore::new());
    let tokens = Tokens::load(store.clone()).unwrap();
    let mut revocations = tokens.revocations();
    let kept = tokens
        .create(new_token("kept", &[Role::AppRead]), NOW)
        .await
        .unwrap();
    store.broken.store(true, Ordering::SeqCst);

    let err = tokens
        .create(new_token("lost", &[Role::AppRead]), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Store(_)), "{err}");
    assert_eq!(tokens.list(), std::slice::from_ref(&kept.info));

    let err = tokens.revoke(&kept.info.id).await.unwrap_err();
    assert!(matches!(err, AuthError::Store(_)), "{err}");
    assert_eq!(
        tokens.verify(&kept.secret, NOW),
        Some(kept.info.clone()),
        "a revocation that did not reach the disk did not happen"
    );
    assert!(revocations.try_recv().is_err(), "nor was it announced");

    store.broken.store(false, Ordering::SeqCst);
    assert!(tokens.revoke(&kept.info.id).await.unwrap());
    assert_eq!(revocations.try_recv().unwrap(), kept.info.id);
}
