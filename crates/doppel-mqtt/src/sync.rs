//! Replica sync over MQTT: edge agents send the changes they made while away and get the hub's
//! replicated state back.
//!
//! An edge agent publishes a [`SyncRequest`] on `$doppel/things/{thing}/sync`. The hub merges
//! each change as its own durable change, in order, and answers on `.../sync/accepted` with a
//! [`SyncAccepted`], or on `.../sync/rejected` with `{"token", "code", "message"}`
//! (`doppel_wire::sync` describes the messages).

use crate::broker::Broker;
use crate::identity::Identity;
use crate::rejection::Rejection;
use doppel_engine::{Engine, EngineError, Outcome};
use doppel_model::replica::{ReplicaDelta, snapshot};
use doppel_model::{Change, DeviceId, Millis, ModelError, Twin, TwinKey, UpdateRequest};
use doppel_wire::sync::{MAX_SYNC_CHANGES, SyncAccepted, SyncRequest};
use doppel_wire::topic;
use serde_json::Value;

/// What [`Rejection::of_engine`] logs a failure as.
const SYNC_REQUEST: &str = "a replica sync";

/// Merges a sync request published by a device and answers it. The caller has checked that the
/// topic is the device's own.
pub(crate) async fn handle(broker: &impl Broker, identity: &Identity, thing: &str, payload: &[u8]) {
    let request = serde_json::from_slice::<SyncRequest>(payload);
    // A request that does not parse still gets its token back, when it has one.
    let token = match &request {
        Ok(request) => request.token.clone(),
        Err(_) => serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|body| body.get("token").cloned())
            .unwrap_or(Value::Null),
    };
    let request = request
        .map_err(|err| Rejection::bad_request(format!("the sync request is not valid: {err}")));
    let (answer, body) = match sync(broker, identity, thing, request).await {
        Ok((merged, state)) => {
            let accepted = SyncAccepted {
                merged,
                state,
                token,
            };
            match serde_json::to_value(accepted) {
                Ok(body) => (topic::Verdict::Accepted, body),
                Err(err) => {
                    tracing::error!(error = %err, "cannot encode a sync answer");
                    return;
                }
            }
        }
        Err(rejection) => {
            let mut body = rejection.document(broker.now());
            body.insert("token".into(), token);
            (topic::Verdict::Rejected, body.into())
        }
    };
    broker
        .publish(&identity.tenant, &topic::sync_answer(thing, answer), &body)
        .await;
}

async fn sync(
    broker: &impl Broker,
    identity: &Identity,
    thing: &str,
    request: Result<SyncRequest, Rejection>,
) -> Result<(usize, Option<ReplicaDelta>), Rejection> {
    let request = request?;
    if request.changes.len() > MAX_SYNC_CHANGES {
        return Err(Rejection::bad_request(format!(
            "{} changes in one sync request; the limit is {MAX_SYNC_CHANGES}",
            request.changes.len()
        )));
    }
    let device = DeviceId::new(thing).map_err(|err| Rejection::of_model(&err, thing))?;
    let engine = broker.engine().ok_or_else(Rejection::shutting_down)?;
    if let Some(forged) = request
        .changes
        .iter()
        .find(|change| change.origin.is_empty() || change.origin == engine.replica().id)
    {
        return Err(Rejection::bad_request(format!(
            "a change's origin {:?} must name the edge replica that made it, not the hub",
            forged.origin
        )));
    }
    let key = TwinKey::new(identity.tenant.clone(), device);
    let mut changes = request.changes;
    if changes.is_empty() {
        // A fetch: a twin the hub kept alone until now starts replicating, so that the state
        // sent out is the one the hub's later writes are stamped against.
        changes.push(ReplicaDelta {
            origin: engine.replica().id.clone(),
            ..ReplicaDelta::default()
        });
    }
    let mut merged = 0;
    for change in changes {
        let update = UpdateRequest {
            change_reason: Some(format!("synced from replica {}", change.origin)),
            change: Change::Merge(Box::new(change)),
            expected_version: None,
            changed_by: identity.principal.clone(),
            client_token: None,
            trace: None,
        };
        match engine.update(key.clone(), update).await {
            Ok(_) => merged += 1,
            // Nothing to merge into a twin that does not exist.
            Err(EngineError::Model(ModelError::TwinNotFound)) => {}
            // A change the model refuses is a malformed request whatever the model's reason
            // (docs/MQTT.md): 400 with the model's message, which names the field, rather than
            // the shadow protocol's AWS words.
            Err(EngineError::Model(err)) => return Err(Rejection::bad_request(err.to_string())),
            Err(err) => return Err(Rejection::of_engine(&err, thing, SYNC_REQUEST)),
        }
    }
    let twin = engine
        .get(&key)
        .map_err(|err| Rejection::of_engine(&err, thing, SYNC_REQUEST))?
        .filter(|twin| !twin.deleted);
    let twin = match twin {
        Some(twin) => Some(heard_from(&engine, &key, identity, twin).await),
        None => None,
    };
    let state = twin.and_then(|twin| snapshot(&twin, engine.replica()));
    Ok((merged, state))
}

/// Counts the sync as the device's sign of life, as a report would: an agent whose device
/// reports nothing new still syncs every interval, and its twin must not go UNKNOWN while it
/// does. Recorded when the last sign of life is older than half the device's activity
/// interval, so a twin's history gets about two entries per interval, not one per sync. The
/// twin after it.
async fn heard_from(engine: &Engine, key: &TwinKey, identity: &Identity, twin: Twin) -> Twin {
    let interval = engine.activity_interval(twin.meta.device_type.as_deref());
    let half = i64::try_from(interval.as_millis() / 2).unwrap_or(i64::MAX);
    let request = UpdateRequest {
        change: Change::Active {
            unless_active_since: Millis(engine.clock().now().0.saturating_sub(half)),
        },
        expected_version: None,
        changed_by: identity.principal.clone(),
        change_reason: Some("synced by an edge replica".to_owned()),
        client_token: None,
        trace: None,
    };
    match engine.update(key.clone(), request).await {
        Ok(Outcome::Changed(twin) | Outcome::Stale(twin)) => Twin::clone(&twin),
        // The twin as it was: the sync itself succeeded, and the next one records the activity.
        Err(err) => {
            tracing::debug!(error = %err, twin = %key, "cannot record a sync as activity");
            twin
        }
    }
}

#[cfg(test)]
mod tests;
