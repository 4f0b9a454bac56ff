//! Presence: a device's twin says whether it is connected, and `$aws/events/presence/...` tells
//! subscribers when any client connects or disconnects (AWS IoT's lifecycle event format).

use doppel_engine::Clock;
use doppel_model::{Millis, TwinKey};
use doppel_wire::topic::PresenceEvent;
use rmqtt::types::Reason;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Live sessions per twin, and the sequence numbers that order presence writes (the twin's
/// `connection.sequence`, AWS's `versionNumber`).
///
/// A device can have two sessions for a moment (a reconnect takes over the old session, whose
/// end is reported after the new one began), and the two writes can reach the engine in either
/// order. The count decides what the twin should say; the sequence number, taken under the same
/// lock, lets the engine keep the newest decision whatever order the writes arrive in.
pub struct Presence {
    inner: Mutex<Sessions>,
    /// The engine's clock, which sequence numbers start from, so that they keep increasing
    /// across restarts.
    clock: Arc<dyn Clock>,
    /// Presence writes under way; shutdown waits for them.
    writing: Arc<AtomicUsize>,
}

/// Marks a presence write under way for as long as it lives; it may move into a task.
pub struct Writing(Arc<AtomicUsize>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Sessions {
    live: HashMap<TwinKey, u32>,
    /// The last sequence number handed out: microseconds since the epoch, forced to increase.
    /// Microseconds, though the clock counts milliseconds, because older versions stored
    /// microseconds: twins they wrote must still order before this version's writes.
    last_sequence: u64,
}

impl Sessions {
    fn sequence(&mut self, now: Millis) -> u64 {
        let now = u64::try_from(now.0).unwrap_or(0).saturating_mul(1000);
        self.last_sequence = now.max(self.last_sequence + 1);
        self.last_sequence
    }
}

impl Presence {
    pub fn new(clock: Arc<dyn Clock>) -> Presence {
        Presence {
            inner: Mutex::default(),
            clock,
            writing: Arc::default(),
        }
    }

    /// The sessions, locked, and now by the clock, read under the lock so that sequence
    /// numbers follow the order of the decisions they belong to.
    fn lock(&self) -> (MutexGuard<'_, Sessions>, Millis) {
        let sessions = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (sessions, self.clock.now())
    }

    /// A session of `twin` began; returns the sequence number of the CONNECTED write.
    pub fn connected(&self, twin: &TwinKey) -> u64 {
        let (mut sessions, now) = self.lock();
        *sessions.live.entry(twin.clone()).or_default() += 1;
        sessions.sequence(now)
    }

    /// A session of `twin` ended; returns the sequence number of the DISCONNECTED write, or
    /// `None` while another session of the same twin is still live.
    pub fn disconnected(&self, twin: &TwinKey) -> Option<u64> {
        let (mut sessions, now) = self.lock();
        let remaining = match sessions.live.get_mut(twin) {
            Some(count) => {
                *count = count.saturating_sub(1);
                *count
            }
            None => 0,
        };
        if remaining > 0 {
            return None;
        }
        sessions.live.remove(twin);
        Some(sessions.sequence(now))
    }

    /// Whether a session of `twin`'s device is live now.
    pub fn is_live(&self, twin: &TwinKey) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .live
            .contains_key(twin)
    }

    /// Counts a presence write as under way until the guard is dropped.
    pub fn writing(&self) -> Writing {
        self.writing.fetch_add(1, Ordering::AcqRel);
        Writing(self.writing.clone())
    }

    /// No device session is live and no presence write is under way.
    pub fn settled(&self) -> bool {
        let sessions = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.live.is_empty() && self.writing.load(Ordering::Acquire) == 0
    }

    /// For a twin found CONNECTED after a restart: the sequence number of a DISCONNECTED write,
    /// or `None` if the device has already connected again to this process.
    pub fn left_over(&self, twin: &TwinKey) -> Option<u64> {
        let (mut sessions, now) = self.lock();
        if sessions.live.contains_key(twin) {
            return None;
        }
        Some(sessions.sequence(now))
    }

    /// For a twin that exists only since its device connected (an anonymous client's first
    /// update makes it): the sequence number of a CONNECTED write while a session of it is live.
    pub fn catch_up(&self, twin: &TwinKey) -> Option<u64> {
        let (mut sessions, now) = self.lock();
        if !sessions.live.contains_key(twin) {
            return None;
        }
        Some(sessions.sequence(now))
    }

    /// A sequence number for an event that is not tied to a count (the `versionNumber` of
    /// events of clients without a twin).
    pub fn sequence(&self) -> u64 {
        let (mut sessions, now) = self.lock();
        sessions.sequence(now)
    }
}

/// Why a session ended, in AWS IoT's `disconnectReason` words, and whether the client asked.
pub fn disconnect_reason(reason: &Reason) -> (&'static str, bool) {
    match reason {
        Reason::Reasons(reasons) => reasons
            .iter()
            .map(disconnect_reason)
            .find(|(word, _)| *word != "CONNECTION_LOST")
            .unwrap_or(("CONNECTION_LOST", false)),
        Reason::ConnectDisconnect(_) => ("CLIENT_INITIATED_DISCONNECT", true),
        Reason::ConnectKeepaliveTimeout => ("MQTT_KEEP_ALIVE_TIMEOUT", false),
        Reason::ConnectKicked(false) => ("DUPLICATE_CLIENTID", false),
        Reason::ConnectKicked(true) => ("SERVER_INITIATED_DISCONNECT", false),
        Reason::ProtocolError(_) | Reason::MqttError(_) => ("CLIENT_ERROR", false),
        Reason::PublishResult(_) => ("AUTHORIZATION_ERROR", false),
        _ => ("CONNECTION_LOST", false),
    }
}

/// What an AWS lifecycle event says about a client.
pub struct ClientEvent<'a> {
    pub client_id: &'a str,
    /// The same for the connect and disconnect events of one connection.
    pub session: String,
    pub principal: &'a str,
    pub ip_address: Option<String>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The presence sequence number, which orders a client's events (`versionNumber`).
    pub sequence: u64,
}

