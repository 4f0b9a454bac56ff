//! Applying one change to a twin: validation, versions, metadata and the history entry.

use crate::error::{ModelError, Subject, json_type_name};
use crate::history::{HistoryEntry, HistoryKind};
use crate::limits::Limits;
use crate::meta::Meta;
use crate::patch::{self, as_object};
use crate::replica_state::ReplicaDelta;
use crate::time::Millis;
use crate::trace::TraceParent;
use crate::twin::{ConnectionStatus, Section, Twin};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Most tags one twin may carry; tags are for grouping and search, not for state.
pub const MAX_TAGS: usize = 64;
/// Longest tag key; tag keys are query paths (`tags.site`), so they are short names.
pub const MAX_TAG_KEY_LEN: usize = 128;
/// Longest tag value, device type, firmware version or capability.
pub const MAX_LABEL_LEN: usize = 256;
/// Most capabilities one twin may list.
pub const MAX_CAPABILITIES: usize = 64;

/// A change to the descriptive fields. For each field, `None` leaves it alone; for the optional
/// ones `Some(None)` clears it. Tags merge like a JSON merge patch: a `null` value removes a tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaPatch {
    pub device_type: Option<Option<String>>,
    pub firmware_version: Option<Option<String>>,
    pub capabilities: Option<BTreeSet<String>>,
    pub tags: BTreeMap<String, Option<String>>,
}

impl MetaPatch {
    /// Parses a request body such as `{"tags": {"site": "berlin", "old": null}, "device_type": "pump"}`.
    pub fn from_json(body: &Value) -> Result<Self, ModelError> {
        let body = as_object(Subject::RequestBody, body)?;
        let mut patch = Self::default();
        for (field, value) in body {
            match field.as_str() {
                "device_type" => patch.device_type = Some(optional_label("device_type", value)?),
                "firmware_version" => {
                    patch.firmware_version = Some(optional_label("firmware_version", value)?)
                }
                "capabilities" => patch.capabilities = Some(capabilities(value)?),
                "tags" => patch.tags = tags(value)?,
                _ => {
                    return Err(ModelError::InvalidField {
                        field: "body",
                        reason: format!(
                            "unknown field {field:?}; expected tags, device_type, firmware_version or capabilities"
                        ),
                    });
                }
            }
        }
        Ok(patch)
    }

    fn apply_to(&self, meta: &mut Meta) -> Result<(), ModelError> {
        if let Some(device_type) = &self.device_type {
            meta.device_type.clone_from(device_type);
        }
        if let Some(firmware) = &self.firmware_version {
            meta.firmware_version.clone_from(firmware);
        }
        if let Some(capabilities) = &self.capabilities {
            meta.capabilities.clone_from(capabilities);
        }
        for (key, value) in &self.tags {
            match value {
                Some(value) => meta.tags.insert(key.clone(), value.clone()),
                None => meta.tags.remove(key),
            };
        }
        if meta.tags.len() > MAX_TAGS {
            return Err(ModelError::InvalidField {
                field: "tags",
                reason: format!(
                    "a twin may have at most {MAX_TAGS} tags, this change would leave {}",
                    meta.tags.len()
                ),
            });
        }
        Ok(())
    }
}

fn label(field: &'static str, value: &Value) -> Result<String, ModelError> {
    match value {
        Value::String(text) if !text.is_empty() && text.len() <= MAX_LABEL_LEN => Ok(text.clone()),
        Value::String(_) => Err(ModelError::InvalidField {
            field,
            reason: format!("must be 1 to {MAX_LABEL_LEN} bytes long"),
        }),
        other => Err(ModelError::InvalidField {
            field,
            reason: format!("must be a string, got {}", json_type_name(other)),
        }),
    }
}

fn optional_label(field: &'static str, value: &Value) -> Result<Option<String>, ModelError> {
    match value {
        Value::Null => Ok(None),
        other => label(field, other).map(Some),
    }
}

fn capabilities(value: &Value) -> Result<BTreeSet<String>, ModelError> {
    let items = match value {
        Value::Null => return Ok(BTreeSet::new()),
        Value::Array(items) => items,
        other => {
            return Err(ModelError::InvalidField {
                field: "capabilities",
                reason: format!("must be an array of strings, got {}", json_type_name(other)),
            });
        }
    };
    if items.len() > MAX_CAPABILITIES {
        return Err(ModelError::InvalidField {
            field: "capabilities",
            reason: format!(
                "at most {MAX_CAPABILITIES} capabilities, got {}",
                items.len()
            ),
        });
    }
    items
        .iter()
        .map(|item| label("capabilities", item))
        .collect()
}

