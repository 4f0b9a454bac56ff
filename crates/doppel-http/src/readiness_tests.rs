//! `/readyz` over a store whose command commits fail: twin and command writes share one group
//! committer, so a failed command commit is a failed commit like any other.

use crate::auth::Authentication;
use crate::{AppState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use doppel_engine::{Engine, EngineConfig, SystemClock};
use doppel_model::codec::EncodedTwin;
use doppel_model::command::{Command, NewCommand};
use doppel_model::{DeviceId, HistoryEntry, Limits, Millis, ModelError, TenantId, Twin, TwinKey};
use doppel_store::{
    CommandQuery, CommandStore, CommandWrite, HistoryBuckets, HistoryQuery, MemoryStore,
    StoreError, TwinStore, TwinWrite,
};
use serde_json::{Value, json};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// A memory store whose commits fail whenever they carry a command.
struct CommandCommitsFail(MemoryStore);

impl TwinStore for CommandCommitsFail {
    fn commit_group(
        &self,
        twins: &[TwinWrite],
        commands: &[CommandWrite],
    ) -> Result<(), StoreError> {
        if !commands.is_empty() {
            // doppel-http does not see fjall's I/O error; any store error fails a commit alike.
            return Err(StoreError::Corrupt(ModelError::CorruptRecord(
                "this test's store refuses commands".into(),
            )));
        }
        self.0.commit_group(twins, commands)
    }

    fn load(&self, visit: &mut dyn FnMut(TwinKey, EncodedTwin)) -> Result<u64, StoreError> {
        self.0.load(visit)
    }

    fn list(
        &self,
        tenant: &TenantId,
        after: Option<&DeviceId>,
        limit: usize,
    ) -> Result<Vec<(DeviceId, Twin)>, StoreError> {
        self.0.list(tenant, after, limit)
    }

    fn history(
        &self,
        key: &TwinKey,
        query: &HistoryQuery,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.0.history(key, query)
    }

    fn history_until(
        &self,
        key: &TwinKey,
        at: Millis,
        visit: &mut dyn FnMut(HistoryEntry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.0.history_until(key, at, visit)
    }

    fn expire_history(&self, before: Millis) -> Result<usize, StoreError> {
        self.0.expire_history(before)
    }
}

impl CommandStore for CommandCommitsFail {
    fn commit_commands(&self, writes: &[CommandWrite]) -> Result<(), StoreError> {
        self.commit_group(&[], writes)
    }

    fn command(&self, key: &TwinKey, id: &str) -> Result<Option<Command>, StoreError> {
        self.0.command(key, id)
    }

    fn commands(&self, key: &TwinKey, query: &CommandQuery) -> Result<Vec<Command>, StoreError> {
        self.0.commands(key, query)
    }

    fn load_commands(&self, visit: &mut dyn FnMut(TwinKey, Command)) -> Result<u64, StoreError> {
        self.0.load_commands(visit)
    }

    fn expire_commands(&self, before: Millis) -> Result<usize, StoreError> {
        self.0.expire_commands(before)
    }
}

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
    let store = CommandCommitsFail(MemoryStore::new(HistoryBuckets::new(60_000)));
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