/// `$aws/events/presence/connected/{clientId}`.
pub fn connected_event(event: &ClientEvent) -> Value {
    let mut body = base(event, PresenceEvent::Connected);
    body["ipAddress"] = json!(event.ip_address);
    body
}

/// `$aws/events/presence/disconnected/{clientId}`.
pub fn disconnected_event(event: &ClientEvent, reason: &Reason) -> Value {
    let (word, client_initiated) = disconnect_reason(reason);
    let mut body = base(event, PresenceEvent::Disconnected);
    body["clientInitiatedDisconnect"] = json!(client_initiated);
    body["disconnectReason"] = json!(word);
    body
}

fn base(event: &ClientEvent, kind: PresenceEvent) -> Value {
    json!({
        "clientId": event.client_id,
        "timestamp": event.timestamp,
        "eventType": kind.as_str(),
        "sessionIdentifier": event.session,
        "principalIdentifier": event.principal,
        "versionNumber": event.sequence,
    })
}

/// Names one connection: when it began (ms) and the client's port, which no other connection
/// of that moment shares.
pub fn session_identifier(created_at_ms: i64, remote_port: u16) -> String {
    format!("{created_at_ms:012x}-{remote_port:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_engine::ManualClock;
    use doppel_model::{DeviceId, TenantId};

    fn key(device: &str) -> TwinKey {
        TwinKey::new(TenantId::new("t").unwrap(), DeviceId::new(device).unwrap())
    }

    fn presence(clock: &Arc<ManualClock>) -> Presence {
        Presence::new(clock.clone())
    }

    #[test]
    fn sequence_numbers_are_the_clock_in_microseconds_and_always_increase() {
        let clock = Arc::new(ManualClock::new(Millis(5)));
        let presence = presence(&clock);
        assert_eq!(presence.connected(&key("a")), 5_000);
        // Within one millisecond, and when the clock steps back, they still increase.
        assert_eq!(presence.sequence(), 5_001);
        clock.set(Millis(4));
        assert_eq!(presence.disconnected(&key("a")), Some(5_002));
        clock.set(Millis(7));
        assert_eq!(presence.left_over(&key("b")), Some(7_000));
    }

    #[test]
    fn a_device_is_disconnected_only_when_its_last_session_ends() {
        let presence = presence(&Arc::new(ManualClock::new(Millis(1))));
        let first = presence.connected(&key("a"));
        let second = presence.connected(&key("a"));
        assert!(second > first);
        assert_eq!(presence.disconnected(&key("a")), None);
        let last = presence.disconnected(&key("a")).unwrap();
        assert!(last > second);
        // An end without a start (a session from before a restart) still says disconnected.
        assert!(presence.disconnected(&key("b")).is_some());
        assert_eq!(presence.catch_up(&key("c")), None);
        presence.connected(&key("c"));
        assert_eq!(presence.left_over(&key("c")), None);
        assert!(presence.catch_up(&key("c")).is_some());
        assert!(presence.left_over(&key("d")).unwrap() > last);
    }

    #[test]
    fn reasons_use_aws_words() {
        let nested = Reason::Reasons(vec![
            Reason::ConnectKeepaliveTimeout,
            Reason::ConnectRemoteClose,
        ]);
        assert_eq!(
            disconnect_reason(&nested),
            ("MQTT_KEEP_ALIVE_TIMEOUT", false)
        );
        assert_eq!(
            disconnect_reason(&Reason::ConnectDisconnect(None)),
            ("CLIENT_INITIATED_DISCONNECT", true)
        );
        assert_eq!(
            disconnect_reason(&Reason::ConnectRemoteClose),
            ("CONNECTION_LOST", false)
        );
        let event = ClientEvent {
            client_id: "c",
            session: "s-1".into(),
            principal: "p",
            ip_address: Some("127.0.0.1".into()),
            timestamp: 5,
            sequence: 9,
        };
        let body = disconnected_event(&event, &Reason::ConnectKicked(false));
        assert_eq!(body["disconnectReason"], "DUPLICATE_CLIENTID");
        assert_eq!(body["eventType"], "disconnected");
        assert_eq!(connected_event(&event)["ipAddress"], "127.0.0.1");
        assert_eq!(connected_event(&event)["sessionIdentifier"], "s-1");
    }
}
