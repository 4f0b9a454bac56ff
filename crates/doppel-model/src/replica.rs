//! Replication of a twin between the hub and edge agents.
//!
//! Each replica keeps, per twin, a [`ReplicaState`]: a stamp for every top-level property of
//! reported and desired (the unit of conflict resolution), the state of CRDT properties, a
//! vector clock and a hybrid logical clock. A local write stamps the properties it touches
//! ([`apply_local`]); replicas exchange changes as [`ReplicaDelta`]s and merge them with
//! [`Change::Merge`] ([`merge`]): per property the higher stamp wins, CRDTs join, clocks join.
//! That merge is a join, so replicas that have seen the same changes hold the same state, in
//! whatever order and however often the changes arrived. Both paths are reached through
//! [`crate::apply`].

// The data these rules work on, named here too so that `replica::ReplicaDelta` and the rules
// that make it are found in one place.
pub use crate::replica_state::{Register, ReplicaDelta, ReplicaState, Resolution, Stamp};

use crate::crdt::{self, Crdt};
use crate::error::ModelError;
use crate::history::{HistoryEntry, HistoryKind};
use crate::hlc::Hlc;
use crate::limits::Limits;
use crate::patch;
use crate::policy::{ConflictPolicy, ReplicaConfig, Role, Side, TypeProfile};
use crate::time::Millis;
use crate::twin::{Section, Twin};
use crate::update::{
    self, Applied, Change, SectionChange, UpdateRequest, check_size, entry_state, next_version,
    record_change,
};
use crate::vclock::VectorClock;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

impl ReplicaState {
    /// The state a twin kept by this replica alone starts replicating with: its whole past
    /// counts as one change of this replica, made at its last update.
    pub fn initial(twin: Option<&Twin>, config: &ReplicaConfig, profile: &TypeProfile) -> Self {
        let Some(twin) = twin else {
            return Self::default();
        };
        let hlc = Hlc {
            wall: twin.updated_at,
            logical: 0,
        };
        let mut clock = VectorClock::new();
        let seq = clock.increment(&config.id);
        let stamps = |side: Side| {
            section(twin, side)
                .state
                .keys()
                .filter(|property| side == Side::Desired || profile.crdt(property).is_none())
                .map(|property| {
                    let stamp = Stamp {
                        generation: u64::from(config.is_favoured(profile, side, property)),
                        hlc,
                        replica: config.id.clone(),
                        seq,
                        seen: VectorClock::new(),
                    };
                    (property.clone(), stamp)
                })
                .collect()
        };
        Self {
            reported: stamps(Side::Reported),
            desired: stamps(Side::Desired),
            clock,
            hlc,
            crdts: BTreeMap::new(),
            meta_from_hub: false,
        }
    }
}

