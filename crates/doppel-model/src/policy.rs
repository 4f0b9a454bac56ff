//! Conflict policies: which of two concurrent changes of one property wins when replicas merge.
//!
//! A policy does not act at merge time. It decides how a write is stamped (see
//! [`crate::replica_state::Stamp`]): the favoured side's writes get a higher generation than anything
//! they had seen, so they outrank every concurrent write of the other side, while a write made
//! after seeing a value always outranks that value. Merging is then one rule for every replica
//! and every policy, "the higher stamp wins", which is a join (associative, commutative,
//! idempotent): the hub and every edge agent reach the same state whatever order changes
//! arrive in.

use crate::crdt::CrdtKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How concurrent changes of a property are resolved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConflictPolicy {
    /// The hub's change wins over a concurrent change made at the edge.
    CloudWins,
    /// The edge's (device's) change wins over a concurrent change made at the hub.
    DeviceWins,
    /// The change with the newer hybrid logical timestamp wins.
    TimestampWins,
    /// Sensor readings (reported) go to the device, configuration (desired) to the cloud.
    #[default]
    Merge,
}

impl ConflictPolicy {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().replace('-', "_").as_str() {
            "CLOUD_WINS" => Some(Self::CloudWins),
            "DEVICE_WINS" => Some(Self::DeviceWins),
            "TIMESTAMP_WINS" => Some(Self::TimestampWins),
            "MERGE" => Some(Self::Merge),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::CloudWins => "CLOUD_WINS",
            Self::DeviceWins => "DEVICE_WINS",
            Self::TimestampWins => "TIMESTAMP_WINS",
            Self::Merge => "MERGE",
        }
    }

    /// Whose concurrent writes win for a property of `side`.
    pub fn favours(self, side: Side) -> Favoured {
        match (self, side) {
            (Self::CloudWins, _) | (Self::Merge, Side::Desired) => Favoured::Cloud,
            (Self::DeviceWins, _) | (Self::Merge, Side::Reported) => Favoured::Device,
            (Self::TimestampWins, _) => Favoured::Newest,
        }
    }
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which writer a policy favours for one property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Favoured {
    Cloud,
    Device,
    /// Nobody: the newer hybrid logical timestamp.
    Newest,
}

/// Which side a replica writes for: the hub writes for the cloud, an edge agent for its devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Cloud,
    Device,
}

/// The replicated sections of a twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Reported,
    Desired,
}

/// The replication rules of one device type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TypeProfile {
    /// The policy of every property not named in `properties`.
    pub policy: ConflictPolicy,
    /// Per-property policies (a property is a top-level key of reported or desired).
    pub properties: BTreeMap<String, ConflictPolicy>,
    /// Reported properties that are CRDTs: written as operations, merged by their join.
    pub crdts: BTreeMap<String, CrdtKind>,
}

impl TypeProfile {
    pub fn policy_for(&self, property: &str) -> ConflictPolicy {
        self.properties
            .get(property)
            .copied()
            .unwrap_or(self.policy)
    }

    pub fn crdt(&self, property: &str) -> Option<CrdtKind> {
        self.crdts.get(property).copied()
    }
}

/// The conflict rules of a deployment, as the hub's `[replication]` configuration and an edge
/// agent's `--rules` file write them. The hub and its edge agents should carry the same rules:
/// a replica stamps its own writes by its own copy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationRules {
    /// The rules of device types not named in `device_types`.
    pub default: TypeProfile,
    pub device_types: BTreeMap<String, TypeProfile>,
}

impl ReplicationRules {
    /// The configuration of replica `id` writing for `role` by these rules.
    pub fn replica(&self, id: String, role: Role) -> ReplicaConfig {
        ReplicaConfig {
            id,
            role,
            default_profile: self.default.clone(),
            device_types: self.device_types.clone(),
            replicates_all: role == Role::Device,
        }
    }
}

/// Who this replica is and the rules it stamps writes by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This replica's name in vector clocks and stamps; unique among the replicas of a twin.
    pub id: String,
    pub role: Role,
    /// The rules of device types not named in `device_types`.
    pub default_profile: TypeProfile,
    pub device_types: BTreeMap<String, TypeProfile>,
    /// Keep replication state for every twin (an edge agent), rather than only for twins an
    /// edge has synced or whose device type declares rules (the hub, where most twins never
    /// meet an edge and should not pay for it).
    pub replicates_all: bool,
}

/// The hub's replica name.
pub const HUB_REPLICA: &str = "hub";

impl ReplicaConfig {
    /// The hub with the default rules.
    pub fn hub() -> Self {
        Self {
            id: HUB_REPLICA.to_owned(),
            role: Role::Cloud,
            default_profile: TypeProfile::default(),
            device_types: BTreeMap::new(),
            replicates_all: false,
        }
    }

    pub fn profile(&self, device_type: Option<&str>) -> &TypeProfile {
        device_type
            .and_then(|name| self.device_types.get(name))
            .unwrap_or(&self.default_profile)
    }

    /// Whether a twin of `device_type` is replicated from its first write: at an edge always; at
    /// the hub when its device type has rules of its own or its rules declare CRDTs (whose
    /// operations must be applied as such from the first one).
    pub fn replicates(&self, device_type: Option<&str>) -> bool {
        self.replicates_all
            || device_type.is_some_and(|name| self.device_types.contains_key(name))
            || !self.profile(device_type).crdts.is_empty()
    }

    /// Whether a reported `property` may be a CRDT or a plain value depending on the twin's
    /// device type: the rules name device types, and the default or one of them declares the
    /// property a CRDT. With rules of only a default, every twin is under the default.
    pub fn crdt_depends_on_device_type(&self, property: &str) -> bool {
        !self.device_types.is_empty()
            && std::iter::once(&self.default_profile)
                .chain(self.device_types.values())
                .any(|profile| profile.crdt(property).is_some())
    }

    /// Whether this replica's writes of `property` outrank concurrent writes of the other side.
    pub fn is_favoured(&self, profile: &TypeProfile, side: Side, property: &str) -> bool {
        matches!(
            (profile.policy_for(property).favours(side), self.role),
            (Favoured::Cloud, Role::Cloud) | (Favoured::Device, Role::Device)
        )
    }
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self::hub()
    }
}
