//! `/readyz` over a store whose command commits fail: twin and command writes share one group
//! committer, so a failed command commit is a failed commit like any other.

use crate::auth::Authentication;
use crate::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use doppel_engine::{Engine, EngineConfig, SystemClock};
use doppel_model::command::NewCommand;
use doppel_model::{DeviceId, Limits, TenantId, TwinKey};
use doppel_store::{HistoryBuckets, MemoryStore};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

async fn readiness(state: &AppState) -> (StatusCode, Value) {
    let request = Request::get("/readyz")
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .expect("a request");
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("an answer");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .expect("a body");
    (status, serde_json::from_slice(&body).expect("JSON"))
}

#[tokio::test]
async fn a_failed_command_commit_makes_readiness_answer_503() {
    let store = MemoryStore::new(HistoryBuckets::new(60_000));
    store.fail_command_commits();
    let (engine, _tasks) = Engine::start(
        Arc::new(store),
        Arc::new(SystemClock),
        EngineConfig::default(),
    )
    .await
    .expect("the engine starts");
    let state = AppState::new(
        Limits::default(),
        Authentication::Anonymous,
        Arc::new(SystemClock),
    );
    state.set_engine(engine.clone());
    assert_eq!(readiness(&state).await.0, StatusCode::OK);

    let key = TwinKey::new(
        TenantId::new("default").expect("a tenant"),
        DeviceId::new("pump-7").expect("a device"),
    );
    let reboot = NewCommand {
        kind: "reboot".into(),
        payload: json!({}),
        priority: 0,
        ttl: Duration::from_secs(60),
        idempotency_key: None,
    };
    assert!(
        engine.commands().queue(key, reboot).await.is_err(),
        "the command was not acknowledged"
    );
    assert_eq!(engine.stats().failed_commits, 1);
    let (status, problem) = readiness(&state).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["code"], "storage_failed", "{problem}");
}
