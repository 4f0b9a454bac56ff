use super::*;
use crate::{EngineConfig, ManualClock, QuotaError};
use doppel_model::{Change, ModelError};
use doppel_store::{HistoryBuckets, MemoryStore};
use serde_json::json;
use std::time::Duration;

pub(super) fn key(device: &str) -> TwinKey {
    TwinKey::new(TenantId::new("t").unwrap(), DeviceId::new(device).unwrap())
}

pub(super) fn request(change: Change) -> UpdateRequest {
    UpdateRequest {
        change,
        expected_version: None,
        changed_by: "test".into(),
        change_reason: None,
        client_token: None,
        trace: None,
    }
}

fn desired(value: serde_json::Value) -> UpdateRequest {
    request(Change::DesiredPatch(value))
}

fn config(shards: usize) -> EngineConfig {
    EngineConfig {
        shards,
        ..EngineConfig::default()
    }
}

async fn start(
    store: &MemoryStore,
    clock: Arc<ManualClock>,
    config: EngineConfig,
) -> (Engine, EngineTasks) {
    Engine::start(Arc::new(store.clone()), clock, config)
        .await
        .unwrap()
}

fn store() -> MemoryStore {
    MemoryStore::new(HistoryBuckets::new(1_000))
}

/// Most tests write a desired patch and only care that it was accepted.
async fn desire(engine: &Engine, key: TwinKey, value: serde_json::Value) -> Outcome {
    engine
        .update(key, desired(value))
        .await
        .expect("the patch is accepted")
}

async fn delete(engine: &Engine, key: TwinKey) -> Outcome {
    engine
        .update(key, request(Change::Delete))
        .await
        .expect("the twin is deleted")
}

/// Dropping the last handle is what lets the shard tasks finish, so the join must come second.
async fn stop(engine: Engine, tasks: EngineTasks) {
    drop(engine);
    tasks.join().await;
}

/// The whole history of a twin in these tests fits in one page of ten.
fn everything() -> HistoryQuery {
    HistoryQuery {
        kind: None,
        from: None,
        to: None,
        after_version: None,
        limit: 10,
    }
}

/// Spawns `count` desired writes at once, the `i`th being `write(i)`, so that they race.
fn race(
    engine: &Engine,
    count: usize,
    write: impl Fn(usize) -> (TwinKey, serde_json::Value),
) -> tokio::task::JoinSet<Result<Outcome, EngineError>> {
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..count {
        let engine = engine.clone();
        let (key, value) = write(i);
        writers.spawn(async move { engine.update(key, desired(value)).await });
    }
    writers
}

