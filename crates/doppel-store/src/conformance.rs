//! The conformance suite every [`TwinStore`] backend runs.
//!
//! A backend's tests implement [`Backend`] and call [`conformance_tests!`](crate::conformance_tests),
//! which expands to one `#[test]` per rule of the trait's contract. The [`CredentialStore`],
//! [`TokenStore`] and [`CommandStore`] cases are in the same list: every backend keeps twins,
//! credentials, API tokens and command queues alike.

use crate::{
    CommandQuery, CommandStore, CommandWrite, CredentialStore, HistoryQuery, MAX_TOKEN_ID_BYTES,
    StoredCredential, StoredToken, TokenStore, TwinStore, TwinWrite,
};
use doppel_model::codec::EncodedTwin;
use doppel_model::command::{Command, CommandLimits, CommandStatus, NewCommand};
use doppel_model::{
    AppName, DeviceId, HistoryEntry, HistoryKind, Millis, Principal, PrincipalKind, TenantId, Twin,
    TwinKey,
};
use serde_json::json;
use std::ops::ControlFlow;

/// Bucket width the suite's backends are opened with; the cases place entries around it.
pub const BUCKET_WIDTH_MS: i64 = 1_000;

/// Opens the backend under test. Opening again after the previous store is dropped must see
/// everything that was committed, as a restart would.
pub trait Backend {
    type Store: TwinStore;
    fn open(&self) -> Self::Store;
}

pub fn key(tenant: &str, device: &str) -> TwinKey {
    TwinKey::new(
        TenantId::new(tenant).expect("valid tenant"),
        DeviceId::new(device).expect("valid device"),
    )
}

/// A write that sets desired `{"v": value}` at document `version`, recorded at `at_ms`.
pub fn desired_write(key: &TwinKey, version: u64, at_ms: i64, value: i64) -> TwinWrite {
    let mut twin = Twin {
        version,
        updated_at: Millis(at_ms),
        ..Twin::default()
    };
    twin.desired.state.insert("v".into(), json!(value));
    let entry = HistoryEntry {
        kind: if version.is_multiple_of(2) {
            HistoryKind::Desired
        } else {
            HistoryKind::Reported
        },
        version,
        recorded_at: Millis(at_ms),
        state: json!({ "v": value }),
        section_version: Some(version),
        changed_by: "conformance".into(),
        change_reason: "test".into(),
        replica: None,
        resolutions: Vec::new(),
    };
    write(key, &twin, &entry)
}

fn write(key: &TwinKey, twin: &Twin, entry: &HistoryEntry) -> TwinWrite {
    TwinWrite::of(key, twin, entry)
}

pub fn all_history() -> HistoryQuery {
    HistoryQuery {
        kind: None,
        from: None,
        to: None,
        after_version: None,
        limit: usize::MAX,
    }
}

fn loaded(store: &impl TwinStore) -> Vec<(TwinKey, Twin)> {
    let mut twins = Vec::new();
    let count = store
        .load(&mut |key, record| {
            let twin = EncodedTwin::decode(&record.0).expect("loaded records decode");
            twins.push((key, twin));
        })
        .expect("load");
    assert_eq!(count, twins.len() as u64, "load must count what it visits");
    twins
}

fn versions(entries: &[HistoryEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.version).collect()
}

pub fn committed_writes_survive_reopening(backend: &impl Backend) {
    let (a, b) = (key("t", "a"), key("t", "b"));
    {
        let store = backend.open();
        store
            .commit(&[desired_write(&a, 1, 10, 1), desired_write(&b, 1, 10, 2)])
            .expect("commit");
        store.commit(&[]).expect("an empty commit is fine");
    }
    let store = backend.open();
    let twins = loaded(&store);
    assert_eq!(twins.len(), 2);
    assert_eq!(twins[1].0, b);
    assert_eq!(twins[1].1.desired.state["v"], json!(2));
    assert_eq!(
        versions(&store.history(&a, &all_history()).expect("history")),
        [1]
    );
}

