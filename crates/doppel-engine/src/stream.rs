//! Change streams: every twin and command event of a tenant, numbered per tenant and kept for a
//! while so that a client that reconnects resumes without a gap or a duplicate.
//!
//! One task follows the engine's changes and the command events (losslessly, so no event is
//! skipped) and appends each event to its tenant's stream: the next sequence number, a bounded
//! ring for resuming, and a broadcast to the live subscribers. Appending never waits for a
//! subscriber: a subscriber that falls more than its buffer behind is told it lagged and is cut
//! off, so a slow client can never slow the write path.
//!
//! A tenant's stream begins when its first client subscribes: until then nobody could resume,
//! and the hub spends nothing on it (decoding the previous state, rendering).
//!
//! The ring is bounded twice: by events (`streams.retention`) and by bytes
//! (`streams.retention_bytes`), because one event carries the whole changed section (a
//! `twin.reported` event of a 64 KiB state is 64 KiB), so 65,536 events could pin 4 GiB per
//! tenant. When no client has been attached for `streams.idle_release`, the tenant's stream is
//! released (ring, broadcast buffer and all) and stops following changes; only its next
//! sequence number is kept, so a later resume from an id of before is told of the gap instead
//! of being handed events that reuse its numbers.
//!
//! Event ids are `{epoch}-{sequence}`. The epoch is the process's start instant in milliseconds:
//! the ring lives in memory, so a restart begins a new epoch, and an id of an earlier epoch (or
//! one older than the ring) is answered with an explicit gap instead of a silent jump.

use crate::clock::Clock;
use crate::commands::{CommandEvent, CommandEventKind};
use crate::events::TwinChange;
use doppel_model::{HistoryKind, Millis, TenantId, Twin, TwinKey};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Default events kept per tenant for resuming: a few minutes of a busy tenant's changes, at
/// a few hundred bytes each.
pub const DEFAULT_STREAM_RETENTION: usize = 65_536;
/// Default bytes of events kept per tenant for resuming: 64 MiB holds the default number of
/// events at 1 KiB each, and bounds a tenant whose events carry large states (up to
/// `limits.max_document_bytes` each) to the same memory.
pub const DEFAULT_STREAM_RETENTION_BYTES: usize = 64 * 1024 * 1024;
/// Default time a tenant's stream is kept with no client attached before it is released: long
/// enough for a client to reconnect after a restart or a network change, short enough that a
/// tenant nobody watches any more stops costing memory and work.
pub const DEFAULT_STREAM_IDLE_RELEASE: Duration = Duration::from_secs(10 * 60);
/// Bytes an event costs in the ring beyond its JSON: the event itself, its `Arc`, its key's
/// heap parts rounded up, the ring's slot. An estimate, so the byte bound holds for small events
/// too.
const EVENT_OVERHEAD_BYTES: usize = 128;
/// Default events a live subscriber may fall behind before it is cut off.
pub const DEFAULT_SUBSCRIBER_BUFFER: usize = 8_192;

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    TwinReported,
    TwinDesired,
    TwinDelta,
    TwinConnection,
    /// A connected device stayed silent past its expected activity interval.
    TwinStale,
    TwinDeleted,
    Command(CommandEventKind),
}

impl EventType {
    /// Every type a client may ask for, by name.
    pub const NAMES: [&'static str; 13] = [
        "twin.reported",
        "twin.desired",
        "twin.delta",
        "twin.connection",
        "twin.stale",
        "twin.deleted",
        "command.queued",
        "command.delivered",
        "command.acknowledged",
        "command.expired",
        "command.canceled",
        "command.failed",
        "command.acknowledged_late",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::TwinReported => "twin.reported",
            Self::TwinDesired => "twin.desired",
            Self::TwinDelta => "twin.delta",
            Self::TwinConnection => "twin.connection",
            Self::TwinStale => "twin.stale",
            Self::TwinDeleted => "twin.deleted",
            Self::Command(kind) => match kind {
                CommandEventKind::Queued => "command.queued",
                CommandEventKind::Delivered => "command.delivered",
                CommandEventKind::Acknowledged => "command.acknowledged",
                CommandEventKind::Expired => "command.expired",
                CommandEventKind::Canceled => "command.canceled",
                CommandEventKind::Failed => "command.failed",
                CommandEventKind::AcknowledgedLate => "command.acknowledged_late",
                CommandEventKind::Due => "command.due",
            },
        }
    }

    /// Whether `pattern` (a name, or a family such as `twin.*` or `command.*`) covers this type.
    pub fn matches(self, pattern: &str) -> bool {
        let name = self.name();
        match pattern.strip_suffix(".*") {
            Some(family) => name
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('.')),
            None => name == pattern,
        }
    }
}