fn applied(outcome: Outcome) -> Arc<Twin> {
    match outcome {
        Outcome::Changed(twin) => twin,
        Outcome::Stale(_) => panic!("unexpectedly stale"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_writes_share_one_commit() {
    let store = store();
    let (engine, tasks) = start(&store, Arc::new(ManualClock::new(Millis(1))), config(1)).await;
    let mut writers = race(&engine, 200, |i| (key(&format!("d{i}")), json!({"i": i})));
    while let Some(result) = writers.join_next().await {
        applied(result.unwrap().unwrap());
    }
    let stats = engine.stats();
    assert_eq!((stats.writes, stats.twins), (200, 200));
    assert!(
        stats.commits <= 3,
        "200 concurrent writes took {} commits",
        stats.commits
    );
    assert_eq!(store.commit_count(), stats.commits);
    stop(engine, tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_to_one_twin_are_serialised() {
    let store = store();
    let (engine, tasks) = start(&store, Arc::new(ManualClock::new(Millis(1))), config(2)).await;
    let mut writers = race(&engine, 100, |i| {
        (key("one"), json!({ format!("k{i}"): i }))
    });
    let mut versions = Vec::new();
    while let Some(result) = writers.join_next().await {
        versions.push(applied(result.unwrap().unwrap()).version);
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=100).collect::<Vec<u64>>(),
        "every write got its own version"
    );
    let twin = engine.get(&key("one")).unwrap().unwrap();
    assert_eq!((twin.version, twin.desired.state.len()), (100, 100));
    stop(engine, tasks).await;
}

#[tokio::test]
async fn a_restart_rebuilds_memory_from_the_store() {
    let store = store();
    let clock = Arc::new(ManualClock::new(Millis(1)));
    let (engine, tasks) = start(&store, clock.clone(), config(2)).await;
    desire(&engine, key("a"), json!({"x": 1})).await;
    desire(&engine, key("b"), json!({"x": 2})).await;
    delete(&engine, key("b")).await;
    stop(engine, tasks).await;

    let (engine, tasks) = start(&store, clock, config(3)).await;
    assert_eq!(
        engine.get(&key("a")).unwrap().unwrap().desired.state["x"],
        json!(1)
    );
    assert!(
        engine.get(&key("b")).unwrap().is_none(),
        "deleted twins stay deleted"
    );
    let reborn = applied(desire(&engine, key("b"), json!({"y": 1})).await);
    assert_eq!(
        reborn.version, 3,
        "versions continue across delete and restart"
    );
    stop(engine, tasks).await;
}

#[tokio::test]
async fn rejected_requests_change_nothing_and_stale_reports_return_the_twin() {
    let store = store();
    let (engine, tasks) = start(&store, Arc::new(ManualClock::new(Millis(1))), config(1)).await;
    let report = |seq| {
        request(Change::Reported {
            patch: json!({"t": seq}),
            device_version: Some(seq),
        })
    };
    engine.update(key("a"), report(5)).await.unwrap();
    match engine.update(key("a"), report(4)).await.unwrap() {
        Outcome::Stale(twin) => assert_eq!(twin.reported.state["t"], json!(5)),
        other => panic!("expected stale, got {other:?}"),
    }
    let err = engine
        .update(key("a"), desired(json!("not an object")))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        EngineError::Model(ModelError::NotAnObject { .. })
    ));
    let mut conditional = desired(json!({"a": 1}));
    conditional.expected_version = Some(9);
    assert!(matches!(
        engine.update(key("a"), conditional).await,
        Err(EngineError::Model(ModelError::VersionMismatch { .. }))
    ));
    assert_eq!(engine.get(&key("a")).unwrap().unwrap().version, 1);
    assert_eq!(engine.stats().writes, 1);
    stop(engine, tasks).await;
}

#[tokio::test]
async fn history_and_time_travel() {
    let store = store();
    let clock = Arc::new(ManualClock::new(Millis(1_000)));
    let (engine, tasks) = start(&store, clock.clone(), config(1)).await;
    desire(&engine, key("a"), json!({"mode": "eco"})).await;
    clock.set(Millis(2_000));
    engine
        .update(
            key("a"),
            request(Change::Reported {
                patch: json!({"mode": "eco"}),
                device_version: None,
            }),
        )
        .await
        .unwrap();
    clock.set(Millis(3_000));
    desire(&engine, key("a"), json!({"mode": "boost"})).await;

    let query = everything();
    let entries = engine
        .history(&key("a"), query.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.kind, e.version))
            .collect::<Vec<_>>(),
        [
            (HistoryKind::Desired, 1),
            (HistoryKind::Reported, 2),
            (HistoryKind::Desired, 3)
        ]
    );
    assert!(
        engine
            .history(&key("never"), query)
            .await
            .unwrap()
            .is_none()
    );

    let TwinAt::Existed(then) = engine
        .get_at(&key("a"), Millis(2_500))
        .await
        .expect("the store answers")
    else {
        panic!("the twin existed at 2.5 s");
    };
    assert_eq!(
        (then.version, &then.desired.state["mode"]),
        (2, &json!("eco"))
    );
    assert!(then.delta().is_empty());
    assert_eq!(
        engine
            .get_at(&key("a"), Millis(999))
            .await
            .expect("the store answers"),
        TwinAt::NotYetCreated {
            created_at: Millis(1_000)
        }
    );
    assert_eq!(
        engine
            .get_at(&key("never"), Millis(2_500))
            .await
            .expect("the store answers"),
        TwinAt::Absent
    );
    clock.set(Millis(4_000));
    delete(&engine, key("a")).await;
    assert_eq!(
        engine
            .get_at(&key("a"), Millis(4_500))
            .await
            .expect("the store answers"),
        TwinAt::Absent,
        "deleted by then"
    );
    stop(engine, tasks).await;
}

