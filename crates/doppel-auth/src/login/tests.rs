use super::*;
use crate::registry::default_concurrent_hashes;
use doppel_model::{DeviceId, Millis, TenantId};
use doppel_store::{HistoryBuckets, MemoryStore};

const NOW: Millis = Millis(1_700_000_000_000);
const WRONG: &[u8] = b"not the password, but long enough";

fn registry() -> Registry {
    let store = MemoryStore::new(HistoryBuckets::new(1_000));
    Registry::load(Arc::new(store), default_concurrent_hashes()).unwrap()
}

fn device(name: &str) -> Principal {
    Principal::device(TenantId::new("acme").unwrap(), DeviceId::new(name).unwrap()).unwrap()
}

/// Limits small enough to reach in a test, and backoffs long enough not to end during one.
fn config() -> GuardConfig {
    GuardConfig {
        max_failures_per_address: 3,
        max_failures_per_username: 2,
        failure_window: Duration::from_secs(3600),
        backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
    }
}

fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([10, 0, 0, n]))
}

async fn refused(gate: &LoginGate, username: &str, password: &[u8], from: u8) -> Refusal {
    match gate.login(username, password, ip(from)).await {
        LoginOutcome::Refused(refusal) => refusal,
        accepted => panic!("{username} from 10.0.0.{from} was let in: {accepted:?}"),
    }
}

async fn accepted(gate: &LoginGate, username: &str, password: &str, from: u8) -> String {
    match gate.login(username, password.as_bytes(), ip(from)).await {
        LoginOutcome::Accepted { credential_id, .. } => credential_id,
        refused => panic!("{username} from 10.0.0.{from}: {refused:?}"),
    }
}

#[tokio::test]
async fn a_known_password_gets_in_while_its_username_is_in_backoff_and_an_unknown_one_does_not() {
    let registry = registry();
    let first = registry.create(device("d"), None, NOW).await.unwrap();
    let second = registry.create(device("d"), None, NOW).await.unwrap();
    let username = first.username.as_str();
    let gate = LoginGate::new(registry, config());
    assert_eq!(
        accepted(&gate, username, &first.password, 1).await,
        first.credential_id
    );
    assert_eq!(
        refused(&gate, username, WRONG, 2).await,
        Refusal::WrongPassword
    );
    assert_eq!(
        refused(&gate, username, WRONG, 3).await,
        Refusal::WrongPassword
    );

    assert_eq!(
        refused(&gate, username, WRONG, 4).await,
        Refusal::Throttled(Limit::Username)
    );
    assert_eq!(
        refused(&gate, username, second.password.as_bytes(), 4).await,
        Refusal::Throttled(Limit::Username),
        "a password not verified before waits for the backoff to end, even the right one"
    );
    assert_eq!(
        accepted(&gate, username, &first.password, 4).await,
        first.credential_id,
        "a password verified before gets in from anywhere"
    );
}

#[tokio::test]
async fn removing_a_credential_ends_its_login_from_memory_at_once() {
    let registry = registry();
    let kept = registry.create(device("d"), None, NOW).await.unwrap();
    let removed = registry.create(device("d"), None, NOW).await.unwrap();
    let username = kept.username.as_str();
    let gate = LoginGate::new(registry.clone(), config());
    accepted(&gate, username, &kept.password, 1).await;
    accepted(&gate, username, &removed.password, 1).await;
    refused(&gate, username, WRONG, 2).await;
    refused(&gate, username, WRONG, 3).await;
    accepted(&gate, username, &removed.password, 4).await;

    assert!(
        registry
            .delete(&device("d"), &removed.credential_id)
            .await
            .unwrap()
    );
    assert_eq!(
        refused(&gate, username, removed.password.as_bytes(), 4).await,
        Refusal::Throttled(Limit::Username),
        "no longer known, so it would need a check, which the backoff refuses"
    );
    accepted(&gate, username, &kept.password, 4).await;

    // Out of backoff the removed password is checked, and matches nothing.
    let calm = LoginGate::new(registry, config());
    assert_eq!(
        refused(&calm, username, removed.password.as_bytes(), 1).await,
        Refusal::WrongPassword
    );
}

#[tokio::test]
async fn an_address_in_backoff_is_refused_for_every_password_not_known() {
    let registry = registry();
    let known = registry.create(device("known"), None, NOW).await.unwrap();
    let fresh = registry.create(device("fresh"), None, NOW).await.unwrap();
    let gate = LoginGate::new(registry.clone(), config());
    accepted(&gate, &known.username, &known.password, 1).await;
    for name in ["a", "b", "c"] {
        let target = registry.create(device(name), None, NOW).await.unwrap();
        assert_eq!(
            refused(&gate, &target.username, WRONG, 9).await,
            Refusal::WrongPassword
        );
    }
    assert_eq!(
        refused(&gate, &fresh.username, fresh.password.as_bytes(), 9).await,
        Refusal::Throttled(Limit::Address)
    );
    accepted(&gate, &known.username, &known.password, 9).await;
    accepted(&gate, &fresh.username, &fresh.password, 1).await;
}

#[tokio::test]
async fn refusals_that_cost_no_argon2_are_not_counted_against_anyone() {
    let registry = registry();
    let created = registry.create(device("d"), None, NOW).await.unwrap();
    let gate = LoginGate::new(registry, config());
    for n in 0..20 {
        let unknown = format!("acme/devices/nobody-{n}");
        assert_eq!(
            refused(&gate, &unknown, WRONG, 9).await,
            Refusal::UnknownUsername
        );
        assert_eq!(
            refused(&gate, &created.username, b"short", 9).await,
            Refusal::Malformed
        );
    }
    accepted(&gate, &created.username, &created.password, 9).await;
}

#[test]
fn refusals_are_logged_at_most_once_per_interval_with_their_counts() {
    let start = Instant::now();
    let mut log = RefusalLog::new();
    let first = log
        .record(Refusal::WrongPassword, start)
        .expect("the first is reported");
    assert_eq!(first[Refusal::WrongPassword.index()], 1);
    for n in 1..1000 {
        let at = start + REFUSAL_LOG_INTERVAL * n / 1000;
        assert_eq!(log.record(Refusal::Throttled(Limit::Username), at), None);
    }
    let next = log
        .record(Refusal::WrongPassword, start + REFUSAL_LOG_INTERVAL)
        .expect("due again");
    assert_eq!(next[Refusal::Throttled(Limit::Username).index()], 999);
    assert_eq!(next[Refusal::WrongPassword.index()], 1);
    assert_eq!(next.iter().sum::<u64>(), 1000);
}

#[test]
fn every_refusal_has_its_own_place_and_name() {
    for (place, refusal) in Refusal::ALL.iter().enumerate() {
        assert_eq!(refusal.index(), place);
    }
    let names: std::collections::HashSet<&str> = Refusal::ALL
        .iter()
        .map(|refusal| refusal.as_str())
        .collect();
    assert_eq!(names.len(), Refusal::ALL.len());
}