fn tags(value: &Value) -> Result<BTreeMap<String, Option<String>>, ModelError> {
    let map = value.as_object().ok_or_else(|| ModelError::InvalidField {
        field: "tags",
        reason: format!(
            "must be an object of strings, got {}",
            json_type_name(value)
        ),
    })?;
    map.iter()
        .map(|(key, value)| {
            let key_ok = !key.is_empty()
                && key.len() <= MAX_TAG_KEY_LEN
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'));
            if !key_ok {
                return Err(ModelError::InvalidField {
                    field: "tags",
                    reason: format!("tag key {key:?} must be 1 to {MAX_TAG_KEY_LEN} characters of A-Z a-z 0-9 _ - :"),
                });
            }
            Ok((key.clone(), optional_label("tags", value)?))
        })
        .collect()
}

/// What a request asks to change.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A device report: a merge patch of reported state, with the device's own sequence number
    /// when it sends one (a report not newer than the stored sequence is stale and ignored).
    Reported {
        patch: Value,
        device_version: Option<u64>,
    },
    /// A merge patch of desired state.
    DesiredPatch(Value),
    /// A whole new desired state.
    DesiredReplace(Value),
    Meta(MetaPatch),
    Delete,
    /// Desired and reported changed together as one version (an AWS shadow update). At least
    /// one of the two is present.
    Shadow {
        desired: Option<SectionChange>,
        reported: Option<SectionChange>,
        /// Apply only if the twin is at this shadow version (the AWS `version`).
        expected_shadow_version: Option<u64>,
    },
    /// The device connected or disconnected.
    Connection {
        status: ConnectionStatus,
        /// Orders presence events of one device; see [`crate::Connection::sequence`].
        sequence: u64,
        /// Create the twin if it does not exist. A client known to be a device creates its twin
        /// by connecting; a client that only claims a name must not fill the fleet with twins.
        create: bool,
    },
    /// The device has said nothing since `silent_since` and its expected activity interval has
    /// passed: a twin still claiming CONNECTED becomes UNKNOWN. Changes nothing if the device
    /// was active after `silent_since` or is not CONNECTED.
    Silent {
        silent_since: Millis,
    },
    /// A sign of life that carries no state (an edge agent's sync): counts as the device's
    /// activity, and makes a twin marked silent CONNECTED again. Recorded only when the device
    /// was not active since `unless_active_since` (or was marked silent), and only for a twin
    /// that claims to be connected: an agent syncs every few seconds, and a history entry for
    /// each would bury the twin's history.
    Active {
        unless_active_since: Millis,
    },
    /// Another replica's change (or its whole state), merged by the replication rules: the
    /// higher stamp of each property wins and CRDT properties join. See [`crate::replica`].
    Merge(Box<ReplicaDelta>),
}

impl Change {
    /// A short name of the operation, for logs and trace spans.
    pub fn name(&self) -> &'static str {
        match self {
            Change::Reported { .. } => "reported",
            Change::DesiredPatch(_) => "desired_patch",
            Change::DesiredReplace(_) => "desired_replace",
            Change::Meta(_) => "meta",
            Change::Delete => "delete",
            Change::Shadow { .. } => "shadow",
            Change::Connection { .. } => "connection",
            Change::Silent { .. } => "silent",
            Change::Active { .. } => "active",
            Change::Merge(_) => "merge",
        }
    }
}

/// What an AWS shadow update does to one section.
#[derive(Clone, Debug, PartialEq)]
pub enum SectionChange {
    /// A merge patch: `null` members remove keys.
    Merge(Value),
    /// `"desired": null` or `"reported": null`: the section becomes empty.
    Clear,
}

/// A change with its preconditions and provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateRequest {
    pub change: Change,
    /// Apply only if the twin is at this document version (HTTP `If-Match`, AWS `version`).
    pub expected_version: Option<u64>,
    /// The device id or API principal making the change, recorded in history.
    pub changed_by: String,
    /// Why, recorded in history; defaults to a description of the operation.
    pub change_reason: Option<String>,
    /// An opaque token of the caller, passed on to the change's events and not stored (the AWS
    /// shadow `clientToken`, echoed in the `/update/delta` and `/update/documents` it causes).
    pub client_token: Option<String>,
    /// The caller's W3C trace context (HTTP `traceparent` header, MQTT 5 user property), passed
    /// on to the change's events and not stored, so what the change causes joins its trace.
    pub trace: Option<TraceParent>,
}

/// The outcome of a request that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// The twin changed: its new state and the history entry that records the change.
    Changed { twin: Twin, entry: HistoryEntry },
    /// A report older than what the twin holds; nothing changed. Hands the twin back.
    Stale { twin: Twin },
}