/// Applies a change this replica makes itself by the update rules and, for a replicated twin,
/// stamps the properties it wrote, applies CRDT operations and counts the change in the twin's
/// vector clock. [`crate::apply`] hands it every change but a merge.
pub(crate) fn apply_local(
    current: Option<Twin>,
    request: &UpdateRequest,
    now: Millis,
    limits: &Limits,
    config: &ReplicaConfig,
) -> Result<Applied, ModelError> {
    let live = current.as_ref().filter(|twin| !twin.deleted);
    if config.role == Role::Device {
        refuse_at_the_edge(&request.change, live, config)?;
    }
    // Most of a fleet is never replicated: decide that before any work.
    let replicated = live.is_some_and(|twin| twin.replica.is_some())
        || config.replicates(live.and_then(|twin| twin.meta.device_type.as_deref()));
    if !replicated {
        return update::apply(current, request, now, limits);
    }
    let device_type = live.and_then(|twin| twin.meta.device_type.clone());
    let touched = touched_properties(&request.change, live);
    if touched.is_empty() {
        return update::apply(current, request, now, limits);
    }
    let profile = config.profile(device_type.as_deref());
    let mut state = match live.and_then(|twin| twin.replica.as_deref()) {
        Some(state) => state.clone(),
        None => ReplicaState::initial(live, config, profile),
    };
    let hlc = Hlc::tick(state.hlc, now);
    let rewritten = with_crdt_values(request, profile, &mut state, &config.id, hlc)?;
    let applied = update::apply(current, rewritten.as_ref().unwrap_or(request), now, limits)?;
    let Applied::Changed {
        mut twin,
        mut entry,
    } = applied
    else {
        return Ok(applied);
    };
    state.hlc = hlc;
    let known = state.clock.clone();
    let seq = state.clock.increment(&config.id);
    let mut delta = ReplicaDelta {
        origin: config.id.clone(),
        clock: state.clock.clone(),
        hlc,
        version: Some(twin.version),
        ..ReplicaDelta::default()
    };
    let mut crdt_touched = false;
    for (side, property) in touched {
        if side == Side::Reported
            && let Some(crdt) = state.crdts.get(&property)
        {
            // A merge patch merges objects; a CRDT's value replaces what was there.
            set_property(
                &mut twin.reported,
                &property,
                &crdt.value(),
                twin.updated_at,
            );
            delta.crdts.insert(property, crdt.clone());
            crdt_touched = true;
            continue;
        }
        let favoured = config.is_favoured(profile, side, &property);
        let seen = state
            .stamps(side)
            .get(&property)
            .map_or(0, |stamp| stamp.generation);
        let stamp = Stamp {
            generation: seen + u64::from(favoured),
            hlc,
            replica: config.id.clone(),
            seq,
            seen: known.clone(),
        };
        let value = section(&twin, side)
            .state
            .get(&property)
            .cloned()
            .unwrap_or(Value::Null);
        state
            .stamps_mut(side)
            .insert(property.clone(), stamp.clone());
        delta
            .registers_mut(side)
            .insert(property, Register { value, stamp });
    }
    if crdt_touched {
        (entry.state, entry.section_version) = entry_state(&twin, entry.kind);
    }
    entry.replica = Some(Box::new(delta));
    twin.replica = Some(Box::new(state));
    Ok(Applied::Changed { twin, entry })
}

/// What an edge agent refuses to write itself: meta, which is the hub's; and, until the hub's
/// meta has arrived, a CRDT operation for a property whose rules depend on the device type the
/// agent does not know yet (stored as a plain value, the operation would be lost).
fn refuse_at_the_edge(
    change: &Change,
    live: Option<&Twin>,
    config: &ReplicaConfig,
) -> Result<(), ModelError> {
    if matches!(change, Change::Meta(_)) {
        return Err(ModelError::MetaOwnedByHub);
    }
    let meta_known = live
        .and_then(|twin| twin.replica.as_deref())
        .is_some_and(|state| state.meta_from_hub);
    if meta_known {
        return Ok(());
    }
    let Some(patch) = reported_patch(change).and_then(Value::as_object) else {
        return Ok(());
    };
    match patch.iter().find(|(property, value)| {
        crdt::is_operation(value) && config.crdt_depends_on_device_type(property)
    }) {
        Some((property, _)) => Err(ModelError::DeviceTypeUnknown {
            property: property.clone(),
        }),
        None => Ok(()),
    }
}

/// The whole replicated state of `twin` as one delta, for a replica that asks for it; `None`
/// for a twin this replica does not replicate. A state is only sent once it is recorded (a hub
/// starts replicating a twin by merging an empty change of its own): one made up at each call
/// would stamp different values alike, and replicas that pulled them would never converge.
pub fn snapshot(twin: &Twin, config: &ReplicaConfig) -> Option<ReplicaDelta> {
    let state = twin.replica.as_deref()?;
    let registers = |side: Side| {
        state
            .stamps(side)
            .iter()
            .map(|(property, stamp)| {
                let value = section(twin, side)
                    .state
                    .get(property)
                    .cloned()
                    .unwrap_or(Value::Null);
                let stamp = stamp.clone();
                (property.clone(), Register { value, stamp })
            })
            .collect()
    };
    Some(ReplicaDelta {
        origin: config.id.clone(),
        clock: state.clock.clone(),
        hlc: state.hlc,
        version: Some(twin.version),
        reported: registers(Side::Reported),
        desired: registers(Side::Desired),
        crdts: state.crdts.clone(),
        meta: (config.role == Role::Cloud).then(|| twin.meta.clone()),
    })
}

