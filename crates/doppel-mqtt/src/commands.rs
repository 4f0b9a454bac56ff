//! Commands over MQTT: delivery to devices, their acknowledgements, and command events for
//! applications.
//!
//! A device subscribes to `$doppel/things/{thing}/commands/+`; each command goes out on
//! `$doppel/things/{thing}/commands/{id}` at QoS 1. The device acknowledges on
//! `$doppel/things/{thing}/commands/{id}/ack` and hears back on `.../ack/accepted` or
//! `.../ack/rejected`. Applications follow `$doppel/events/commands/{thing}/{event}`.

use crate::broker::Broker;
use crate::identity::Identity;
use crate::rejection::Rejection;
use crate::shadow::service;
use doppel_engine::{CommandEvent, CommandEventKind};
use doppel_model::command::{self, Command};
use doppel_model::{DeviceId, TenantId, TwinKey};
use doppel_wire::command::CommandDelivery;
use doppel_wire::{Verdict, filter, topic};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Records the acknowledgement a device published on `thing`'s topic for the command `id`,
/// and answers it. The caller has checked that the topic is the device's own.
pub(crate) async fn handle_ack(
    broker: &impl Broker,
    identity: &Identity,
    thing: &str,
    id: &str,
    payload: &[u8],
) {
    let outcome = acknowledge(broker, identity, thing, id, payload).await;
    let (answer, body) = match outcome {
        Ok(command) => (Verdict::Accepted, command.view()),
        Err(rejection) => (Verdict::Rejected, rejection.document(broker.now()).into()),
    };
    let topic = topic::command_ack_answer(thing, id, answer);
    broker.publish(&identity.tenant, &topic, &body).await;
}

async fn acknowledge(
    broker: &impl Broker,
    identity: &Identity,
    thing: &str,
    id: &str,
    payload: &[u8],
) -> Result<Arc<Command>, Rejection> {
    let body: Value = serde_json::from_slice(payload).map_err(|err| {
        Rejection::bad_request(format!("the acknowledgement is not valid JSON: {err}"))
    })?;
    let (status, response) = command::parse_acknowledgement(&body)
        .map_err(|err| Rejection::bad_request(err.to_string()))?;
    let device = DeviceId::new(thing).map_err(|err| Rejection::of_model(&err, thing))?;
    let engine = broker.engine().ok_or_else(Rejection::shutting_down)?;
    let key = TwinKey::new(identity.tenant.clone(), device);
    engine
        .commands()
        .acknowledge(key, id.to_owned(), status, response)
        .await
        .map_err(|err| Rejection::of_engine(&err, thing, "a command acknowledgement"))
}

/// Sends `key`'s device the commands that are due, in delivery order, if it is connected and
/// listens for them. `reconnected` sends again what was in flight when the device went away.
///
/// A device that is away is not delivered to, even when the broker keeps its session: each
/// delivery counts as an attempt, and attempts must not run out while nobody can act on them.
/// It gets everything when it connects again.
pub(crate) async fn deliver(broker: &impl Broker, key: &TwinKey, reconnected: bool) {
    let thing = key.device.as_str();
    // Any id stands for all: a device subscribes to `commands/+`.
    if !broker.device_connected(key)
        || !broker
            .has_subscribers(&key.tenant, &topic::command_delivery(thing, "0"))
            .await
    {
        return;
    }
    let Some(engine) = broker.engine() else {
        return;
    };
    match engine
        .commands()
        // Everything due at once: a device has at most `commands.max_open` open commands, and
        // nothing else would send what a smaller batch left behind until a timeout.
        .deliver(key.clone(), reconnected, usize::MAX)
        .await
    {
        Ok(commands) => {
            for command in commands {
                let delivery = match serde_json::to_value(CommandDelivery::of(&command)) {
                    Ok(delivery) => delivery,
                    Err(err) => {
                        tracing::error!(error = %err, twin = %key, "cannot encode a command delivery");
                        continue;
                    }
                };
                let topic = topic::command_delivery(thing, &command.id);
                broker.publish(&key.tenant, &topic, &delivery).await;
            }
        }
        Err(err) => tracing::warn!(error = %err, twin = %key, "cannot deliver commands"),
    }
}

/// After a (re)connect or a subscription that brings the device's command topic: its due
/// commands, then its shadow's delta, so the device acts on commands before it converges on
/// the desired state.
pub(crate) async fn on_reconnect(broker: &impl Broker, tenant: &TenantId, device: &DeviceId) {
    deliver(broker, &TwinKey::new(tenant.clone(), device.clone()), true).await;
    service::resend_delta(broker, tenant, device).await;
}

/// Whether a subscription filter of `identity` brings its own command topic.
pub(crate) fn brings_commands(identity: &Identity, filter: &str) -> bool {
    identity.device.as_ref().is_some_and(|device| {
        filter::matches(filter, &topic::command_delivery(device.as_str(), "0"))
    })
}

/// Delivers queued commands to connected devices and publishes command events, until the
/// engine stops.
///
/// Deliveries run in a task of their own: a delivery waits for a command worker, and a worker
/// may be waiting for this feed to take its events, so the feed itself never waits for a worker.
pub(crate) async fn run_feed(broker: Arc<impl Broker>, mut events: mpsc::Receiver<CommandEvent>) {
    let (wanted, deliveries) = mpsc::unbounded_channel();
    let delivering = tokio::spawn(run_deliveries(broker.clone(), deliveries));
    while let Some(event) = events.recv().await {
        if matches!(event.kind, CommandEventKind::Queued | CommandEventKind::Due) {
            let _ = wanted.send(event.key.clone());
        }
        if event.kind != CommandEventKind::Due {
            announce(&*broker, &event).await;
        }
    }
    drop(wanted);
    let _ = delivering.await;
}

/// Delivers to each device that has commands due, once per batch of requests for it.
async fn run_deliveries(broker: Arc<impl Broker>, mut wanted: mpsc::UnboundedReceiver<TwinKey>) {
    let mut batch = Vec::new();
    while wanted.recv_many(&mut batch, 1024).await > 0 {
        let mut seen = HashSet::new();
        for key in batch.drain(..) {
            if seen.insert(key.clone()) {
                deliver(&*broker, &key, false).await;
            }
        }
    }
}

async fn announce(broker: &impl Broker, event: &CommandEvent) {
    let topic = topic::command_event(event.key.device.as_str(), event.kind.name());
    if !broker.has_subscribers(&event.key.tenant, &topic).await {
        return;
    }
    let body = json!({
        "event": format!("command.{}", event.kind.name()),
        "device": event.key.device.as_str(),
        "timestamp": broker.now().to_rfc3339(),
        "command": event.command.view(),
    });
    broker.publish(&event.key.tenant, &topic, &body).await;
}

#[cfg(test)]
mod tests;
