//! The JSON shapes the API returns. Instants are RFC 3339 strings; per-leaf metadata keeps its
//! `{"timestamp": <Unix ms>}` form at each leaf (stored as the bare number).

use doppel_model::{HistoryEntry, Millis, Section, Twin, TwinKey};
use serde_json::{Map, Value, json};

fn instant(at: Option<Millis>) -> Value {
    at.map_or(Value::Null, |at| json!(at.to_rfc3339()))
}

fn section(section: &Section) -> Value {
    json!({
        "state": section.state,
        "metadata": metadata(&section.metadata),
        "version": section.version,
        "updated_at": instant(section.updated_at),
    })
}

/// Per-leaf metadata as clients see it: each stored number becomes `{"timestamp": n}`.
fn metadata(stored: &Map<String, Value>) -> Value {
    Value::Object(
        stored
            .iter()
            .map(|(key, value)| {
                let rendered = match value {
                    Value::Object(inner) => metadata(inner),
                    leaf => json!({ "timestamp": leaf }),
                };
                (key.clone(), rendered)
            })
            .collect(),
    )
}

pub(crate) fn twin(key: &TwinKey, twin: &Twin) -> Value {
    let mut rendered = json!({
        "tenant": key.tenant.as_str(),
        "device_id": key.device.as_str(),
        "version": twin.version,
        "shadow_version": twin.shadow_version,
        "created_at": twin.created_at.to_rfc3339(),
        "updated_at": twin.updated_at.to_rfc3339(),
        "reported": section(&twin.reported),
        "desired": section(&twin.desired),
        "delta": twin.delta(),
        "connection": {
            "status": twin.connection.status,
            "last_connected_at": instant(twin.connection.last_connected_at),
            "last_disconnected_at": instant(twin.connection.last_disconnected_at),
            "last_activity_at": instant(twin.connection.last_activity_at),
            "stale": twin.connection.stale,
        },
        "device_type": twin.meta.device_type,
        "firmware_version": twin.meta.firmware_version,
        "capabilities": twin.meta.capabilities,
        "tags": twin.meta.tags,
    });
    if let Some(replica) = &twin.replica {
        rendered["replica"] = json!({"clock": replica.clock, "hlc": replica.hlc.to_string()});
    }
    rendered
}

pub(crate) fn history_entry(entry: &HistoryEntry) -> Value {
    let mut rendered = json!({
        "kind": entry.kind,
        "version": entry.version,
        "recorded_at": entry.recorded_at.to_rfc3339(),
        "state": entry.state,
        "section_version": entry.section_version,
        "changed_by": entry.changed_by,
        "change_reason": entry.change_reason,
    });
    if let Some(change) = &entry.replica {
        rendered["replica"] = json!({
            "origin": change.origin,
            "clock": change.clock,
            "hlc": change.hlc.to_string(),
            "origin_version": change.version,
        });
    }
    if !entry.resolutions.is_empty() {
        rendered["resolutions"] = json!(entry.resolutions);
    }
    rendered
}
