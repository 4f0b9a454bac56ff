//! The twin document.

use crate::meta::Meta;
use crate::replica_state::ReplicaState;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One side of the twin (reported or desired): the state, when each leaf last changed, and the
/// side's own version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// The JSON object itself.
    pub state: Map<String, Value>,
    /// The same shape as `state`, with a Unix-millisecond number at each leaf: when that leaf was
    /// last written. Lets a device or application tell which parts of a state are fresh.
    pub metadata: Map<String, Value>,
    /// Reported: the device's own monotonic sequence, so a late report cannot overwrite a newer
    /// one. Desired: incremented by the hub on each change.
    pub version: u64,
    /// When the section last changed; `None` until it is first written.
    pub updated_at: Option<Millis>,
}

/// What the hub knows of the device's link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionStatus {
    Connected,
    Disconnected,
    /// Never seen by a device interface, or silent for longer than expected.
    #[default]
    Unknown,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub status: ConnectionStatus,
    pub last_connected_at: Option<Millis>,
    #[serde(default)]
    pub last_disconnected_at: Option<Millis>,
    /// Any sign of life from the device, such as a report.
    pub last_activity_at: Option<Millis>,
    /// The stamp of the presence event that set `status`. Connects and disconnects of one device
    /// can reach the engine out of order (a session taken over by a reconnect ends after the new
    /// one began); an event with a lower stamp than this one is stale and ignored.
    #[serde(default)]
    pub sequence: u64,
    /// Set when the hub marked the device UNKNOWN because it stayed silent past its expected
    /// activity interval while claiming to be connected; its next report makes it CONNECTED
    /// again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

impl Connection {
    /// The last sign of life: a report, or a connect.
    pub fn last_active_at(&self) -> Option<Millis> {
        self.last_activity_at.max(self.last_connected_at)
    }

    /// Records a report from the device; one that was marked silent is connected again.
    pub fn heard_from(&mut self, now: Millis) {
        self.last_activity_at = Some(now);
        if self.stale {
            self.stale = false;
            self.status = ConnectionStatus::Connected;
        }
    }
}

/// The twin of one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Twin {
    /// The document version: +1 on every accepted change of any part. Never goes backwards, not
    /// even across a delete, so a version names exactly one state of the twin.
    pub version: u64,
    /// The AWS shadow `version`: +1 on every change of desired or reported state and on every
    /// delete, but not on presence or descriptive (meta) changes, so that device firmware that
    /// keeps the version of its last update can still update after reconnecting. Like `version`,
    /// it never goes backwards.
    #[serde(default)]
    pub shadow_version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub reported: Section,
    pub desired: Section,
    pub connection: Connection,
    pub meta: Meta,
    /// A deleted twin is kept as a tombstone so that its version keeps counting up if it is
    /// created again; it is invisible to readers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// What replicas need to merge this twin's changes (stamps, vector clock, CRDT states); only
    /// for twins kept by more than one replica, so the rest of the fleet does not pay for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<Box<ReplicaState>>,
}

impl Twin {
    /// The desired leaves that differ from reported; see [`crate::delta::delta`].
    pub fn delta(&self) -> Map<String, Value> {
        crate::delta::delta(&self.desired.state, &self.reported.state)
    }

    /// Whether desired and reported differ, without building the delta.
    pub fn has_delta(&self) -> bool {
        crate::delta::has_delta(&self.desired.state, &self.reported.state)
    }

    /// A live twin, or `None` for a tombstone.
    pub fn live(&self) -> Option<&Self> {
        (!self.deleted).then_some(self)
    }
}
