//! What replicas keep and exchange to merge a twin's changes: the stamp of a property's write,
//! a twin's replica state, the change replicas send each other and the record of a resolved
//! conflict. Pure data, below the twin, its history and its updates, which all carry it; the
//! rules that make and merge it are in [`crate::replica`].

use crate::crdt::Crdt;
use crate::hlc::Hlc;
use crate::meta::Meta;
use crate::policy::{ConflictPolicy, Side};
use crate::vclock::VectorClock;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Orders the writes of one property: the higher stamp wins.
///
/// `generation` comes first so that a policy can make one side's writes outrank the other's
/// (see [`crate::policy`]); the hybrid timestamp orders writes of equal generation and, because
/// a replica's timestamps only grow and move past every timestamp it has seen, makes a write
/// outrank everything its replica had seen. `replica` and `seq` make stamps unique, so `seen`
/// never decides the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub generation: u64,
    pub hlc: Hlc,
    pub replica: String,
    /// The writer's own entry in the twin's vector clock after the write: a replica whose clock
    /// has at least this much of `replica` has seen the write.
    pub seq: u64,
    /// What the writer had seen when it wrote (its vector clock before the write): tells a
    /// write that replaced another knowingly from one that was concurrent with it.
    #[serde(default, skip_serializing_if = "VectorClock::is_empty")]
    pub seen: VectorClock,
}

impl Stamp {
    fn key(&self) -> (u64, Hlc, &str, u64) {
        (self.generation, self.hlc, &self.replica, self.seq)
    }

    /// Whether this write was made knowing `other`.
    pub(crate) fn saw(&self, other: &Stamp) -> bool {
        self.seen.get(&other.replica) >= other.seq
    }
}

impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What one replica keeps to merge a twin's changes with the other replicas.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// How many changes of this twin each replica has made that this one has seen.
    pub clock: VectorClock,
    /// The latest hybrid timestamp issued or seen for this twin.
    pub hlc: Hlc,
    /// The stamp of each reported property's last write, kept after the property is removed
    /// so that a removal outranks older writes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reported: BTreeMap<String, Stamp>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub desired: BTreeMap<String, Stamp>,
    /// Reported properties declared as CRDTs; the property shows the CRDT's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub crdts: BTreeMap<String, Crdt>,
    /// At an edge agent: the twin's meta is the hub's, received with the hub's state. Until
    /// then the agent does not know the twin's device type, nor so its rules.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub meta_from_hub: bool,
}

impl ReplicaState {
    pub fn stamps(&self, side: Side) -> &BTreeMap<String, Stamp> {
        match side {
            Side::Reported => &self.reported,
            Side::Desired => &self.desired,
        }
    }

    pub(crate) fn stamps_mut(&mut self, side: Side) -> &mut BTreeMap<String, Stamp> {
        match side {
            Side::Reported => &mut self.reported,
            Side::Desired => &mut self.desired,
        }
    }
}

/// A property's value with the stamp of the write that set it; `null` for a removal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub value: Value,
    pub stamp: Stamp,
}

/// A change as replicas exchange it: the properties it wrote with their stamps, the CRDT
/// states it changed, and the vector clock of its origin after it. A replica's whole state is
/// a delta too ([`snapshot`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaDelta {
    /// The replica that made the change.
    pub origin: String,
    pub clock: VectorClock,
    pub hlc: Hlc,
    /// The twin's document version at the origin after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reported: BTreeMap<String, Register>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub desired: BTreeMap<String, Register>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub crdts: BTreeMap<String, Crdt>,
    /// The twin's meta, in the hub's state only: meta is the hub's, and agents take it as the
    /// hub sends it (a change from an agent carries none, and the hub ignores one that does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

impl ReplicaDelta {
    pub fn registers(&self, side: Side) -> &BTreeMap<String, Register> {
        match side {
            Side::Reported => &self.reported,
            Side::Desired => &self.desired,
        }
    }

    pub(crate) fn registers_mut(&mut self, side: Side) -> &mut BTreeMap<String, Register> {
        match side {
            Side::Reported => &mut self.reported,
            Side::Desired => &mut self.desired,
        }
    }
}

/// How a conflict between two concurrent writes of one property was resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub side: Side,
    pub property: String,
    /// The policy the property is under.
    pub policy: ConflictPolicy,
    /// The value that stands, and the replica that wrote it.
    pub kept: Value,
    pub kept_from: String,
    /// The value that lost (`null`: a removal), and the replica that wrote it.
    pub lost: Value,
    pub lost_from: String,
    pub reason: String,
}