/// Where an event stands in its tenant's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub epoch: u64,
    pub sequence: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.sequence)
    }
}

impl EventId {
    /// Reads an id this server handed out (the `Last-Event-ID` of a reconnecting client).
    pub fn parse(text: &str) -> Option<EventId> {
        let (epoch, sequence) = text.trim().split_once('-')?;
        Some(EventId {
            epoch: epoch.parse().ok()?,
            sequence: sequence.parse().ok()?,
        })
    }
}

/// One event, rendered once for every subscriber.
#[derive(Clone, Debug)]
pub struct StreamEvent {
    pub id: EventId,
    pub kind: EventType,
    pub key: TwinKey,
    /// The event as JSON, ready to send.
    pub data: Arc<str>,
}

/// What a subscriber starts from.
pub struct Opened {
    /// Events after the client's last one, oldest first, to send before the live ones.
    pub backlog: Vec<Arc<StreamEvent>>,
    /// Events from here on, none missing between the backlog and the first of these.
    pub live: broadcast::Receiver<Arc<StreamEvent>>,
    /// Set when the client's last event is not in the ring (an earlier epoch, or too old):
    /// the stream resumes from the oldest event kept, and the client must be told.
    pub gap: Option<Gap>,
}

/// What a client that reads the kept events without waiting for more gets (see
/// [`Streams::read`]).
pub struct Kept {
    /// Events after the client's last one (every kept event without one), oldest first.
    pub events: Vec<Arc<StreamEvent>>,
    /// As for [`Opened::gap`].
    pub gap: Option<Gap>,
    /// The newest id this stream has handed out, where a later read or subscription resumes
    /// from, or `None` while it has handed out none.
    pub last: Option<EventId>,
}

/// Why a resume could not continue exactly where the client left off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// The id is from before the server's last restart.
    EarlierEpoch,
    /// The id is older than the events the server still keeps.
    Expired,
    /// The id is ahead of anything this server handed out.
    Unknown,
}

impl Gap {
    pub fn reason(self) -> &'static str {
        match self {
            Self::EarlierEpoch => {
                "the server restarted since that event; events in between are not kept across restarts"
            }
            Self::Expired => "that event is older than the events the server keeps",
            Self::Unknown => "the server never handed out that event id",
        }
    }
}

/// How much of each tenant's stream is kept, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Most events kept per tenant for resuming.
    pub retention: usize,
    /// Most bytes of events kept per tenant for resuming (see [`event_cost`]).
    pub retention_bytes: usize,
    /// Events a subscriber may fall behind before it is cut off.
    pub subscriber_buffer: usize,
    /// How long a tenant's stream is kept with no client attached.
    pub idle_release: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            retention: DEFAULT_STREAM_RETENTION,
            retention_bytes: DEFAULT_STREAM_RETENTION_BYTES,
            subscriber_buffer: DEFAULT_SUBSCRIBER_BUFFER,
            idle_release: DEFAULT_STREAM_IDLE_RELEASE,
        }
    }
}

/// What one event costs the ring, in bytes: its JSON and [`EVENT_OVERHEAD_BYTES`].
fn event_cost(event: &StreamEvent) -> usize {
    event.data.len() + EVENT_OVERHEAD_BYTES
}

struct TenantStream {
    next: u64,
    /// The first sequence number of this stream: ids below it were handed out before the
    /// stream was last released, and events may have happened between them and this stream.
    floor: u64,
    ring: VecDeque<Arc<StreamEvent>>,
    /// What the events in `ring` cost, by [`event_cost`].
    bytes: usize,
    live: broadcast::Sender<Arc<StreamEvent>>,
    /// Since when no client has been attached, as far as the last sweep saw.
    unwatched_since: Option<Millis>,
}

/// The change streams of every tenant.
pub struct Streams {
    epoch: u64,
    limits: StreamLimits,
    clock: Arc<dyn Clock>,
    tenants: Mutex<Tenants>,
    /// Set when the server stops: subscriptions end instead of holding the shutdown up.
    closing: watch::Sender<bool>,
}

/// The streams of every tenant, and the next sequence number of each released one.
#[derive(Default)]
struct Tenants {
    streams: HashMap<TenantId, TenantStream>,
    /// A released tenant's next sequence number (a few bytes, kept for good): its next stream
    /// continues the numbering, so no id is ever handed out twice within an epoch.
    released: HashMap<TenantId, u64>,
}