#[tokio::test(start_paused = true)]
async fn retention_drops_old_history_on_its_timer() {
    let store = store();
    let clock = Arc::new(ManualClock::new(Millis(500)));
    let config = EngineConfig {
        history_retention: Duration::from_secs(2),
        retention_check_interval: Duration::from_secs(1),
        ..config(1)
    };
    let (engine, tasks) = start(&store, clock.clone(), config).await;
    desire(&engine, key("a"), json!({"v": 1})).await;
    clock.set(Millis(10_000));
    desire(&engine, key("a"), json!({"v": 2})).await;
    let query = everything();
    let mut remaining = 2;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        remaining = engine
            .history(&key("a"), query.clone())
            .await
            .unwrap()
            .unwrap()
            .len();
        if remaining == 1 {
            break;
        }
    }
    assert_eq!(
        remaining, 1,
        "the entry older than the retention was not dropped"
    );
    // Version 1 has expired: the twin existed before its oldest kept entry, so the engine
    // cannot say what it was at 5 s, and must not claim it did not exist yet.
    assert_eq!(
        engine
            .get_at(&key("a"), Millis(5_000))
            .await
            .expect("the store answers"),
        TwinAt::Absent
    );
    stop(engine, tasks).await;
}

#[tokio::test]
async fn subscribers_see_each_durable_change_in_order_with_the_previous_state() {
    let store = store();
    let clock = Arc::new(ManualClock::new(Millis(500)));
    let (engine, tasks) = start(&store, clock, config(2)).await;
    let mut events = engine.subscribe();
    let mut tagged = desired(json!({"v": 1}));
    tagged.client_token = Some("token-1".into());
    let trace: doppel_model::TraceParent =
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
    tagged.trace = Some(trace);
    engine.update(key("a"), tagged).await.unwrap();
    desire(&engine, key("a"), json!({"v": 2})).await;
    let rejected = UpdateRequest {
        expected_version: Some(99),
        ..desired(json!({"v": 3}))
    };
    assert!(engine.update(key("a"), rejected).await.is_err());
    delete(&engine, key("a")).await;

    let first = events.recv().await.unwrap();
    assert_eq!(first.key, key("a"));
    assert_eq!(first.kind, HistoryKind::Desired);
    assert!(first.previous_twin().unwrap().is_none());
    assert_eq!(first.client_token.as_deref(), Some("token-1"));
    assert_eq!(first.trace, Some(trace));
    let second = events.recv().await.unwrap();
    assert_eq!(second.current.version, 2);
    let before = second.previous_twin().unwrap().unwrap();
    assert_eq!(before.desired.state["v"], json!(1));
    assert_eq!(second.client_token, None);
    assert_eq!(second.trace, None);
    let third = events.recv().await.unwrap();
    assert_eq!(third.kind, HistoryKind::Deleted);
    assert!(third.current.deleted);
    assert!(
        events.try_recv().is_err(),
        "a rejected change sends no event"
    );
    stop(engine, tasks).await;
}

#[tokio::test]
async fn live_twins_can_be_found_by_their_state() {
    let store = store();
    let clock = Arc::new(ManualClock::new(Millis(500)));
    let (engine, tasks) = start(&store, clock, config(3)).await;
    for (device, value) in [("a", 1), ("b", 2), ("c", 1)] {
        desire(&engine, key(device), json!({"v": value})).await;
    }
    delete(&engine, key("c")).await;
    let found = engine.live_twins_where(|twin| twin.desired.state.get("v") == Some(&json!(1)));
    assert_eq!(found, vec![key("a")]);
    stop(engine, tasks).await;
}

