//! The human-readable form of the API's JSON answers (`--json` prints them as they are). Reads
//! the shapes of `doppel_http::render`; a missing field shows as `-` rather than failing, so an
//! older or newer server still prints.

use super::table::{Table, truncate};
use serde_json::{Map, Value};

/// Longest compact state shown in a history row; the full state is in `--json`.
const MAX_STATE_CELL: usize = 60;

/// Shown for an absent or null field.
const NONE: &str = "-";

/// A scalar field as text: strings unquoted, numbers and booleans as written, `-` for null.
fn field(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        None | Some(Value::Null) => NONE.to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

fn object<'a>(value: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    value.pointer(pointer).and_then(Value::as_object)
}

pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `1 key`, `3 keys`, or `in sync` for an empty delta.
fn delta_summary(twin: &Value) -> String {
    match object(twin, "/delta").map(Map::len) {
        None => NONE.to_owned(),
        Some(0) => "in sync".to_owned(),
        Some(1) => "1 key".to_owned(),
        Some(n) => format!("{n} keys"),
    }
}

/// `doppel twin get`: identity, versions, instants and descriptive fields, then reported,
/// desired and delta as indented JSON.
pub fn twin(twin: &Value) -> String {
    let mut identity = Table::headless();
    for name in ["device_id", "tenant", "version", "created_at", "updated_at"] {
        identity.row(vec![name.to_owned(), field(twin, &format!("/{name}"))]);
    }
    identity.row(vec!["connection".into(), field(twin, "/connection/status")]);
    identity.row(vec![
        "last_connected_at".into(),
        field(twin, "/connection/last_connected_at"),
    ]);
    identity.row(vec![
        "last_activity_at".into(),
        field(twin, "/connection/last_activity_at"),
    ]);
    identity.row(vec!["device_type".into(), field(twin, "/device_type")]);
    identity.row(vec![
        "firmware_version".into(),
        field(twin, "/firmware_version"),
    ]);
    identity.row(vec!["capabilities".into(), capabilities(twin)]);
    identity.row(vec!["tags".into(), tags(twin)]);

    let mut out = identity.render();
    for side in ["reported", "desired"] {
        out.push_str(&format!(
            "\n{side} (version {}, updated {}):\n{}\n",
            field(twin, &format!("/{side}/version")),
            field(twin, &format!("/{side}/updated_at")),
            pretty(
                twin.pointer(&format!("/{side}/state"))
                    .unwrap_or(&Value::Null)
            ),
        ));
    }
    out.push_str(&delta_block(twin));
    out
}

/// The delta under a blank line, or a note that the device is in sync.
fn delta_block(twin: &Value) -> String {
    match object(twin, "/delta") {
        Some(delta) if !delta.is_empty() => format!(
            "\ndelta (desired values the device has not reported yet):\n{}\n",
            pretty(&Value::Object(delta.clone()))
        ),
        _ => "\ndelta: in sync (reported matches desired)\n".to_owned(),
    }
}

fn capabilities(twin: &Value) -> String {
    match twin.pointer("/capabilities").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|item| {
                item.as_str()
                    .map_or_else(|| item.to_string(), str::to_owned)
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => NONE.to_owned(),
    }
}

