//! Recording presence: a session's start and end on its device's twin and as an AWS lifecycle
//! event, and the sweeps that correct twins whose presence this process did not see change.

use super::BrokerContext;
use crate::broker::Broker;
use crate::commands;
use crate::presence::{self, ClientEvent};
use doppel_engine::EngineError;
use doppel_model::{Change, ConnectionStatus, ModelError, TwinKey, UpdateRequest};
use doppel_wire::topic::{self as wire_topic, PresenceEvent};
use rmqtt::session::Session;
use rmqtt::types::Reason;
use std::sync::{Arc, PoisonError};

impl BrokerContext {
    /// A session began (`ended` is `None`) or ended: records it on the device's twin and
    /// publishes the AWS lifecycle event. The end is recorded in a task of its own: rmqtt
    /// refuses a reconnect with the same client id while the old session's disconnect hook is
    /// still running, so that hook must be quick (the sequence numbers keep the writes in order anyway).
    pub(crate) async fn on_presence(self: &Arc<Self>, session: &Session, ended: Option<&Reason>) {
        let writing = self.presence.writing();
        let Some(identity) = self.identity(session).await else {
            return;
        };
        // The client's own id: the session's is its key (see `admission`).
        let Ok(connect) = session.connect_info().await else {
            return;
        };
        if ended.is_some() {
            // A login whose session never asked for its identity leaves its entry here.
            self.logins
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&connect.id().to_string());
        }
        let twin = identity
            .device
            .as_ref()
            .map(|device| TwinKey::new(identity.tenant.clone(), device.clone()));
        let write = twin.as_ref().and_then(|key| match ended {
            None => Some((ConnectionStatus::Connected, self.presence.connected(key))),
            Some(_) => self
                .presence
                .disconnected(key)
                .map(|sequence| (ConnectionStatus::Disconnected, sequence)),
        });
        let sequence = write.map_or_else(|| self.presence.sequence(), |(_, sequence)| sequence);
        let client_id = connect.client_id().to_string();
        let event = ClientEvent {
            client_id: &client_id,
            session: presence::session_identifier(
                session.id.create_time,
                session.id.remote_addr.map_or(0, |addr| addr.port()),
            ),
            principal: &identity.principal,
            ip_address: session.id.remote_addr.map(|addr| addr.ip().to_string()),
            timestamp: self.now().0,
            sequence,
        };
        let (kind, body) = match ended {
            None => (PresenceEvent::Connected, presence::connected_event(&event)),
            Some(reason) => (
                PresenceEvent::Disconnected,
                presence::disconnected_event(&event, reason),
            ),
        };
        let topic = wire_topic::presence_event(kind.as_str(), &client_id);
        let connecting = ended.is_none();
        let context = self.clone();
        let record = async move {
            if let (Some(key), Some((status, sequence))) = (&twin, write) {
                let create = status == ConnectionStatus::Connected && identity.creates_twin();
                context
                    .record_presence(key, status, sequence, create, None)
                    .await;
            }
            context.publish(&identity.tenant, &topic, &body).await;
            if connecting && let Some(device) = &identity.device {
                // A device that reconnects with a kept session is already subscribed to its
                // commands and delta and would otherwise miss what came while it was away.
                commands::on_reconnect(&*context, &identity.tenant, device).await;
            }
            drop(writing);
        };
        if connecting {
            record.await;
        } else {
            tokio::spawn(record);
        }
    }

    /// Twins still CONNECTED from before this process started lost their device with the old
    /// process (a crash, or a stop that could not tell them): they are disconnected now.
    pub(crate) async fn disconnect_left_over_twins(self: Arc<Self>) {
        /// Presence writes in flight at once: enough to fill group commits, few enough not to
        /// crowd out the requests of devices reconnecting meanwhile.
        const CONCURRENT_WRITES: usize = 256;
        let Some(engine) = self.engine() else {
            return;
        };
        let found = tokio::task::spawn_blocking(move || {
            engine.live_twins_where(|twin| twin.connection.status == ConnectionStatus::Connected)
        })
        .await
        .unwrap_or_default();
        if found.is_empty() {
            return;
        }
        tracing::info!(
            twins = found.len(),
            "marking twins left connected by the previous run as disconnected"
        );
        for slice in found.chunks(CONCURRENT_WRITES) {
            let mut writes = tokio::task::JoinSet::new();
            for key in slice {
                if let Some(sequence) = self.presence.left_over(key) {
                    let context = self.clone();
                    let key = key.clone();
                    writes.spawn(async move {
                        let reason = Some("the hub restarted while the device was connected");
                        context
                            .record_presence(
                                &key,
                                ConnectionStatus::Disconnected,
                                sequence,
                                false,
                                reason,
                            )
                            .await;
                    });
                }
            }
            writes.join_all().await;
        }
    }

    /// A device's update created its twin after it connected (anonymous connects create no
    /// twin): record that it is connected now.
    pub(super) async fn catch_up_presence(&self, key: &TwinKey) {
        if let Some(sequence) = self.presence.catch_up(key) {
            self.record_presence(key, ConnectionStatus::Connected, sequence, false, None)
                .await;
        }
    }

    async fn record_presence(
        &self,
        key: &TwinKey,
        status: ConnectionStatus,
        sequence: u64,
        create: bool,
        reason: Option<&str>,
    ) {
        let Some(engine) = self.engine() else {
            return;
        };
        let request = UpdateRequest {
            change: Change::Connection {
                status,
                sequence,
                create,
            },
            expected_version: None,
            changed_by: key.device.as_str().to_owned(),
            change_reason: reason.map(str::to_owned),
            client_token: None,
            trace: None,
        };
        match engine.update(key.clone(), request).await {
            Ok(_) | Err(EngineError::Model(ModelError::TwinNotFound)) => {}
            Err(err) => tracing::warn!(error = %err, twin = %key, "cannot record presence"),
        }
    }
}