/// The history entries of `entries` that `replica` made and whose changes carry their delta:
/// what a replica sends the others.
pub fn own_changes<'a>(
    entries: impl IntoIterator<Item = &'a HistoryEntry>,
    replica: &'a str,
) -> impl Iterator<Item = &'a ReplicaDelta> {
    entries
        .into_iter()
        .filter_map(|entry| entry.replica.as_deref())
        .filter(move |delta| delta.origin == replica)
}

/// Merges another replica's change (or whole state) `delta`: per property the higher stamp
/// wins, CRDTs join, clocks join. [`crate::apply`] hands it every [`Change::Merge`].
pub(crate) fn merge(
    current: Option<Twin>,
    delta: &ReplicaDelta,
    request: &UpdateRequest,
    now: Millis,
    limits: &Limits,
    config: &ReplicaConfig,
) -> Result<Applied, ModelError> {
    let existed = current.as_ref().is_some_and(|twin| !twin.deleted);
    let mut twin = match current {
        Some(twin) if existed => twin,
        tombstone => Twin {
            version: tombstone.as_ref().map_or(0, |t| t.version),
            shadow_version: tombstone.map_or(0, |t| t.shadow_version),
            created_at: now,
            ..Twin::default()
        },
    };
    let now = now.max(twin.updated_at);
    // The hub's meta first, so that the device type it names decides the rules used below.
    let hub_meta = delta.meta.as_ref().filter(|_| config.role == Role::Device);
    let mut meta_changed = false;
    if let Some(meta) = hub_meta
        && twin.meta != *meta
    {
        twin.meta = meta.clone();
        meta_changed = true;
    }
    let device_type = twin.meta.device_type.clone();
    let profile = config.profile(device_type.as_deref());
    // A twin this replica kept alone until now starts replicating: its stamps must be recorded
    // (not made up again at every snapshot), so that its later writes outrank them.
    let starts_replicating = existed && twin.replica.is_none();
    let mut state = match twin.replica.take() {
        Some(state) => *state,
        None => ReplicaState::initial(existed.then_some(&twin), config, profile),
    };
    if hub_meta.is_some() && !state.meta_from_hub {
        state.meta_from_hub = true;
        meta_changed = true;
    }
    let mut resolutions = Vec::new();
    let (mut reported_changed, mut desired_changed, mut stamps_changed) = (false, false, false);
    for side in [Side::Reported, Side::Desired] {
        for (property, remote) in delta.registers(side) {
            let local_stamp = state.stamps(side).get(property);
            if local_stamp == Some(&remote.stamp) {
                continue;
            }
            let local_value = section(&twin, side)
                .state
                .get(property)
                .cloned()
                .unwrap_or(Value::Null);
            let remote_wins = local_stamp.is_none_or(|local| remote.stamp > *local);
            if let Some(local) = local_stamp
                && local_value != remote.value
            {
                let policy = profile.policy_for(property);
                // Concurrent: the winner was written without knowing the loser.
                let conflict = if remote_wins {
                    !remote.stamp.saw(local)
                } else {
                    !local.saw(&remote.stamp)
                };
                if conflict {
                    let (kept, lost) = if remote_wins {
                        ((&remote.stamp, &remote.value), (local, &local_value))
                    } else {
                        ((local, &local_value), (&remote.stamp, &remote.value))
                    };
                    resolutions.push(resolution(side, property, policy, kept, lost));
                }
            }
            if !remote_wins {
                continue;
            }
            state
                .stamps_mut(side)
                .insert(property.clone(), remote.stamp.clone());
            stamps_changed = true;
            if local_value != remote.value {
                set_property(section_mut(&mut twin, side), property, &remote.value, now);
                match side {
                    Side::Reported => reported_changed = true,
                    Side::Desired => desired_changed = true,
                }
            }
        }
    }
    for (property, remote) in &delta.crdts {
        let local = state
            .crdts
            .entry(property.clone())
            .or_insert_with(|| Crdt::new(remote.kind()));
        let before = local.clone();
        // A property whose CRDT kind changed keeps the kind it has here; the operator who
        // redeclared it starts a new value with the next operation.
        if local.join(remote).is_err() {
            continue;
        }
        let value = local.value();
        let shown = twin.reported.state.get(property).unwrap_or(&Value::Null);
        // Even an unchanged state is shown if it was not yet (a first increment by zero).
        if *local != before || *shown != value {
            set_property(&mut twin.reported, property, &value, now);
            reported_changed = true;
        }
    }
    let clock_grew = !state.clock.dominates(&delta.clock);
    state.clock.join(&delta.clock);
    state.hlc = Hlc::observe(state.hlc, delta.hlc, now);
    if !(reported_changed
        || desired_changed
        || stamps_changed
        || clock_grew
        || starts_replicating
        || meta_changed)
    {
        twin.replica = Some(Box::new(state));
        return if existed {
            Ok(Applied::Stale { twin })
        } else {
            Err(ModelError::TwinNotFound)
        };
    }
    check_size("reported state", &twin.reported.state, limits)?;
    check_size("desired state", &twin.desired.state, limits)?;
    if reported_changed {
        twin.reported.version = next_version("reported state", twin.reported.version)?;
        twin.reported.updated_at = Some(now);
        if config.role == Role::Cloud {
            twin.connection.heard_from(now);
        }
    }
    if desired_changed {
        twin.desired.version = next_version("desired state", twin.desired.version)?;
        twin.desired.updated_at = Some(now);
    }
    let kind = match (reported_changed, desired_changed) {
        (true, false) => HistoryKind::Reported,
        (false, true) => HistoryKind::Desired,
        (false, false) if meta_changed => HistoryKind::Meta,
        _ => HistoryKind::State,
    };
    twin.replica = Some(Box::new(state));
    let reason = format!("merged a change from replica {}", delta.origin);
    let mut entry = record_change(&mut twin, kind, request, &reason, now)?;
    entry.replica = Some(Box::new(delta.clone()));
    entry.resolutions = resolutions;
    Ok(Applied::Changed { twin, entry })
}