/// Applies a change this replica makes itself (every change but a merge) to the twin `current`
/// (a tombstone, or `None` when it does not exist) at instant `now`, as [`crate::apply`] does
/// for a twin nobody replicates. Returns an error, and changes nothing, when the request is
/// invalid or its precondition fails.
pub(crate) fn apply(
    current: Option<Twin>,
    request: &UpdateRequest,
    now: Millis,
    limits: &Limits,
) -> Result<Applied, ModelError> {
    let live = current.as_ref().is_some_and(|twin| !twin.deleted);
    if let Some(expected) = request.expected_version {
        let current_version = current
            .as_ref()
            .filter(|_| live)
            .map_or(0, |twin| twin.version);
        if !live || current_version != expected {
            return Err(ModelError::VersionMismatch {
                expected,
                current: current_version,
            });
        }
    }
    // The twin is taken by value and changed in place: copying it would cost as much as the
    // rest of the update.
    let mut twin = match current {
        Some(twin) if live => twin,
        tombstone => {
            if matches!(
                request.change,
                Change::Delete
                    | Change::Connection { create: false, .. }
                    | Change::Silent { .. }
                    | Change::Active { .. }
            ) {
                return Err(ModelError::TwinNotFound);
            }
            Twin {
                version: tombstone.as_ref().map_or(0, |t| t.version),
                shadow_version: tombstone.map_or(0, |t| t.shadow_version),
                created_at: now,
                ..Twin::default()
            }
        }
    };
    // Time never runs backwards within one twin, whatever the wall clock does.
    let now = now.max(twin.updated_at);

    let (kind, default_reason) = match &request.change {
        Change::Reported {
            patch,
            device_version,
        } => {
            let patch = checked_state(Subject::ReportedState, patch, limits)?;
            if let Some(sequence) = device_version
                && twin.reported.updated_at.is_some()
                && *sequence <= twin.reported.version
            {
                return Ok(Applied::Stale { twin });
            }
            let next = match device_version {
                Some(sequence) => *sequence,
                None => next_version("reported state", twin.reported.version)?,
            };
            merge_into(
                &mut twin.reported,
                "reported state",
                patch,
                next,
                now,
                limits,
            )?;
            twin.connection.heard_from(now);
            (HistoryKind::Reported, "reported update")
        }
        Change::DesiredPatch(patch) => {
            let patch = checked_state(Subject::DesiredState, patch, limits)?;
            let next = next_version("desired state", twin.desired.version)?;
            merge_into(&mut twin.desired, "desired state", patch, next, now, limits)?;
            (HistoryKind::Desired, "desired update")
        }
        Change::DesiredReplace(state) => {
            let state = checked_state(Subject::DesiredState, state, limits)?;
            let next = next_version("desired state", twin.desired.version)?;
            twin.desired.state.clear();
            twin.desired.metadata.clear();
            merge_into(&mut twin.desired, "desired state", state, next, now, limits)?;
            (HistoryKind::Desired, "desired replace")
        }
        Change::Meta(meta_patch) => {
            meta_patch.apply_to(&mut twin.meta)?;
            (HistoryKind::Meta, "meta update")
        }
        Change::Shadow {
            desired,
            reported,
            expected_shadow_version,
        } => {
            if let Some(expected) = *expected_shadow_version {
                let current = if live { twin.shadow_version } else { 0 };
                if !live || current != expected {
                    return Err(ModelError::VersionMismatch { expected, current });
                }
            }
            if desired.is_none() && reported.is_none() {
                return Err(ModelError::InvalidField {
                    field: "state",
                    reason: "must contain desired or reported".into(),
                });
            }
            if let Some(change) = desired {
                let next = next_version("desired state", twin.desired.version)?;
                change_section(
                    &mut twin.desired,
                    Subject::DesiredState,
                    change,
                    next,
                    now,
                    limits,
                )?;
            }
            if let Some(change) = reported {
                let next = next_version("reported state", twin.reported.version)?;
                change_section(
                    &mut twin.reported,
                    Subject::ReportedState,
                    change,
                    next,
                    now,
                    limits,
                )?;
                twin.connection.heard_from(now);
            }
            match (desired, reported) {
                (Some(_), Some(_)) => (HistoryKind::State, "shadow update"),
                (Some(_), None) => (HistoryKind::Desired, "shadow desired update"),
                _ => (HistoryKind::Reported, "shadow reported update"),
            }
        }
        Change::Connection {
            status, sequence, ..
        } => {
            if *sequence <= twin.connection.sequence {
                return Ok(Applied::Stale { twin });
            }
            let connection = &mut twin.connection;
            connection.status = *status;
            connection.sequence = *sequence;
            connection.stale = false;
            match status {
                ConnectionStatus::Connected => {
                    connection.last_connected_at = Some(now);
                    connection.last_activity_at = Some(now);
                }
                ConnectionStatus::Disconnected | ConnectionStatus::Unknown => {
                    connection.last_disconnected_at = Some(now);
                }
            }
            let reason = match status {
                ConnectionStatus::Connected => "connected",
                _ => "disconnected",
            };
            (HistoryKind::Connection, reason)
        }
        Change::Silent { silent_since } => {
            let connection = &mut twin.connection;
            let active_since = connection
                .last_active_at()
                .is_some_and(|at| at > *silent_since);
            if connection.status != ConnectionStatus::Connected || active_since {
                return Ok(Applied::Stale { twin });
            }
            connection.status = ConnectionStatus::Unknown;
            connection.stale = true;
            (
                HistoryKind::Connection,
                "silent past its expected activity interval",
            )
        }
        Change::Active {
            unless_active_since,
        } => {
            let connection = &mut twin.connection;
            let claims_connected =
                connection.status == ConnectionStatus::Connected || connection.stale;
            let active_since = connection
                .last_active_at()
                .is_some_and(|at| at >= *unless_active_since);
            if !claims_connected || (active_since && !connection.stale) {
                return Ok(Applied::Stale { twin });
            }
            connection.heard_from(now);
            (
                HistoryKind::Connection,
                "heard from without a change of state",
            )
        }
        // `crate::apply` hands merges to the replication rules, and it is the only way here.
        Change::Merge(_) => unreachable!("a merge is applied by crate::replica::merge"),
        Change::Delete => {
            twin = Twin {
                version: twin.version,
                shadow_version: twin.shadow_version,
                created_at: twin.created_at,
                deleted: true,
                ..Twin::default()
            };
            (HistoryKind::Deleted, "delete")
        }
    };

    let entry = record_change(&mut twin, kind, request, default_reason, now)?;
    Ok(Applied::Changed { twin, entry })
}