fn tags(twin: &Value) -> String {
    match object(twin, "/tags") {
        Some(tags) if !tags.is_empty() => tags
            .iter()
            .map(|(name, value)| {
                format!(
                    "{name}={}",
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => NONE.to_owned(),
    }
}

/// `doppel twin desired`: the versions after the change and what the device still has to do.
pub fn desired_written(twin: &Value) -> String {
    format!(
        "desired state of {} updated: twin version {}, desired version {}\n{}",
        field(twin, "/device_id"),
        field(twin, "/version"),
        field(twin, "/desired/version"),
        delta_block(twin).trim_start(),
    )
}

/// `doppel twin report`: applied, or ignored because the twin already holds a newer report.
pub fn report_outcome(answer: &Value, device: &str, sent_version: Option<u64>) -> String {
    let applied = answer
        .get("applied")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reported_version = field(answer, "/twin/reported/version");
    if applied {
        return format!(
            "applied: {device} is at twin version {}, reported version {reported_version}\n",
            field(answer, "/twin/version")
        );
    }
    let sent = sent_version.map_or_else(
        || "without a version".to_owned(),
        |version| format!("version {version}"),
    );
    format!(
        "ignored as stale: the report ({sent}) is not newer than {device}'s reported version {reported_version}\n"
    )
}

/// `doppel twin history`: one row per entry, then the cursor of the next page.
pub fn history_page(page: &Value) -> String {
    let header = [
        "VERSION",
        "KIND",
        "RECORDED_AT",
        "CHANGED_BY",
        "REASON",
        "STATE",
    ];
    page_table(page, &header, "no history entries", |entry| {
        let state = match entry.get("state") {
            None | Some(Value::Null) => NONE.to_owned(),
            Some(state) => truncate(&state.to_string(), MAX_STATE_CELL),
        };
        vec![
            field(entry, "/version"),
            field(entry, "/kind"),
            field(entry, "/recorded_at"),
            field(entry, "/changed_by"),
            field(entry, "/change_reason"),
            state,
        ]
    })
}

/// `doppel twin list` and `query`: one row per twin, or `empty` when there is none, then the
/// cursor of the next page.
pub fn list_page(page: &Value, empty: &str) -> String {
    let header = ["DEVICE_ID", "VERSION", "CONNECTION", "DELTA", "UPDATED_AT"];
    page_table(page, &header, empty, |twin| {
        vec![
            field(twin, "/device_id"),
            field(twin, "/version"),
            field(twin, "/connection/status"),
            delta_summary(twin),
            field(twin, "/updated_at"),
        ]
    })
}

/// A count (`{"count": n, "groups": [{"value", "count"}]}`): the total, then a row per group.
pub fn count(answer: &Value) -> String {
    let total = field(answer, "/count");
    let Some(groups) = answer.get("groups").and_then(Value::as_array) else {
        return format!("{total}\n");
    };
    let mut table = Table::new(&["VALUE", "COUNT"]);
    for group in groups {
        let value = match group.get("value") {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => "null".into(),
        };
        table.row(vec![value, field(group, "/count")]);
    }
    format!("{}total  {total}\n", table.render())
}

/// The `items` of a listing answer; none when it has no such array.
pub fn items(page: &Value) -> &[Value] {
    page.get("items")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// A page of the API (`{"items": [...], "next_cursor": ...}`) as a table of one row per item,
/// or `empty` when there are none, then the cursor line.
pub fn page_table(
    page: &Value,
    header: &[&str],
    empty: &str,
    row: impl Fn(&Value) -> Vec<String>,
) -> String {
    let items = items(page);
    let body = if items.is_empty() {
        format!("{empty}\n")
    } else {
        let mut table = Table::new(header);
        for item in items {
            table.row(row(item));
        }
        table.render()
    };
    body + &next_cursor(page)
}

/// `next cursor: X` when the server says there may be more, else nothing.
fn next_cursor(page: &Value) -> String {
    match page.get("next_cursor").and_then(Value::as_str) {
        Some(cursor) => format!("next cursor: {cursor}\n"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_twin() -> Value {
        json!({
            "tenant": "default", "device_id": "pump-001", "version": 3,
            "created_at": "2024-05-01T10:00:00.000Z", "updated_at": "2024-05-01T10:05:00.000Z",
            "reported": {"state": {"led": "off"}, "metadata": {}, "version": 1, "updated_at": "2024-05-01T10:01:00.000Z"},
            "desired": {"state": {"led": "on"}, "metadata": {}, "version": 2, "updated_at": null},
            "delta": {"led": "on"},
            "connection": {"status": "UNKNOWN", "last_connected_at": null, "last_activity_at": null},
            "device_type": "pump", "firmware_version": null, "capabilities": ["ota", "reboot"],
            "tags": {"env": "prod", "site": "lyon"}
        })
    }

    #[test]
    fn a_twin_shows_identity_then_each_side_as_json() {
        let text = twin(&sample_twin());
        assert!(
            text.starts_with(
                "device_id          pump-001\ntenant             default\nversion            3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\ncapabilities       ota, reboot\n"),
            "{text}"
        );
        assert!(
            text.contains("\ntags               env=prod, site=lyon\n"),
            "{text}"
        );
        assert!(text.contains("\nfirmware_version   -\n"), "{text}");
        assert!(text.contains("\nreported (version 1, updated 2024-05-01T10:01:00.000Z):\n{\n  \"led\": \"off\"\n}\n"), "{text}");
        assert!(
            text.contains("\ndesired (version 2, updated -):\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "delta (desired values the device has not reported yet):\n{\n  \"led\": \"on\"\n}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn list_rows_summarise_the_delta() {
        let mut synced = sample_twin();
        synced["device_id"] = json!("pump-002");
        synced["delta"] = json!({});
        let page = json!({"items": [sample_twin(), synced], "next_cursor": "pump-002"});
        let text = list_page(&page, "no twins in tenant default");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "DEVICE_ID  VERSION  CONNECTION  DELTA    UPDATED_AT"
        );
        assert_eq!(
            lines[1],
            "pump-001   3        UNKNOWN     1 key    2024-05-01T10:05:00.000Z"
        );
        assert_eq!(
            lines[2],
            "pump-002   3        UNKNOWN     in sync  2024-05-01T10:05:00.000Z"
        );
        assert_eq!(lines[3], "next cursor: pump-002");
        assert_eq!(
            list_page(
                &json!({"items": [], "next_cursor": null}),
                "no twins match the query in tenant t1"
            ),
            "no twins match the query in tenant t1\n"
        );
    }

    #[test]
    fn history_rows_truncate_long_states() {
        let long = "x".repeat(100);
        let page = json!({"items": [
            {"kind": "DESIRED", "version": 2, "recorded_at": "2024-05-01T10:00:00.000Z", "state": {"note": long}, "changed_by": "api", "change_reason": null}
        ], "next_cursor": null});
        let text = history_page(&page);
        let row = text.lines().nth(1).unwrap_or_default();
        assert!(
            row.starts_with(
                "2        DESIRED  2024-05-01T10:00:00.000Z  api         -       {\"note\":\"xxx"
            ),
            "{row}"
        );
        assert!(row.ends_with('…'), "{row}");
        assert!(!text.contains("next cursor"), "{text}");
    }
}