impl Streams {
    /// The streams of a process that started at `clock.now()` (the epoch of its ids).
    pub(crate) fn new(clock: Arc<dyn Clock>, limits: StreamLimits) -> Streams {
        Streams {
            epoch: u64::try_from(clock.now().0).unwrap_or(0),
            limits: StreamLimits {
                retention: limits.retention.max(1),
                retention_bytes: limits.retention_bytes.max(1),
                subscriber_buffer: limits.subscriber_buffer.max(1),
                idle_release: limits.idle_release,
            },
            clock,
            tenants: Mutex::default(),
            closing: watch::Sender::new(false),
        }
    }

    /// Ends every subscription now and from now on: the server is stopping.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` when the server stops; subscriptions end then.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    fn tenant<'a>(&self, tenants: &'a mut Tenants, tenant: &TenantId) -> &'a mut TenantStream {
        let Tenants { streams, released } = tenants;
        streams.entry(tenant.clone()).or_insert_with(|| {
            let next = released.remove(tenant).unwrap_or(1);
            TenantStream {
                next,
                floor: next,
                ring: VecDeque::new(),
                bytes: 0,
                live: broadcast::channel(self.limits.subscriber_buffer).0,
                unwatched_since: None,
            }
        })
    }

    /// Starts a subscription to `tenant`'s stream after `last` (a client's `Last-Event-ID`), or
    /// at the live edge without one.
    pub fn open(&self, tenant: &TenantId, last: Option<EventId>) -> Opened {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let stream = self.tenant(&mut tenants, tenant);
        // Taken under the lock that appends: nothing falls between the backlog and `live`.
        let live = stream.live.subscribe();
        let (backlog, gap) = match last {
            Some(last) => self.after(stream, last),
            None => (Vec::new(), None),
        };
        Opened { backlog, live, gap }
    }

    /// The kept events of `tenant`'s stream after `last`, or all of them without it, for a
    /// client that reads what is there instead of waiting for more. The read begins the stream
    /// as a subscription would, and counts as a client attached: the stream is released no
    /// sooner than `idle_release` after the last read, so a client that reads now and then
    /// resumes without a gap.
    pub fn read(&self, tenant: &TenantId, last: Option<EventId>) -> Kept {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let stream = self.tenant(&mut tenants, tenant);
        stream.unwatched_since = None;
        let (events, gap) = match last {
            Some(last) => self.after(stream, last),
            None => (stream.ring.iter().cloned().collect(), None),
        };
        Kept {
            events,
            gap,
            last: (stream.next > stream.floor).then(|| EventId {
                epoch: self.epoch,
                sequence: stream.next - 1,
            }),
        }
    }

    /// The kept events after `last`, and the gap when they do not follow it exactly.
    fn after(&self, stream: &TenantStream, last: EventId) -> (Vec<Arc<StreamEvent>>, Option<Gap>) {
        let oldest = stream.ring.front().map_or(stream.next, |e| e.id.sequence);
        let (from, gap) = if last.epoch != self.epoch {
            (oldest, Some(Gap::EarlierEpoch))
        } else if last.sequence >= stream.next {
            (stream.next, Some(Gap::Unknown))
        } else if last.sequence < stream.floor || last.sequence + 1 < oldest {
            (oldest, Some(Gap::Expired))
        } else {
            (last.sequence + 1, None)
        };
        let skip = usize::try_from(from.saturating_sub(oldest)).unwrap_or(usize::MAX);
        (stream.ring.iter().skip(skip).cloned().collect(), gap)
    }

    /// Whether `tenant`'s stream has begun (a client subscribed since the server started).
    fn streaming(&self, tenant: &TenantId) -> bool {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .streams
            .contains_key(tenant)
    }

    /// Releases the stream of every tenant no client has been attached to for
    /// `idle_release`, as far as this and earlier sweeps saw; returns how many it released.
    /// Called now and then by [`Streams::run`].
    fn release_idle(&self) -> usize {
        let now = self.clock.now();
        let idle_ms = i64::try_from(self.limits.idle_release.as_millis()).unwrap_or(i64::MAX);
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let Tenants { streams, released } = &mut *tenants;
        let before = streams.len();
        streams.retain(|tenant, stream| {
            if stream.live.receiver_count() > 0 {
                stream.unwatched_since = None;
                return true;
            }
            let since = *stream.unwatched_since.get_or_insert(now);
            if now.0.saturating_sub(since.0) < idle_ms {
                return true;
            }
            tracing::info!(
                tenant = %tenant,
                events = stream.ring.len(),
                bytes = stream.bytes,
                "released the change stream of a tenant no client watched"
            );
            released.insert(tenant.clone(), stream.next);
            false
        });
        before - streams.len()
    }

    /// Appends events of one tenant in order and hands them to its live subscribers.
    fn append(&self, tenant: &TenantId, events: Vec<(EventType, TwinKey, Value)>) {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let stream = self.tenant(&mut tenants, tenant);
        for (kind, key, mut body) in events {
            let id = EventId {
                epoch: self.epoch,
                sequence: stream.next,
            };
            stream.next += 1;
            if let Value::Object(fields) = &mut body {
                fields.insert("id".into(), Value::String(id.to_string()));
                fields.insert("type".into(), Value::String(kind.name().into()));
                fields.insert("device_id".into(), Value::String(key.device.to_string()));
            }
            let event = Arc::new(StreamEvent {
                id,
                kind,
                key,
                data: Arc::from(body.to_string()),
            });
            stream.bytes += event_cost(&event);
            stream.ring.push_back(event.clone());
            while stream.ring.len() > self.limits.retention
                || stream.bytes > self.limits.retention_bytes
            {
                let Some(oldest) = stream.ring.pop_front() else {
                    break;
                };
                stream.bytes = stream.bytes.saturating_sub(event_cost(&oldest));
            }
            // No subscriber is not an error; a lagging one learns it from its receiver.
            let _ = stream.live.send(event);
        }
    }

    /// Follows twin changes and command events into the streams until both feeds end.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut changes: mpsc::Receiver<TwinChange>,
        mut commands: mpsc::Receiver<CommandEvent>,
    ) {
        let (mut changes_open, mut commands_open) = (true, true);
        // Often enough that a stream is released within a tenth of `idle_release` of its time.
        let mut sweeps = tokio::time::interval(
            (self.limits.idle_release / 10)
                .clamp(Duration::from_millis(100), Duration::from_secs(60)),
        );
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while changes_open || commands_open {
            tokio::select! {
                _ = sweeps.tick() => {
                    self.release_idle();
                }
                change = changes.recv(), if changes_open => match change {
                    Some(change) if self.streaming(&change.key.tenant) => {
                        self.append(&change.key.tenant, twin_events(&change));
                    }
                    Some(_) => {}
                    None => changes_open = false,
                },
                event = commands.recv(), if commands_open => match event {
                    Some(event)
                        if event.kind != CommandEventKind::Due
                            && self.streaming(&event.key.tenant) =>
                    {
                        let body = json!({
                            "at": event.command.transitions.last().map(|t| t.at.to_rfc3339()),
                            "command": event.command.view(),
                        });
                        let kind = EventType::Command(event.kind);
                        let tenant = event.key.tenant.clone();
                        self.append(&tenant, vec![(kind, event.key, body)]);
                    }
                    Some(_) => {}
                    None => commands_open = false,
                },
            }
        }
    }
}