#[tokio::test(start_paused = true)]
async fn a_follower_misses_nothing_and_holds_writes_back_while_behind() {
    let store = store();
    let clock = Arc::new(ManualClock::new(Millis(500)));
    let (engine, tasks) = start(&store, clock, config(1)).await;
    let mut follower = engine.follow(1);
    desire(&engine, key("a"), json!({"v": 1})).await;
    // Answered before its event is queued, so this returns though the queue is now full...
    desire(&engine, key("a"), json!({"v": 2})).await;
    // ...but the shard waits to hand over the second event, so the third write waits too.
    let third = tokio::spawn({
        let engine = engine.clone();
        async move { engine.update(key("a"), desired(json!({"v": 3}))).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !third.is_finished(),
        "writes wait for a follower that is behind"
    );
    let versions: Vec<u64> = [
        follower.recv().await.unwrap(),
        follower.recv().await.unwrap(),
        follower.recv().await.unwrap(),
    ]
    .iter()
    .map(|change| change.current.version)
    .collect();
    assert_eq!(versions, [1, 2, 3]);
    third.await.unwrap().unwrap();
    // A follower that leaves releases the shards.
    drop(follower);
    desire(&engine, key("a"), json!({"v": 4})).await;
    desire(&engine, key("a"), json!({"v": 5})).await;
    stop(engine, tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_shadows_and_tenant_twins_stop_at_their_limits_across_shards_and_restarts() {
    let store = store();
    let limited = || EngineConfig {
        shards: 4,
        limits: doppel_model::Limits {
            max_named_shadows: 3,
            max_twins_per_tenant: 5,
            ..doppel_model::Limits::default()
        },
        ..EngineConfig::default()
    };
    let clock = Arc::new(ManualClock::new(Millis(1)));
    let (engine, tasks) = start(&store, clock.clone(), limited()).await;
    // Ten shadows of one device at once, spread over the shards: exactly three are created.
    let mut writers = race(&engine, 10, |i| {
        (key(&format!("pump/shadows/s{i}")), json!({"i": i}))
    });
    let (mut created, mut refused) = (0, 0);
    while let Some(result) = writers.join_next().await {
        match result.unwrap() {
            Ok(_) => created += 1,
            Err(EngineError::Quota(QuotaError::TooManyNamedShadows { thing, limit: 3 })) => {
                assert_eq!(thing, "pump");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, refused), (3, 7));
    assert_eq!(
        engine.stats().twins,
        3,
        "a refused shadow is not even a tombstone"
    );
    // Writes to existing shadows go on; the device's own twin is no shadow of it.
    let existing = engine
        .live_twins_where(|_| true)
        .into_iter()
        .next()
        .unwrap();
    applied(desire(&engine, existing.clone(), json!({"more": 1})).await);
    applied(desire(&engine, key("pump"), json!({"on": true})).await);
    // The tenant holds 4 twins of 5: one more, then refused.
    applied(desire(&engine, key("fan"), json!({"on": true})).await);
    assert!(matches!(
        engine
            .update(key("heater"), desired(json!({"on": true})))
            .await,
        Err(EngineError::Quota(QuotaError::TooManyTwins {
            limit: 5,
            ..
        }))
    ));
    // Deleting makes room once the delete is durable.
    applied(delete(&engine, key("fan")).await);
    applied(desire(&engine, key("heater"), json!({"on": true})).await);
    stop(engine, tasks).await;

    // After a restart the counts come from the store: still full.
    let (engine, tasks) = start(&store, clock, limited()).await;
    assert!(matches!(
        engine
            .update(key("fan"), desired(json!({"on": true})))
            .await,
        Err(EngineError::Quota(QuotaError::TooManyTwins { .. }))
    ));
    applied(delete(&engine, existing.clone()).await);
    applied(desire(&engine, key("pump/shadows/new"), json!({"n": 1})).await);
    stop(engine, tasks).await;
}

#[tokio::test]
async fn loaded_twins_of_one_tenant_share_its_id() {
    let store = store();
    let (engine, _tasks) = start(&store, Arc::new(ManualClock::new(Millis(1))), config(2)).await;
    let keys =
        [("t", "a"), ("t", "b"), ("t", "c"), ("u", "x"), ("u", "y")].map(|(tenant, device)| {
            TwinKey::new(
                TenantId::new(tenant).expect("a valid tenant"),
                DeviceId::new(device).expect("a valid device"),
            )
        });
    for key in &keys {
        desire(&engine, key.clone(), json!({"on": true})).await;
    }

    let (maps, _) = load_shards(&store, &KeyHasher::default(), 2).expect("the twins load");
    let loaded: Vec<&TwinKey> = maps.iter().flat_map(|map| map.keys()).collect();
    assert_eq!(loaded.len(), keys.len());
    for tenant in ["t", "u"] {
        let ids: Vec<*const u8> = loaded
            .iter()
            .filter(|key| key.tenant.as_str() == tenant)
            .map(|key| key.tenant.as_str().as_ptr())
            .collect();
        assert!(ids.len() >= 2, "tenant {tenant}: {} twins", ids.len());
        assert!(
            ids.windows(2).all(|pair| pair[0] == pair[1]),
            "the twins of tenant {tenant} hold copies of its id"
        );
    }
}