/// The version after `version` of `what` (a section, the twin, its shadow), or
/// [`ModelError::VersionOverflow`] when there is none: a device may set its reported version
/// (HTTP `version`) as high as `u64::MAX`, and wrapping to 0 would make every stale report look
/// new.
pub(crate) fn next_version(what: &'static str, version: u64) -> Result<u64, ModelError> {
    version
        .checked_add(1)
        .ok_or(ModelError::VersionOverflow { what, version })
}

/// Counts a change that `kind` made to `twin` at `now` (document version, shadow version, time)
/// and returns the history entry that records it.
pub(crate) fn record_change(
    twin: &mut Twin,
    kind: HistoryKind,
    request: &UpdateRequest,
    default_reason: &str,
    now: Millis,
) -> Result<HistoryEntry, ModelError> {
    twin.version = next_version("twin", twin.version)?;
    if matches!(
        kind,
        HistoryKind::Reported | HistoryKind::Desired | HistoryKind::State | HistoryKind::Deleted
    ) {
        twin.shadow_version = next_version("shadow", twin.shadow_version)?;
    }
    twin.updated_at = now;
    let (state, section_version) = entry_state(twin, kind);
    Ok(HistoryEntry {
        kind,
        version: twin.version,
        recorded_at: now,
        state,
        section_version,
        changed_by: request.changed_by.clone(),
        change_reason: request
            .change_reason
            .clone()
            .unwrap_or_else(|| default_reason.to_owned()),
        replica: None,
        resolutions: Vec::new(),
    })
}

/// What a history entry of `kind` records of `twin`: the section's whole state and its version.
pub(crate) fn entry_state(twin: &Twin, kind: HistoryKind) -> (Value, Option<u64>) {
    match kind {
        HistoryKind::Reported => (
            Value::Object(twin.reported.state.clone()),
            Some(twin.reported.version),
        ),
        HistoryKind::Desired => (
            Value::Object(twin.desired.state.clone()),
            Some(twin.desired.version),
        ),
        HistoryKind::Meta => (
            serde_json::to_value(&twin.meta).unwrap_or(Value::Null),
            None,
        ),
        HistoryKind::Deleted => (Value::Null, None),
        HistoryKind::State => {
            let part = |section: &Section| serde_json::json!({"state": section.state, "version": section.version});
            (
                serde_json::json!({"desired": part(&twin.desired), "reported": part(&twin.reported)}),
                None,
            )
        }
        HistoryKind::Connection => (
            serde_json::to_value(twin.connection).unwrap_or(Value::Null),
            None,
        ),
    }
}

/// Refuses a state larger than `limits.max_document_bytes` once serialized.
pub(crate) fn check_size(
    what: &'static str,
    state: &Map<String, Value>,
    limits: &Limits,
) -> Result<(), ModelError> {
    let size = patch::serialized_len(state);
    if size > limits.max_document_bytes {
        return Err(ModelError::TooLarge {
            what,
            size,
            limit: limits.max_document_bytes,
        });
    }
    Ok(())
}

