use super::*;
use crate::engine::tests::{key, request};
use crate::{EngineConfig, IndexedPaths, ManualClock};
use doppel_model::{Change, MetaPatch, Millis};
use doppel_store::{HistoryBuckets, MemoryStore};
use serde_json::json;
use std::sync::Arc;

async fn start(store: &MemoryStore) -> Engine {
    let config = EngineConfig {
        shards: 2,
        indexed_paths: IndexedPaths {
            state: vec![doppel_query::parse_path("reported.temp").unwrap()],
        },
        ..EngineConfig::default()
    };
    Engine::start(
        Arc::new(store.clone()),
        Arc::new(ManualClock::new(Millis(1_000))),
        config,
    )
    .await
    .unwrap()
    .0
}

async fn put(engine: &Engine, device: &str, site: &str, temp: i64) {
    let meta = MetaPatch::from_json(&json!({"tags": {"site": site}})).unwrap();
    engine
        .update(key(device), request(Change::Meta(meta)))
        .await
        .unwrap();
    engine
        .update(
            key(device),
            request(Change::DesiredPatch(json!({"temp": temp}))),
        )
        .await
        .unwrap();
}

/// Waits until the shards have indexed what they loaded at start (they do it when idle).
async fn indexed(engine: &Engine, query: &Query) {
    for _ in 0..1000 {
        if matches!(
            engine.candidates(&TenantId::new("t").unwrap(), query).1,
            Plan::Index(_)
        ) {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("the index never became ready");
}

fn devices(page: &QueryPage) -> Vec<String> {
    page.twins.iter().map(|(d, _)| d.to_string()).collect()
}

#[tokio::test]
async fn queries_see_every_acknowledged_write_and_use_the_index() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let engine = start(&store).await;
    let tenant = TenantId::new("t").unwrap();
    for (device, site, temp) in [("a", "berlin", 31), ("b", "berlin", 20), ("c", "paris", 35)] {
        put(&engine, device, site, temp).await;
    }
    let berlin = doppel_query::parse("tags.site = 'berlin' AND desired.temp > 25").unwrap();
    indexed(&engine, &berlin).await;
    let (page, plan) = engine
        .query(&tenant, berlin.clone(), None, 10, None)
        .await
        .unwrap();
    assert_eq!(devices(&page), ["a"]);
    assert_eq!(plan, Plan::Index(Path::Tag("site".into())));
    // A write acknowledged before the query starts is seen, through the index too.
    put(&engine, "b", "berlin", 40).await;
    put(&engine, "a", "paris", 31).await;
    let (page, _) = engine.query(&tenant, berlin, None, 10, None).await.unwrap();
    assert_eq!(devices(&page), ["b"]);
    let everything = doppel_query::parse("desired.temp >= 0").unwrap();
    let (page, plan) = engine
        .query(&tenant, everything.clone(), None, 2, None)
        .await
        .unwrap();
    assert_eq!(plan, Plan::Scan, "desired.temp is not an indexed path");
    assert_eq!(devices(&page), ["a", "b"]);
    let (rest, _) = engine
        .query(
            &tenant,
            everything.clone(),
            None,
            2,
            page.next_cursor.clone(),
        )
        .await
        .unwrap();
    assert_eq!(devices(&rest), ["c"]);
    assert_eq!(rest.next_cursor, None);
    let by_temp = doppel_query::parse_order("desired.temp DESC").unwrap();
    let (page, _) = engine
        .query(&tenant, everything.clone(), Some(by_temp.clone()), 2, None)
        .await
        .unwrap();
    assert_eq!(devices(&page), ["b", "c"]);
    let (rest, _) = engine
        .query(
            &tenant,
            everything.clone(),
            Some(by_temp),
            2,
            page.next_cursor,
        )
        .await
        .unwrap();
    assert_eq!(devices(&rest), ["a"]);
    let (total, groups) = engine
        .count(&tenant, everything, Some(Path::Tag("site".into())))
        .await
        .unwrap();
    assert_eq!(total, 3);
    assert_eq!(groups, [(json!("berlin"), 1), (json!("paris"), 2)]);
    let other = TenantId::new("other").unwrap();
    let (page, _) = engine
        .query(
            &other,
            doppel_query::parse("EXISTS desired.temp").unwrap(),
            None,
            10,
            None,
        )
        .await
        .unwrap();
    assert!(
        page.twins.is_empty(),
        "tenants never see each other's twins"
    );
}

#[tokio::test]
async fn twins_loaded_at_start_are_indexed_and_deleted_ones_leave() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    {
        let engine = start(&store).await;
        for i in 0..50 {
            put(
                &engine,
                &format!("d{i:02}"),
                if i % 2 == 0 { "even" } else { "odd" },
                i,
            )
            .await;
        }
        engine
            .update(key("d00"), request(Change::Delete))
            .await
            .unwrap();
    }
    let engine = start(&store).await;
    let tenant = TenantId::new("t").unwrap();
    let even = doppel_query::parse("tags.site = 'even'").unwrap();
    indexed(&engine, &even).await;
    let (page, plan) = engine
        .query(&tenant, even.clone(), None, 100, None)
        .await
        .unwrap();
    assert_eq!(plan, Plan::Index(Path::Tag("site".into())));
    assert_eq!(page.twins.len(), 24, "25 even twins, one deleted");
    // Paging through the index, across both shards, in device-id order without repeats.
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let (page, plan) = engine
            .query(&tenant, even.clone(), None, 7, cursor)
            .await
            .unwrap();
        assert!(matches!(plan, Plan::Index(_)));
        paged.extend(devices(&page));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (2..50).step_by(2).map(|i| format!("d{i:02}")).collect();
    assert_eq!(paged, expected);
    let (from_index, _) = engine
        .count(
            &tenant,
            doppel_query::parse("tags.site IN ('even', 'even', 'odd')").unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(from_index, 49, "each value counted once");
    let (scanned, _) = engine
        .count(
            &tenant,
            doppel_query::parse("NOT (tags.site = 'odd')").unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(scanned, 24, "a scan agrees with the index");
}