pub fn a_later_commit_of_a_key_wins(backend: &impl Backend) {
    let store = backend.open();
    let a = key("t", "a");
    store
        .commit(&[desired_write(&a, 1, 10, 1)])
        .expect("commit");
    store
        .commit(&[desired_write(&a, 2, 20, 2)])
        .expect("commit");
    let twins = loaded(&store);
    assert_eq!(twins.len(), 1);
    assert_eq!(
        (twins[0].1.version, &twins[0].1.desired.state["v"]),
        (2, &json!(2))
    );
}

pub fn tombstones_load_but_never_list(backend: &impl Backend) {
    let store = backend.open();
    let (a, b) = (key("t", "a"), key("t", "b"));
    let tombstone = Twin {
        version: 2,
        deleted: true,
        ..Twin::default()
    };
    let deleted = HistoryEntry {
        kind: HistoryKind::Deleted,
        version: 2,
        recorded_at: Millis(20),
        state: json!(null),
        section_version: None,
        changed_by: "conformance".into(),
        change_reason: "delete".into(),
        replica: None,
        resolutions: Vec::new(),
    };
    store
        .commit(&[desired_write(&a, 1, 10, 1), desired_write(&b, 1, 10, 1)])
        .expect("commit");
    store
        .commit(&[write(&a, &tombstone, &deleted)])
        .expect("commit");
    let twins = loaded(&store);
    assert!(
        twins
            .iter()
            .any(|(k, t)| *k == a && t.deleted && t.version == 2)
    );
    let listed = store.list(&a.tenant, None, 10).expect("list");
    assert_eq!(
        listed.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
}

pub fn listing_pages_one_tenant_in_device_order(backend: &impl Backend) {
    let store = backend.open();
    let mut writes: Vec<TwinWrite> = ["d3", "d1", "d5", "d2", "d4"]
        .iter()
        .map(|d| desired_write(&key("a", d), 1, 1, 0))
        .collect();
    writes.push(desired_write(&key("a-", "d0"), 1, 1, 0));
    writes.push(desired_write(&key("b", "d0"), 1, 1, 0));
    store.commit(&writes).expect("commit");
    let tenant = TenantId::new("a").expect("tenant");
    let names = |page: Vec<(DeviceId, Twin)>| {
        page.into_iter()
            .map(|(d, _)| d.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list(&tenant, None, 2).expect("list")),
        ["d1", "d2"]
    );
    let cursor = DeviceId::new("d2").expect("device");
    assert_eq!(
        names(store.list(&tenant, Some(&cursor), 10).expect("list")),
        ["d3", "d4", "d5"]
    );
    let last = DeviceId::new("d5").expect("device");
    assert!(
        store
            .list(&tenant, Some(&last), 10)
            .expect("list")
            .is_empty()
    );
}

pub fn history_reads_in_version_order_with_filters(backend: &impl Backend) {
    let store = backend.open();
    let (a, a2) = (key("t", "a"), key("t", "a2"));
    // Six changes spread over three buckets, committed one by one and in a group.
    store
        .commit(&[desired_write(&a, 1, 100, 1)])
        .expect("commit");
    store
        .commit(&[desired_write(&a, 2, 900, 2), desired_write(&a2, 1, 950, 9)])
        .expect("commit");
    for (version, at) in [(3, 1_100), (4, 1_500), (5, 2_000), (6, 2_999)] {
        store
            .commit(&[desired_write(&a, version, at, version as i64)])
            .expect("commit");
    }
    let query = |f: fn(&mut HistoryQuery)| {
        let mut q = all_history();
        f(&mut q);
        versions(&store.history(&a, &q).expect("history"))
    };
    assert_eq!(query(|_| {}), [1, 2, 3, 4, 5, 6]);
    assert_eq!(query(|q| q.kind = Some(HistoryKind::Desired)), [2, 4, 6]);
    assert_eq!(query(|q| q.from = Some(Millis(900))), [2, 3, 4, 5, 6]);
    assert_eq!(query(|q| q.to = Some(Millis(1_500))), [1, 2, 3, 4]);
    assert_eq!(query(|q| q.after_version = Some(4)), [5, 6]);
    assert_eq!(query(|q| q.limit = 2), [1, 2]);
    assert_eq!(
        query(|q| {
            q.after_version = Some(2);
            q.limit = 2;
            q.kind = Some(HistoryKind::Reported);
        }),
        [3, 5]
    );
    assert_eq!(
        versions(&store.history(&a2, &all_history()).expect("history")),
        [1]
    );
    assert!(
        store
            .history(&key("t", "none"), &all_history())
            .expect("history")
            .is_empty()
    );
}

pub fn history_until_reads_newest_first_up_to_the_instant(backend: &impl Backend) {
    let store = backend.open();
    let a = key("t", "a");
    for (version, at) in [(1, 100), (2, 1_200), (3, 1_800), (4, 2_500)] {
        store
            .commit(&[desired_write(&a, version, at, 0)])
            .expect("commit");
    }
    let mut seen = Vec::new();
    store
        .history_until(&a, Millis(1_800), &mut |entry| {
            seen.push(entry.version);
            ControlFlow::Continue(())
        })
        .expect("history_until");
    assert_eq!(seen, [3, 2, 1]);
    seen.clear();
    store
        .history_until(&a, Millis(2_600), &mut |entry| {
            seen.push(entry.version);
            if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("history_until");
    assert_eq!(seen, [4, 3]);
}

pub fn expiry_drops_whole_old_buckets_only(backend: &impl Backend) {
    let a = key("t", "a");
    {
        let store = backend.open();
        for (version, at) in [(1, 100), (2, 1_100), (3, 1_900), (4, 2_100)] {
            store
                .commit(&[desired_write(&a, version, at, 0)])
                .expect("commit");
        }
        // 1_500 lies inside the second bucket, which must survive because it holds newer entries.
        assert_eq!(store.expire_history(Millis(1_500)).expect("expire"), 1);
        assert_eq!(
            versions(&store.history(&a, &all_history()).expect("history")),
            [2, 3, 4]
        );
        assert_eq!(store.expire_history(Millis(1_500)).expect("expire"), 0);
    }
    let store = backend.open();
    assert_eq!(
        versions(&store.history(&a, &all_history()).expect("history")),
        [2, 3, 4],
        "expiry is durable"
    );
    assert_eq!(store.expire_history(Millis(3_000)).expect("expire"), 2);
    assert!(
        store
            .history(&a, &all_history())
            .expect("history")
            .is_empty()
    );
    assert_eq!(
        loaded(&store).len(),
        1,
        "expiring history never touches twins"
    );
    store
        .commit(&[desired_write(&a, 5, 3_100, 0)])
        .expect("a commit after expiry recreates its bucket");
    assert_eq!(
        versions(&store.history(&a, &all_history()).expect("history")),
        [5]
    );
}

/// Puts `items` through one opening of the store and hands back a fresh opening, so that
/// whatever the caller then reads must have been made durable.
fn put_then_reopen<B: Backend, T>(
    backend: &B,
    items: &[T],
    put: impl Fn(&B::Store, &T),
) -> B::Store {
    {
        let store = backend.open();
        for item in items {
            put(&store, item);
        }
    }
    backend.open()
}

/// How many of eight threads running `delete` at once found something to delete.
fn racing_successes(delete: impl Fn() -> bool + Sync) -> usize {
    const RACERS: usize = 8;
    std::thread::scope(|scope| {
        let racers: Vec<_> = (0..RACERS).map(|_| scope.spawn(&delete)).collect();
        racers
            .into_iter()
            .map(|racer| racer.join().expect("a racer panicked"))
            .filter(|existed| *existed)
            .count()
    })
}

/// A credential of `principal` named `id`, whose hash text records `hash` so that tests can
/// tell versions apart.
pub fn credential(principal: &Principal, id: &str, hash: &str) -> StoredCredential {
    StoredCredential {
        principal: principal.clone(),
        credential_id: id.into(),
        hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${hash}"),
        created_at: Millis(1_700_000_000_000),
    }
}

pub fn device(tenant: &str, device: &str) -> Principal {
    Principal {
        tenant: TenantId::new(tenant).expect("valid tenant"),
        kind: PrincipalKind::Device(DeviceId::new(device).expect("valid device")),
    }
}

pub fn app(tenant: &str, app: &str) -> Principal {
    Principal {
        tenant: TenantId::new(tenant).expect("valid tenant"),
        kind: PrincipalKind::App(AppName::new(app).expect("valid app")),
    }
}

/// Every stored credential, sorted so that cases can compare sets.
fn loaded_credentials(store: &impl CredentialStore) -> Vec<StoredCredential> {
    let mut credentials = Vec::new();
    let count = store
        .load_credentials(&mut |credential| credentials.push(credential))
        .expect("load credentials");
    assert_eq!(
        count,
        credentials.len() as u64,
        "load_credentials must count what it visits"
    );
    credentials
        .sort_by(|a, b| (&a.principal, &a.credential_id).cmp(&(&b.principal, &b.credential_id)));
    credentials
}

pub fn credentials_survive_reopening<B: Backend>(backend: &B)
where
    B::Store: CredentialStore,
{
    // A device and an application of the same name, and the same id under both: four
    // credentials that must all stay distinct.
    let written = vec![
        credential(&device("t", "x"), "1", "a"),
        credential(&device("t", "x"), "2", "b"),
        credential(&app("t", "x"), "1", "c"),
        credential(&device("t2", "x"), "1", "d"),
    ];
    let store = put_then_reopen(backend, &written, |store, credential| {
        store.put_credential(credential).expect("put");
    });
    let mut expected = written;
    expected
        .sort_by(|a, b| (&a.principal, &a.credential_id).cmp(&(&b.principal, &b.credential_id)));
    assert_eq!(loaded_credentials(&store), expected);
    assert!(
        loaded(&store).is_empty(),
        "credentials are not twins and never load as twins"
    );
}

pub fn putting_a_credential_again_replaces_it<B: Backend>(backend: &B)
where
    B::Store: CredentialStore,
{
    let store = backend.open();
    let principal = device("t", "x");
    store
        .put_credential(&credential(&principal, "1", "old"))
        .expect("put");
    store
        .put_credential(&credential(&principal, "1", "new"))
        .expect("put");
    assert_eq!(
        loaded_credentials(&store),
        [credential(&principal, "1", "new")]
    );
}

pub fn deleting_a_credential_says_whether_it_existed_and_lasts<B: Backend>(backend: &B)
where
    B::Store: CredentialStore,
{
    let (x, y) = (device("t", "x"), app("t", "x"));
    {
        let store = backend.open();
        for credential in [
            credential(&x, "1", "a"),
            credential(&x, "2", "b"),
            credential(&y, "1", "c"),
        ] {
            store.put_credential(&credential).expect("put");
        }
        assert!(store.delete_credential(&x, "1").expect("delete"));
        assert!(!store.delete_credential(&x, "1").expect("delete again"));
        assert!(
            !store
                .delete_credential(&device("t", "none"), "1")
                .expect("delete unknown")
        );
        assert!(!store.delete_credential(&x, "").expect("delete unknown id"));
    }
    let store = backend.open();
    assert_eq!(
        loaded_credentials(&store),
        [credential(&x, "2", "b"), credential(&y, "1", "c")],
        "the delete is durable and touched nothing else"
    );
}

pub fn racing_deletes_of_one_credential_succeed_once<B: Backend>(backend: &B)
where
    B::Store: CredentialStore,
{
    let store = backend.open();
    let principal = device("t", "x");
    store
        .put_credential(&credential(&principal, "1", "a"))
        .expect("put");
    let existed = racing_successes(|| store.delete_credential(&principal, "1").expect("delete"));
    assert_eq!(existed, 1, "exactly one delete removed the credential");
    assert!(loaded_credentials(&store).is_empty());
}

/// A token named `id` whose hash starts with `seed`, so that tests can tell versions apart,
/// limited to `tenant` (or every tenant) and expiring at `expires_at` (or never).
pub fn token(id: &str, seed: u8, tenant: Option<&str>, expires_at: Option<i64>) -> StoredToken {
    StoredToken {
        id: id.into(),
        hash: std::array::from_fn(|i| seed.wrapping_add(i as u8)),
        name: format!("token {id}"),
        roles: vec!["app-read".into(), "operator".into()],
        tenant: tenant.map(|t| TenantId::new(t).expect("valid tenant")),
        created_at: Millis(1_700_000_000_000 + i64::from(seed)),
        expires_at: expires_at.map(Millis),
    }
}

/// Every stored token, sorted by id so that cases can compare sets.
fn loaded_tokens(store: &impl TokenStore) -> Vec<StoredToken> {
    let mut tokens = Vec::new();
    let count = store
        .load_tokens(&mut |token| tokens.push(token))
        .expect("load tokens");
    assert_eq!(
        count,
        tokens.len() as u64,
        "load_tokens must count what it visits"
    );
    tokens.sort_by(|a, b| a.id.cmp(&b.id));
    tokens
}

pub fn tokens_survive_reopening<B: Backend>(backend: &B)
where
    B::Store: TokenStore + CredentialStore,
{
    // Every optional field both ways, ids that are prefixes of one another, and the longest id.
    let written = vec![
        token("a", 1, None, None),
        token("ab", 2, Some("t"), Some(1_800_000_000_000)),
        token("b", 3, Some("t2"), None),
        token(&"c".repeat(MAX_TOKEN_ID_BYTES), 4, None, Some(5)),
    ];
    let store = put_then_reopen(backend, &written, |store, token| {
        store.put_token(token).expect("put");
    });
    assert_eq!(loaded_tokens(&store), written);
    assert!(loaded(&store).is_empty(), "tokens never load as twins");
    assert!(
        loaded_credentials(&store).is_empty(),
        "tokens never load as credentials"
    );
}

pub fn putting_a_token_again_replaces_it<B: Backend>(backend: &B)
where
    B::Store: TokenStore,
{
    let store = backend.open();
    store.put_token(&token("a", 1, None, None)).expect("put");
    let replacement = token("a", 9, Some("t"), Some(7));
    store.put_token(&replacement).expect("put");
    assert_eq!(loaded_tokens(&store), [replacement]);
}

pub fn putting_a_token_no_id_can_name_fails_and_stores_nothing<B: Backend>(backend: &B)
where
    B::Store: TokenStore,
{
    let store = backend.open();
    for id in [String::new(), "x".repeat(MAX_TOKEN_ID_BYTES + 1)] {
        assert!(store.put_token(&token(&id, 1, None, None)).is_err());
    }
    assert!(loaded_tokens(&store).is_empty());
}

pub fn deleting_a_token_says_whether_it_existed_and_lasts<B: Backend>(backend: &B)
where
    B::Store: TokenStore,
{
    let kept = [token("a", 2, None, None), token("abc", 3, None, None)];
    {
        let store = backend.open();
        store.put_token(&token("ab", 1, None, None)).expect("put");
        for token in &kept {
            store.put_token(token).expect("put");
        }
        assert!(store.delete_token("ab").expect("delete"));
        assert!(!store.delete_token("ab").expect("delete again"));
        assert!(!store.delete_token("none").expect("delete unknown"));
        assert!(!store.delete_token("").expect("delete the empty id"));
        assert!(
            !store
                .delete_token(&"x".repeat(MAX_TOKEN_ID_BYTES + 1))
                .expect("delete an overlong id")
        );
    }
    let store = backend.open();
    assert_eq!(
        loaded_tokens(&store),
        kept,
        "the delete is durable and touched nothing else"
    );
}

pub fn racing_deletes_of_one_token_succeed_once<B: Backend>(backend: &B)
where
    B::Store: TokenStore,
{
    let store = backend.open();
    store.put_token(&token("a", 1, None, None)).expect("put");
    let existed = racing_successes(|| store.delete_token("a").expect("delete"));
    assert_eq!(existed, 1, "exactly one delete removed the token");
    assert!(loaded_tokens(&store).is_empty());
}

/// A pending command `id` of type `kind`, created at `at_ms`.
pub fn command(id: &str, kind: &str, at_ms: i64) -> Command {
    let request = NewCommand::from_json(
        &json!({"type": kind, "payload": {"n": at_ms}}),
        &CommandLimits::default(),
        &doppel_model::Limits::default(),
    )
    .expect("valid command");
    Command::new(id.into(), request, Millis(at_ms))
}

fn command_write(key: &TwinKey, command: &Command) -> CommandWrite {
    CommandWrite::new(key, command).expect("encodable command")
}

fn all_commands(status: Option<CommandStatus>) -> CommandQuery {
    CommandQuery {
        status,
        after: None,
        limit: usize::MAX,
    }
}

fn ids(commands: &[Command]) -> Vec<&str> {
    commands.iter().map(|command| command.id.as_str()).collect()
}

pub fn commands_survive_reopening_and_never_mix_devices(backend: &impl Backend) {
    // Device "a" and device "ab" share a prefix; the same id under two devices is two commands.
    let (a, ab, other_tenant) = (key("t", "a"), key("t", "ab"), key("t2", "a"));
    let written = [
        (a.clone(), command("01", "reboot", 1)),
        (a.clone(), command("02", "photo", 2)),
        (ab.clone(), command("01", "diagnose", 3)),
        (other_tenant.clone(), command("01", "reset", 4)),
    ];
    {
        let store = backend.open();
        let writes: Vec<CommandWrite> = written
            .iter()
            .map(|(key, command)| command_write(key, command))
            .collect();
        store.commit_commands(&writes).expect("commit");
    }
    let store = backend.open();
    let mut visited = Vec::new();
    let count = store
        .load_commands(&mut |key, command| visited.push((key, command)))
        .expect("load");
    assert_eq!(count, 4);
    visited.sort_by(|x, y| (&x.0, &x.1.id).cmp(&(&y.0, &y.1.id)));
    let mut expected = written.to_vec();
    expected.sort_by(|x, y| (&x.0, &x.1.id).cmp(&(&y.0, &y.1.id)));
    assert_eq!(visited, expected);
    assert_eq!(
        store.command(&ab, "01").expect("get"),
        Some(written[2].1.clone())
    );
    assert_eq!(store.command(&ab, "02").expect("get"), None);
    assert_eq!(
        ids(&store.commands(&a, &all_commands(None)).expect("list")),
        ["01", "02"]
    );
    assert!(loaded(&store).is_empty(), "commands never load as twins");
}

pub fn twin_and_command_writes_commit_as_one_group(backend: &impl Backend) {
    let device = key("t", "d");
    let queued = command("01", "reboot", 1);
    {
        let store = backend.open();
        store
            .commit_group(
                &[desired_write(&device, 1, 10, 7)],
                &[command_write(&device, &queued)],
            )
            .expect("commit");
        store
            .commit_group(&[], &[])
            .expect("an empty group commits nothing");
    }
    let store = backend.open();
    let twins = loaded(&store);
    assert_eq!(twins.len(), 1);
    assert_eq!((&twins[0].0, twins[0].1.version), (&device, 1));
    assert_eq!(
        versions(&store.history(&device, &all_history()).expect("history")),
        [1]
    );
    assert_eq!(store.command(&device, "01").expect("get"), Some(queued));
}

pub fn a_later_command_write_replaces_it_and_lists_filter(backend: &impl Backend) {
    let device = key("t", "d");
    let store = backend.open();
    let first = command("01", "reboot", 1);
    let second = command("02", "photo", 2);
    let third = command("03", "photo", 3);
    let writes: Vec<CommandWrite> = [&first, &second, &third]
        .into_iter()
        .map(|command| command_write(&device, command))
        .collect();
    store.commit_commands(&writes).expect("commit");
    let mut canceled = second.clone();
    canceled.cancel(Millis(10)).expect("cancel");
    store
        .commit_commands(&[command_write(&device, &canceled)])
        .expect("commit");
    assert_eq!(
        store.command(&device, "02").expect("get"),
        Some(canceled.clone())
    );
    assert_eq!(
        ids(&store
            .commands(&device, &all_commands(Some(CommandStatus::Pending)))
            .expect("list")),
        ["01", "03"]
    );
    assert_eq!(
        ids(&store
            .commands(&device, &all_commands(Some(CommandStatus::Canceled)))
            .expect("list")),
        ["02"]
    );
    let page = |after: Option<&str>| CommandQuery {
        status: None,
        after: after.map(String::from),
        limit: 2,
    };
    assert_eq!(
        ids(&store.commands(&device, &page(None)).expect("list")),
        ["01", "02"]
    );
    assert_eq!(
        ids(&store.commands(&device, &page(Some("02"))).expect("list")),
        ["03"]
    );
    assert!(
        store
            .commands(&key("t", "nobody"), &page(None))
            .expect("list")
            .is_empty()
    );
}

pub fn settled_commands_expire_and_open_ones_never(backend: &impl Backend) {
    let device = key("t", "d");
    let store = backend.open();
    let mut early = command("01", "reboot", 1);
    early.cancel(Millis(1_000)).expect("cancel");
    let mut late = command("02", "photo", 2);
    late.cancel(Millis(5_000)).expect("cancel");
    let open = command("03", "photo", 3);
    let writes: Vec<CommandWrite> = [&early, &late, &open]
        .into_iter()
        .map(|command| command_write(&device, command))
        .collect();
    store.commit_commands(&writes).expect("commit");
    assert_eq!(store.expire_commands(Millis(1_000)).expect("expire"), 0);
    assert_eq!(store.expire_commands(Millis(1_001)).expect("expire"), 1);
    assert_eq!(
        ids(&store.commands(&device, &all_commands(None)).expect("list")),
        ["02", "03"]
    );
    assert_eq!(store.expire_commands(Millis(1_000_000)).expect("expire"), 1);
    assert_eq!(store.expire_commands(Millis(1_000_000)).expect("expire"), 0);
    assert_eq!(store.command(&device, "02").expect("get"), None);
    drop(store);
    let store = backend.open();
    assert_eq!(
        ids(&store.commands(&device, &all_commands(None)).expect("list")),
        ["03"],
        "an open command is never expired, and expiry lasts"
    );
}

/// Expands to one `#[test]` per conformance case, each against a fresh `$backend`.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::conformance_tests!(@cases $backend;
            committed_writes_survive_reopening,
            a_later_commit_of_a_key_wins,
            tombstones_load_but_never_list,
            listing_pages_one_tenant_in_device_order,
            history_reads_in_version_order_with_filters,
            history_until_reads_newest_first_up_to_the_instant,
            expiry_drops_whole_old_buckets_only,
            credentials_survive_reopening,
            putting_a_credential_again_replaces_it,
            deleting_a_credential_says_whether_it_existed_and_lasts,
            racing_deletes_of_one_credential_succeed_once,
            tokens_survive_reopening,
            putting_a_token_again_replaces_it,
            putting_a_token_no_id_can_name_fails_and_stores_nothing,
            deleting_a_token_says_whether_it_existed_and_lasts,
            racing_deletes_of_one_token_succeed_once,
            commands_survive_reopening_and_never_mix_devices,
            twin_and_command_writes_commit_as_one_group,
            a_later_command_write_replaces_it_and_lists_filter,
            settled_commands_expire_and_open_ones_never,
        );
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::$case(&$backend);
            }
        )*
    };
}