fn checked_state<'a>(
    what: Subject,
    value: &'a Value,
    limits: &Limits,
) -> Result<&'a Map<String, Value>, ModelError> {
    let object = as_object(what, value)?;
    patch::check_depth(what.as_str(), value, limits.max_depth)?;
    Ok(object)
}

fn change_section(
    section: &mut Section,
    what: Subject,
    change: &SectionChange,
    next_version: u64,
    now: Millis,
    limits: &Limits,
) -> Result<(), ModelError> {
    match change {
        SectionChange::Merge(patch) => {
            let patch = checked_state(what, patch, limits)?;
            merge_into(section, what.as_str(), patch, next_version, now, limits)
        }
        SectionChange::Clear => {
            section.state.clear();
            section.metadata.clear();
            section.version = next_version;
            section.updated_at = Some(now);
            Ok(())
        }
    }
}

fn merge_into(
    section: &mut Section,
    what: &'static str,
    patch: &Map<String, Value>,
    next_version: u64,
    now: Millis,
    limits: &Limits,
) -> Result<(), ModelError> {
    patch::merge(&mut section.state, &mut section.metadata, patch, now);
    check_size(what, &section.state, limits)?;
    section.version = next_version;
    section.updated_at = Some(now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(change: Change) -> UpdateRequest {
        UpdateRequest {
            change,
            expected_version: None,
            changed_by: "tester".into(),
            change_reason: None,
            client_token: None,
            trace: None,
        }
    }

    fn changed(result: Result<Applied, ModelError>) -> (Twin, HistoryEntry) {
        match result.unwrap() {
            Applied::Changed { twin, entry } => (twin, entry),
            Applied::Stale { .. } => panic!("unexpectedly stale"),
        }
    }

    /// Applies a request that must change the twin, under the default limits most tests use.
    fn step(twin: Option<Twin>, request: &UpdateRequest, at: i64) -> (Twin, HistoryEntry) {
        changed(apply(twin, request, Millis(at), &Limits::default()))
    }

    fn report(state: Value, device_version: Option<u64>) -> UpdateRequest {
        request(Change::Reported {
            patch: state,
            device_version,
        })
    }

    fn shadow(desired: Option<SectionChange>, reported: Option<SectionChange>) -> UpdateRequest {
        request(Change::Shadow {
            desired,
            reported,
            expected_shadow_version: None,
        })
    }

    fn connection(status: ConnectionStatus, sequence: u64, create: bool) -> UpdateRequest {
        request(Change::Connection {
            status,
            sequence,
            create,
        })
    }

    #[test]
    fn a_sign_of_life_without_state_is_recorded_only_when_the_last_one_is_old() {
        let limits = Limits::default();
        let active = |since: i64| {
            request(Change::Active {
                unless_active_since: Millis(since),
            })
        };
        assert_eq!(
            apply(None, &active(0), Millis(1_000), &limits),
            Err(ModelError::TwinNotFound),
            "creates no twin"
        );
        let (twin, _) = step(
            None,
            &connection(ConnectionStatus::Connected, 1, true),
            1_000,
        );
        assert!(
            matches!(
                apply(Some(twin.clone()), &active(1_000), Millis(2_000), &limits),
                Ok(Applied::Stale { .. })
            ),
            "active since: nothing to record"
        );
        let (heard, entry) = step(Some(twin.clone()), &active(1_001), 2_000);
        assert_eq!(heard.connection.last_activity_at, Some(Millis(2_000)));
        assert_eq!(entry.kind, HistoryKind::Connection);

        // It brings a twin marked silent back, however recent its last sign of life.
        let silent = request(Change::Silent {
            silent_since: Millis(1_000),
        });
        let (stale, _) = step(Some(twin), &silent, 90_000);
        let (back, _) = step(Some(stale), &active(0), 91_000);
        assert_eq!(back.connection.status, ConnectionStatus::Connected);
        assert!(!back.connection.stale);

        // A disconnected device's twin says so: a sign of life does not make it connected.
        let (gone, _) = step(
            Some(back),
            &connection(ConnectionStatus::Disconnected, 2, false),
            92_000,
        );
        assert!(matches!(
            apply(Some(gone), &active(95_000), Millis(96_000), &limits),
            Ok(Applied::Stale { .. })
        ));
    }

    #[test]
    fn a_silent_connected_device_becomes_unknown_until_it_reports_again() {
        let limits = Limits::default();
        let (twin, _) = step(
            None,
            &connection(ConnectionStatus::Connected, 1, true),
            1_000,
        );
        let silent = request(Change::Silent {
            silent_since: Millis(1_000),
        });
        let (stale, entry) = step(Some(twin.clone()), &silent, 90_000);
        assert_eq!(stale.connection.status, ConnectionStatus::Unknown);
        assert!(stale.connection.stale);
        assert_eq!(entry.kind, HistoryKind::Connection);
        assert_eq!(
            entry.change_reason,
            "silent past its expected activity interval"
        );
        // Heard from since: nothing changes.
        let (active, _) = step(Some(twin), &report(json!({"t": 1}), None), 50_000);
        assert!(matches!(
            apply(Some(active), &silent, Millis(90_000), &limits),
            Ok(Applied::Stale { .. })
        ));
        // A report brings the silent device back.
        let (back, _) = step(Some(stale.clone()), &report(json!({"t": 2}), None), 95_000);
        assert_eq!(back.connection.status, ConnectionStatus::Connected);
        assert!(!back.connection.stale);
        // A disconnected device is not silent, just away; and no twin is made for silence.
        let (away, _) = step(
            Some(stale),
            &connection(ConnectionStatus::Disconnected, 2, false),
            96_000,
        );
        assert!(!away.connection.stale);
        assert!(matches!(
            apply(Some(away), &silent, Millis(99_000), &limits),
            Ok(Applied::Stale { .. })
        ));
        assert!(matches!(
            apply(None, &silent, Millis(99_000), &limits),
            Err(ModelError::TwinNotFound)
        ));
    }

    #[test]
    fn a_shadow_update_changes_both_sections_as_one_version_and_history_rebuilds_it() {
        let limits = Limits::default();
        let (twin, entry) = step(
            None,
            &shadow(
                Some(SectionChange::Merge(json!({"on": true, "level": 3}))),
                Some(SectionChange::Merge(json!({"on": false}))),
            ),
            5,
        );
        assert_eq!(twin.version, 1);
        assert_eq!((twin.desired.version, twin.reported.version), (1, 1));
        assert_eq!(Value::Object(twin.delta()), json!({"on": true, "level": 3}));
        assert_eq!(entry.kind, HistoryKind::State);
        let rebuilt = crate::history::twin_from_history([&entry]).unwrap();
        assert_eq!(rebuilt.desired.state, twin.desired.state);
        assert_eq!(rebuilt.reported.state, twin.reported.state);
        assert_eq!(rebuilt.reported.version, 1);

        let (twin, entry) = step(Some(twin), &shadow(Some(SectionChange::Clear), None), 6);
        assert!(twin.desired.state.is_empty() && twin.desired.metadata.is_empty());
        assert_eq!(
            Value::Object(twin.reported.state.clone()),
            json!({"on": false})
        );
        assert_eq!((twin.version, entry.kind), (2, HistoryKind::Desired));

        let (twin, entry) = step(Some(twin), &shadow(None, Some(SectionChange::Clear)), 7);
        assert!(twin.reported.state.is_empty());
        assert_eq!((twin.version, entry.kind), (3, HistoryKind::Reported));
        assert!(matches!(
            apply(Some(twin), &shadow(None, None), Millis(8), &limits),
            Err(ModelError::InvalidField { field: "state", .. })
        ));
    }

    #[test]
    fn presence_is_ordered_by_sequence_and_only_creates_twins_when_asked() {
        let limits = Limits::default();
        assert_eq!(
            apply(
                None,
                &connection(ConnectionStatus::Connected, 1, false),
                Millis(1),
                &limits
            ),
            Err(ModelError::TwinNotFound)
        );
        let (twin, entry) = step(None, &connection(ConnectionStatus::Connected, 10, true), 1);
        assert_eq!(twin.connection.status, ConnectionStatus::Connected);
        assert_eq!(twin.connection.last_connected_at, Some(Millis(1)));
        assert_eq!(entry.kind, HistoryKind::Connection);
        // The disconnect of an older session arrives after the newer connect: ignored.
        let stale = apply(
            Some(twin.clone()),
            &connection(ConnectionStatus::Disconnected, 9, false),
            Millis(2),
            &limits,
        );
        assert!(matches!(stale, Ok(Applied::Stale { .. })));
        let (twin, _) = step(
            Some(twin),
            &connection(ConnectionStatus::Disconnected, 11, false),
            3,
        );
        assert_eq!(twin.connection.status, ConnectionStatus::Disconnected);
        assert_eq!(twin.connection.last_disconnected_at, Some(Millis(3)));
        assert_eq!(twin.version, 2);
        assert_eq!(twin.shadow_version, 0, "presence is not a shadow change");
        let rebuilt = crate::history::twin_from_history([&entry]).unwrap();
        assert_eq!(rebuilt.connection.status, ConnectionStatus::Connected);
    }

    #[test]
    fn the_shadow_version_counts_state_changes_and_deletes_only() {
        let limits = Limits::default();
        let at = |expected: u64| {
            request(Change::Shadow {
                desired: None,
                reported: Some(SectionChange::Merge(json!({"t": expected}))),
                expected_shadow_version: Some(expected),
            })
        };
        assert_eq!(
            apply(None, &at(0), Millis(1), &limits),
            Err(ModelError::VersionMismatch {
                expected: 0,
                current: 0
            }),
            "a version names an existing shadow"
        );
        let (twin, _) = step(None, &shadow(None, Some(SectionChange::Clear)), 1);
        assert_eq!((twin.version, twin.shadow_version), (1, 1));
        let (twin, _) = step(
            Some(twin),
            &connection(ConnectionStatus::Connected, 5, false),
            2,
        );
        let (twin, _) = step(Some(twin), &request(Change::Meta(MetaPatch::default())), 3);
        assert_eq!((twin.version, twin.shadow_version), (3, 1));
        let (twin, _) = step(Some(twin), &at(1), 4);
        assert_eq!((twin.version, twin.shadow_version), (4, 2));
        assert_eq!(
            apply(Some(twin.clone()), &at(1), Millis(5), &limits),
            Err(ModelError::VersionMismatch {
                expected: 1,
                current: 2
            })
        );
        let (tombstone, _) = step(Some(twin), &request(Change::Delete), 6);
        assert_eq!(tombstone.shadow_version, 3);
        let (again, _) = step(
            Some(tombstone),
            &shadow(Some(SectionChange::Clear), None),
            7,
        );
        assert_eq!(
            again.shadow_version, 4,
            "never backwards, not even across a delete"
        );
    }

    #[test]
    fn first_write_creates_the_twin_at_version_one() {
        let (twin, entry) = changed(apply(
            None,
            &request(Change::DesiredPatch(json!({"on": true}))),
            Millis(10),
            &Limits::default(),
        ));
        assert_eq!(
            (twin.version, twin.desired.version, twin.created_at),
            (1, 1, Millis(10))
        );
        assert_eq!(Value::Object(twin.delta()), json!({"on": true}));
        assert_eq!(
            (entry.kind, entry.version, entry.changed_by.as_str()),
            (HistoryKind::Desired, 1, "tester")
        );
    }

    #[test]
    fn stale_reports_change_nothing() {
        let limits = Limits::default();
        let (twin, _) = step(None, &report(json!({"t": 1}), Some(5)), 1);
        assert_eq!(
            apply(
                Some(twin.clone()),
                &report(json!({"t": 2}), Some(5)),
                Millis(2),
                &limits
            ),
            Ok(Applied::Stale { twin: twin.clone() })
        );
        assert_eq!(
            apply(
                Some(twin.clone()),
                &report(json!({"t": 2}), Some(4)),
                Millis(2),
                &limits
            ),
            Ok(Applied::Stale { twin: twin.clone() })
        );
        let (newer, _) = step(Some(twin.clone()), &report(json!({"t": 3}), Some(6)), 3);
        assert_eq!((newer.version, newer.reported.version), (2, 6));
        assert_eq!(newer.connection.last_activity_at, Some(Millis(3)));
    }

    #[test]
    fn a_report_at_the_largest_version_refuses_what_would_wrap_and_stale_reports_stay_stale() {
        let limits = Limits::default();
        let (twin, _) = step(None, &report(json!({"t": 1}), Some(u64::MAX)), 1);
        assert_eq!(twin.reported.version, u64::MAX);
        // Before the fix the next unversioned report wrapped the version to 0 (or panicked in a
        // debug build), and a report of version 5 was then newer than everything stored.
        let overflow = ModelError::VersionOverflow {
            what: "reported state",
            version: u64::MAX,
        };
        assert_eq!(
            apply(
                Some(twin.clone()),
                &report(json!({"t": 2}), None),
                Millis(2),
                &limits
            ),
            Err(overflow.clone())
        );
        let both = shadow(None, Some(SectionChange::Merge(json!({"t": 2}))));
        assert_eq!(
            apply(Some(twin.clone()), &both, Millis(2), &limits),
            Err(overflow)
        );
        assert_eq!(
            apply(
                Some(twin.clone()),
                &report(json!({"t": 5}), Some(5)),
                Millis(2),
                &limits
            ),
            Ok(Applied::Stale { twin: twin.clone() })
        );
        // Desired state still changes: only the section at its end is stuck.
        let (twin, _) = step(
            Some(twin),
            &request(Change::DesiredPatch(json!({"on": true}))),
            3,
        );
        assert_eq!(twin.reported.version, u64::MAX);
    }

    #[test]
    fn reports_without_a_sequence_count_up() {
        let (twin, _) = step(None, &report(json!({"t": 1}), None), 1);
        let (twin, _) = step(Some(twin.clone()), &report(json!({"t": 2}), None), 2);
        assert_eq!(twin.reported.version, 2);
    }

    #[test]
    fn if_match_must_name_the_current_version() {
        let limits = Limits::default();
        let (twin, _) = step(None, &request(Change::DesiredPatch(json!({"a": 1}))), 1);
        let mut conditional = request(Change::DesiredPatch(json!({"a": 2})));
        conditional.expected_version = Some(7);
        assert_eq!(
            apply(Some(twin.clone()), &conditional, Millis(2), &limits),
            Err(ModelError::VersionMismatch {
                expected: 7,
                current: 1
            })
        );
        conditional.expected_version = Some(1);
        assert_eq!(step(Some(twin.clone()), &conditional, 2).0.version, 2);
        assert!(matches!(
            apply(None, &conditional, Millis(2), &limits),
            Err(ModelError::VersionMismatch { .. })
        ));
    }

    #[test]
    fn limits_reject_deep_large_and_non_object_states() {
        let limits = Limits {
            max_document_bytes: 32,
            max_depth: 2,
            ..Limits::default()
        };
        let deep = request(Change::DesiredPatch(json!({"a": {"b": {"c": 1}}})));
        assert!(matches!(
            apply(None, &deep, Millis(1), &limits),
            Err(ModelError::TooDeep {
                depth: 3,
                limit: 2,
                ..
            })
        ));
        let large = request(Change::DesiredPatch(json!({"a": "x".repeat(40)})));
        assert!(matches!(
            apply(None, &large, Millis(1), &limits),
            Err(ModelError::TooLarge { .. })
        ));
        let scalar = request(Change::DesiredPatch(json!([1])));
        assert!(matches!(
            apply(None, &scalar, Millis(1), &limits),
            Err(ModelError::NotAnObject {
                found: "an array",
                ..
            })
        ));
    }

    #[test]
    fn replace_drops_keys_the_new_state_lacks() {
        let (twin, _) = step(
            None,
            &request(Change::DesiredPatch(json!({"a": 1, "b": 2}))),
            1,
        );
        let (twin, entry) = step(
            Some(twin.clone()),
            &request(Change::DesiredReplace(json!({"c": 3}))),
            2,
        );
        assert_eq!(Value::Object(twin.desired.state), json!({"c": 3}));
        assert_eq!(Value::Object(twin.desired.metadata), json!({"c": 2}));
        assert_eq!(entry.change_reason, "desired replace");
    }

    #[test]
    fn delete_leaves_a_tombstone_whose_version_keeps_counting() {
        let limits = Limits::default();
        let (twin, _) = step(None, &request(Change::DesiredPatch(json!({"a": 1}))), 1);
        let (tombstone, entry) = step(Some(twin.clone()), &request(Change::Delete), 2);
        assert!(tombstone.deleted && tombstone.live().is_none());
        assert_eq!((tombstone.version, entry.kind), (2, HistoryKind::Deleted));
        assert_eq!(
            apply(
                Some(tombstone.clone()),
                &request(Change::Delete),
                Millis(3),
                &limits
            ),
            Err(ModelError::TwinNotFound)
        );
        let (reborn, _) = step(
            Some(tombstone.clone()),
            &request(Change::DesiredPatch(json!({"b": 1}))),
            3,
        );
        assert_eq!(
            (reborn.version, reborn.deleted, reborn.created_at),
            (3, false, Millis(3))
        );
        assert_eq!(Value::Object(reborn.desired.state), json!({"b": 1}));
    }

    #[test]
    fn time_within_a_twin_never_runs_backwards() {
        let (twin, _) = step(None, &request(Change::DesiredPatch(json!({"a": 1}))), 100);
        let (twin, entry) = step(
            Some(twin.clone()),
            &request(Change::DesiredPatch(json!({"a": 2}))),
            50,
        );
        assert_eq!(
            (twin.updated_at, entry.recorded_at),
            (Millis(100), Millis(100))
        );
    }

    #[test]
    fn meta_patches_merge_tags_and_validate_fields() {
        let patch = MetaPatch::from_json(&json!({"tags": {"site": "berlin", "row": "3"}, "device_type": "pump", "capabilities": ["ota"]})).unwrap();
        let (twin, entry) = step(None, &request(Change::Meta(patch)), 1);
        let patch =
            MetaPatch::from_json(&json!({"tags": {"row": null}, "device_type": null})).unwrap();
        let (twin, _) = step(Some(twin.clone()), &request(Change::Meta(patch)), 2);
        assert_eq!(twin.meta.tags.len(), 1);
        assert_eq!(twin.meta.device_type, None);
        assert_eq!(entry.kind, HistoryKind::Meta);
        for bad in [
            json!({"colour": "red"}),
            json!({"tags": {"a.b": "x"}}),
            json!({"tags": {"a": 1}}),
            json!({"capabilities": "ota"}),
        ] {
            assert!(MetaPatch::from_json(&bad).is_err(), "{bad} was accepted");
        }
    }
}