fn resolution(
    side: Side,
    property: &str,
    policy: ConflictPolicy,
    (kept, kept_value): (&Stamp, &Value),
    (lost, lost_value): (&Stamp, &Value),
) -> Resolution {
    let why = if kept.generation != lost.generation {
        "the side the policy favours"
    } else {
        "the newer hybrid logical timestamp, neither side being favoured"
    };
    Resolution {
        side,
        property: property.to_owned(),
        policy,
        kept: kept_value.clone(),
        kept_from: kept.replica.clone(),
        lost: lost_value.clone(),
        lost_from: lost.replica.clone(),
        reason: format!(
            "{policy}: concurrent changes by {} and {}; {} wins as {why} ({} over {})",
            kept.replica, lost.replica, kept.replica, kept.hlc, lost.hlc
        ),
    }
}

/// Applies the CRDT operations in a reported patch to `state` and returns the request with each
/// operation replaced by the CRDT's new value, or `None` when the request has none.
fn with_crdt_values(
    request: &UpdateRequest,
    profile: &TypeProfile,
    state: &mut ReplicaState,
    replica: &str,
    hlc: Hlc,
) -> Result<Option<UpdateRequest>, ModelError> {
    let Some(patch) = reported_patch(&request.change).and_then(Value::as_object) else {
        return Ok(None);
    };
    if !patch
        .keys()
        .any(|property| profile.crdt(property).is_some())
    {
        return Ok(None);
    }
    let mut patch = patch.clone();
    for (property, operation) in &mut patch {
        let Some(kind) = profile.crdt(property) else {
            continue;
        };
        let crdt = state
            .crdts
            .entry(property.clone())
            .or_insert_with(|| Crdt::new(kind));
        if crdt.kind() != kind {
            *crdt = Crdt::new(kind);
        }
        crdt.apply(operation, replica, hlc)
            .map_err(|err| ModelError::InvalidField {
                field: "reported state",
                reason: format!("{property} is a {} CRDT: {err}", kind.name()),
            })?;
        *operation = crdt.value();
    }
    let mut rewritten = request.clone();
    if let Change::Reported { patch: slot, .. }
    | Change::Shadow {
        reported: Some(SectionChange::Merge(slot)),
        ..
    } = &mut rewritten.change
    {
        *slot = Value::Object(patch);
    }
    Ok(Some(rewritten))
}