/// The events one twin change makes: the sections that changed, and the delta when it did.
fn twin_events(change: &TwinChange) -> Vec<(EventType, TwinKey, Value)> {
    let current = &change.current;
    let at = current.updated_at.to_rfc3339();
    let key = || change.key.clone();
    let traceparent = change.trace.map(|trace| trace.to_string());
    let base = |fields: Value| {
        let mut body = json!({"at": at, "version": current.version});
        if let Some(traceparent) = &traceparent {
            body[doppel_model::trace::TRACEPARENT] = json!(traceparent);
        }
        if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
            body.extend(fields);
        }
        body
    };
    if change.kind == HistoryKind::Deleted {
        return vec![(EventType::TwinDeleted, key(), base(json!({})))];
    }
    let previous = match change.previous_twin() {
        Ok(previous) => previous,
        Err(err) => {
            tracing::error!(error = %err, twin = %change.key, "cannot decode a twin's previous state for its events");
            None
        }
    };
    let empty = Twin::default();
    let before = previous.as_ref().unwrap_or(&empty);
    let mut events = Vec::new();
    if before.reported != current.reported {
        events.push((
            EventType::TwinReported,
            key(),
            base(json!({"reported": current.reported.state, "reported_version": current.reported.version})),
        ));
    }
    if before.desired != current.desired {
        events.push((
            EventType::TwinDesired,
            key(),
            base(json!({"desired": current.desired.state, "desired_version": current.desired.version})),
        ));
    }
    if !events.is_empty() {
        let delta = current.delta();
        if delta != before.delta() {
            events.push((EventType::TwinDelta, key(), base(json!({"delta": delta}))));
        }
    }
    if before.connection.status != current.connection.status {
        let kind = if current.connection.stale {
            EventType::TwinStale
        } else {
            EventType::TwinConnection
        };
        events.push((
            kind,
            key(),
            base(json!({"connection": {
                "status": current.connection.status,
                "last_connected_at": current.connection.last_connected_at.map(|at| at.to_rfc3339()),
                "last_disconnected_at": current.connection.last_disconnected_at.map(|at| at.to_rfc3339()),
                "last_activity_at": current.connection.last_activity_at.map(|at| at.to_rfc3339()),
            }})),
        ));
    }
    events
}

#[cfg(test)]
mod tests;