fn reported_patch(change: &Change) -> Option<&Value> {
    match change {
        Change::Reported { patch, .. }
        | Change::Shadow {
            reported: Some(SectionChange::Merge(patch)),
            ..
        } => Some(patch),
        _ => None,
    }
}

/// The top-level properties a change writes (a replace or clear writes every property the
/// section had as well as the new ones).
fn touched_properties(change: &Change, live: Option<&Twin>) -> BTreeSet<(Side, String)> {
    let keys = |side: Side, value: &Value| -> Vec<(Side, String)> {
        value
            .as_object()
            .map(|object| object.keys().map(|key| (side, key.clone())).collect())
            .unwrap_or_default()
    };
    let existing = |side: Side| -> Vec<(Side, String)> {
        live.map(|twin| {
            section(twin, side)
                .state
                .keys()
                .map(|key| (side, key.clone()))
                .collect()
        })
        .unwrap_or_default()
    };
    let section_change = |side: Side, change: &Option<SectionChange>| match change {
        Some(SectionChange::Merge(patch)) => keys(side, patch),
        Some(SectionChange::Clear) => existing(side),
        None => Vec::new(),
    };
    match change {
        Change::Reported { patch, .. } => keys(Side::Reported, patch).into_iter().collect(),
        Change::DesiredPatch(patch) => keys(Side::Desired, patch).into_iter().collect(),
        Change::DesiredReplace(state) => keys(Side::Desired, state)
            .into_iter()
            .chain(existing(Side::Desired))
            .collect(),
        Change::Shadow {
            desired, reported, ..
        } => section_change(Side::Desired, desired)
            .into_iter()
            .chain(section_change(Side::Reported, reported))
            .collect(),
        Change::Meta(_)
        | Change::Delete
        | Change::Connection { .. }
        | Change::Silent { .. }
        | Change::Active { .. }
        | Change::Merge(_) => BTreeSet::new(),
    }
}

fn section(twin: &Twin, side: Side) -> &Section {
    match side {
        Side::Reported => &twin.reported,
        Side::Desired => &twin.desired,
    }
}

fn section_mut(twin: &mut Twin, side: Side) -> &mut Section {
    match side {
        Side::Reported => &mut twin.reported,
        Side::Desired => &mut twin.desired,
    }
}

/// Sets one property to `value` as a whole (a register replaces, it does not merge), or removes
/// it for `null`.
fn set_property(section: &mut Section, property: &str, value: &Value, now: Millis) {
    section.state.remove(property);
    section.metadata.remove(property);
    if !value.is_null() {
        let patch = Map::from_iter([(property.to_owned(), value.clone())]);
        patch::merge(&mut section.state, &mut section.metadata, &patch, now);
    }
}

#[cfg(test)]
mod tests;
