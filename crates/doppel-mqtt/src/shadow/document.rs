//! AWS IoT Device Shadow documents: parsing requests, and building AWS's response documents from
//! Doppel twins.
//!
//! Formats follow AWS's "Device Shadow service documents" and "Device Shadow error messages"
//! pages, checked against responses the real service sends. Timestamps in every AWS document are
//! Unix seconds, while Doppel keeps milliseconds; [`Millis::unix_seconds`] is the one conversion.
//!
//! One deliberate extension: the `/update/delta` document also names, as `null`, pending keys
//! that were removed from desired, so a device can drop work nobody wants any more (see
//! [`delta`]). AWS devices ignore such members or treat them as "nothing to do".

use crate::rejection::Rejection;
use doppel_model::patch;
use doppel_model::{Change, Limits, Millis, SectionChange, Twin};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Longest `clientToken` AWS accepts, in bytes; a longer one is rejected as invalid.
pub const MAX_CLIENT_TOKEN_BYTES: usize = 64;

/// The `/rejected` document: `{"code", "message", "timestamp", "clientToken"?}`.
pub fn rejected(err: &Rejection, client_token: Option<&str>, now: Millis) -> Value {
    let mut doc = err.document(now);
    if let Some(token) = client_token {
        doc.insert("clientToken".into(), token.into());
    }
    doc.into()
}

/// A parsed `/update` request state document.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowUpdate {
    /// `state.desired`: a merge patch, or `Clear` for `null`; `None` when absent.
    pub desired: Option<SectionChange>,
    /// `state.reported`: a merge patch, or `Clear` for `null`; `None` when absent.
    pub reported: Option<SectionChange>,
    /// Apply only if the shadow is at this version (optimistic locking).
    pub version: Option<u64>,
    /// Echoed in every document this request causes, so the client can match them.
    pub client_token: Option<String>,
}

impl ShadowUpdate {
    /// The model change this update asks for.
    pub fn to_change(&self) -> Change {
        Change::Shadow {
            desired: self.desired.clone(),
            reported: self.reported.clone(),
            expected_shadow_version: self.version,
        }
    }
}

/// Parses and validates an `/update` payload as AWS does.
///
/// Members other than `state`, `version` and `clientToken` are ignored at the top level, as AWS
/// ignores them; inside `state` only `desired` and `reported` are allowed. `{"state": null}`
/// clears both sections, as it does on AWS. The size of the merged state is checked later by the
/// model, which answers [`doppel_model::ModelError::TooLarge`].
///
/// To echo the request's token in the rejection, recover it with [`parse_client_token`].
pub fn parse_update(payload: &[u8], limits: &Limits) -> Result<ShadowUpdate, Rejection> {
    if payload.len() > limits.max_document_bytes {
        return Err(Rejection::payload_too_large());
    }
    let text = std::str::from_utf8(payload).map_err(|_| Rejection::unsupported_encoding())?;
    // Before parsing, so a pathological document is answered with the nesting error (not
    // whatever serde_json's recursion limit makes of it) and costs no parse.
    if doppel_model::limits::check_nesting("the payload", payload, limits).is_err() {
        return Err(Rejection::too_deep(limits.max_depth));
    }
    let document: Value = serde_json::from_str(text).map_err(|_| Rejection::invalid_json())?;
    let Value::Object(document) = document else {
        return Err(Rejection::invalid_json());
    };
    let client_token = client_token_of(&document)?;
    let version = match document.get("version") {
        None | Some(Value::Null) => None,
        Some(version) => Some(version.as_u64().ok_or_else(Rejection::invalid_version)?),
    };
    let (desired, reported) = match document.get("state") {
        None => return Err(Rejection::missing_state()),
        Some(Value::Null) => (Some(SectionChange::Clear), Some(SectionChange::Clear)),
        Some(Value::Object(state)) => parse_state(state, limits)?,
        Some(_) => return Err(Rejection::state_not_object()),
    };
    Ok(ShadowUpdate {
        desired,
        reported,
        version,
        client_token,
    })
}

type Sections = (Option<SectionChange>, Option<SectionChange>);

fn parse_state(state: &Map<String, Value>, limits: &Limits) -> Result<Sections, Rejection> {
    let (mut desired, mut reported) = (None, None);
    for (key, value) in state {
        let (slot, not_object) = match key.as_str() {
            "desired" => (&mut desired, Rejection::desired_not_object as fn() -> _),
            "reported" => (&mut reported, Rejection::reported_not_object as fn() -> _),
            // `delta` and `metadata` are computed by the service, never written.
            _ => return Err(Rejection::invalid_state_node()),
        };
        *slot = Some(match value {
            Value::Null => SectionChange::Clear,
            Value::Object(_) => {
                if patch::depth(value) > limits.max_depth {
                    return Err(Rejection::too_deep(limits.max_depth));
                }
                // AWS rejects arrays holding null: in a merge patch null means "remove", which
                // has no meaning for an array element.
                if has_null_in_array(value) {
                    return Err(Rejection::invalid_state_node());
                }
                SectionChange::Merge(value.clone())
            }
            _ => return Err(not_object()),
        });
    }
    // AWS appears to accept `{"state": {}}` as an update that changes nothing; the model has no
    // change without a section, so Doppel refuses it instead.
    if desired.is_none() && reported.is_none() {
        return Err(Rejection::invalid_state_node());
    }
    Ok((desired, reported))
}

fn has_null_in_array(value: &Value) -> bool {
    match value {
        Value::Array(items) => items
            .iter()
            .any(|item| item.is_null() || has_null_in_array(item)),
        Value::Object(map) => map.values().any(has_null_in_array),
        _ => false,
    }
}

/// The `clientToken` of a `/get` or `/delete` request, or of any request being rejected.
///
/// AWS documents these payloads as empty and ignores their content, so a payload that is empty
/// or not a JSON object yields `None` rather than an error; only a `clientToken` that is present
/// but not a string of at most [`MAX_CLIENT_TOKEN_BYTES`] bytes is rejected.
pub fn parse_client_token(payload: &[u8]) -> Result<Option<String>, Rejection> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(document)) => client_token_of(&document),
        _ => Ok(None),
    }
}

fn client_token_of(document: &Map<String, Value>) -> Result<Option<String>, Rejection> {
    match document.get("clientToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(token)) if token.len() <= MAX_CLIENT_TOKEN_BYTES => {
            Ok(Some(token.clone()))
        }
        Some(_) => Err(Rejection::invalid_client_token()),
    }
}

/// The `/update/accepted` document: the request's sections as sent (`null` for a cleared one),
/// `{"timestamp": s}` for every leaf the request wrote or removed, the new version.
///
/// `twin` is the twin after the update; its `updated_at` is when the leaves were written.
pub fn update_accepted<'a>(
    update: &'a ShadowUpdate,
    twin: &Twin,
    now: Millis,
) -> UpdateAccepted<'a> {
    UpdateAccepted {
        update,
        written: twin.updated_at,
        version: twin.shadow_version,
        now,
    }
}

/// The `/update/accepted` document, serialized straight from the request: the answer every
/// accepted update gets is written out without building a JSON tree (building, encoding and
/// freeing the tree took about a tenth of the hub's CPU under shadow load). Members come in
/// the order a `serde_json::Map` keeps them, so the bytes are those of the same document built
/// as a [`Value`].
pub struct UpdateAccepted<'a> {
    update: &'a ShadowUpdate,
    /// When the leaves were written.
    written: Millis,
    version: u64,
    now: Millis,
}

impl Serialize for UpdateAccepted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut doc = serializer.serialize_map(None)?;
        if let Some(token) = &self.update.client_token {
            doc.serialize_entry("clientToken", token)?;
        }
        let written = self.written.unix_seconds();
        doc.serialize_entry("metadata", &RequestMetadata(self.update, written))?;
        doc.serialize_entry("state", &RequestState(self.update))?;
        doc.serialize_entry("timestamp", &self.now.unix_seconds())?;
        doc.serialize_entry("version", &self.version)?;
        doc.end()
    }
}

/// The sections an update names, in the order a `serde_json::Map` keeps them.
fn sections(update: &ShadowUpdate) -> impl Iterator<Item = (&'static str, &SectionChange)> {
    [("desired", &update.desired), ("reported", &update.reported)]
        .into_iter()
        .filter_map(|(name, change)| change.as_ref().map(|change| (name, change)))
}

/// An update's sections as sent, `null` for a cleared one.
struct RequestState<'a>(&'a ShadowUpdate);

impl Serialize for RequestState<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(sections(self.0).map(|(name, change)| match change {
            SectionChange::Clear => (name, &Value::Null),
            SectionChange::Merge(requested) => (name, requested),
        }))
    }
}

/// An update's sections with `{"timestamp": written}` at every leaf it wrote or removed, and
/// for a cleared section.
struct RequestMetadata<'a>(&'a ShadowUpdate, i64);

impl Serialize for RequestMetadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let written = self.1;
        serializer.collect_map(sections(self.0).map(|(name, change)| match change {
            SectionChange::Clear => (name, Stamps::Leaf(written)),
            SectionChange::Merge(requested) => (name, Stamps::of(requested, written)),
        }))
    }
}

/// A request's shape with `{"timestamp": s}` at every leaf, a `null` (a removal) included.
enum Stamps<'a> {
    Leaf(i64),
    Object(&'a Map<String, Value>, i64),
}

impl<'a> Stamps<'a> {
    fn of(requested: &'a Value, written: i64) -> Stamps<'a> {
        match requested {
            Value::Object(members) => Stamps::Object(members, written),
            _ => Stamps::Leaf(written),
        }
    }
}

impl Serialize for Stamps<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            Stamps::Leaf(written) => map.serialize_entry("timestamp", written)?,
            Stamps::Object(members, written) => {
                for (key, value) in members.iter() {
                    map.serialize_entry(key, &Stamps::of(value, *written))?;
                }
            }
        }
        map.end()
    }
}

/// The `/get/accepted` document of a live twin: `desired`, `reported` and `delta` (each only
/// when not empty, as AWS omits them), their metadata, the version.
pub fn get_accepted(twin: &Twin, client_token: Option<&str>, now: Millis) -> Value {
    let mut doc = snapshot(twin);
    let delta = twin.delta();
    if !delta.is_empty()
        && let Some(Value::Object(state)) = doc.get_mut("state")
    {
        state.insert("delta".into(), delta.into());
    }
    finish(doc, client_token, now)
}

/// The `/delete/accepted` document. `version` is the version of the shadow that was deleted.
pub fn delete_accepted(version: u64, client_token: Option<&str>, now: Millis) -> Value {
    let mut doc = Map::new();
    doc.insert("version".into(), version.into());
    finish(doc, client_token, now)
}

/// The `/update/documents` document: the shadow before and after an accepted update.
/// `previous` is `null` when the shadow did not exist (or was deleted) before, as on AWS.
pub fn documents(
    previous: Option<&Twin>,
    current: &Twin,
    client_token: Option<&str>,
    now: Millis,
) -> Value {
    let previous = previous
        .and_then(Twin::live)
        .map_or(Value::Null, |twin| snapshot(twin).into());
    let mut doc = Map::new();
    doc.insert("previous".into(), previous);
    doc.insert("current".into(), snapshot(current).into());
    finish(doc, client_token, now)
}

/// `{"state": {"desired"?, "reported"?}, "metadata": {"desired"?, "reported"?}, "version"}`,
/// leaving out empty sections as AWS does.
fn snapshot(twin: &Twin) -> Map<String, Value> {
    let mut state = Map::new();
    let mut metadata = Map::new();
    for (name, section) in [("desired", &twin.desired), ("reported", &twin.reported)] {
        if !section.state.is_empty() {
            state.insert(name.into(), section.state.clone().into());
            metadata.insert(name.into(), render_metadata(&section.metadata).into());
        }
    }
    let mut doc = Map::new();
    doc.insert("state".into(), state.into());
    doc.insert("metadata".into(), metadata.into());
    doc.insert("version".into(), twin.shadow_version.into());
    doc
}

/// The `/update/delta` document to publish after a change from `previous` to `current`, or
/// `None` when the device has nothing new to hear.
///
/// A document is sent when the change added a key to the delta or changed one, or removed from
/// desired a key the previous delta held. It carries the whole current delta (as AWS does) plus,
/// as `null` at their paths, the pending keys that desired no longer has, so the device can drop
/// them (Doppel's extension). A delta that only shrank because reported caught up, or did not
/// change at all, sends nothing: the device already knows.
pub fn delta(
    previous: Option<&Twin>,
    current: &Twin,
    client_token: Option<&str>,
    now: Millis,
) -> Option<Value> {
    let current = current.live()?;
    let before = previous
        .and_then(Twin::live)
        .map(Twin::delta)
        .unwrap_or_default();
    let after = current.delta();
    let removed = removed_from_desired(&before, &current.desired.state);
    if removed.is_empty() && !has_new_leaves(&after, &before) {
        return None;
    }
    let mut state = after;
    add_removals(&mut state, &removed);
    Some(delta_document(current, state, client_token, now))
}

/// The `/update/delta` document with the twin's whole current delta, or `None` when it is empty
/// or the twin is deleted: what a device that (re)subscribes has missed.
pub fn current_delta(twin: &Twin, now: Millis) -> Option<Value> {
    let twin = twin.live()?;
    let state = twin.delta();
    (!state.is_empty()).then(|| delta_document(twin, state, None, now))
}

/// `{"version", "timestamp", "state", "metadata", "clientToken"?}`, the metadata being desired's
/// for each leaf of `state` and the change's time for each `null`.
fn delta_document(
    twin: &Twin,
    state: Map<String, Value>,
    client_token: Option<&str>,
    now: Millis,
) -> Value {
    let metadata = metadata_of(&state, &twin.desired.metadata, twin.updated_at);
    let mut doc = Map::new();
    doc.insert("version".into(), twin.shadow_version.into());
    doc.insert("state".into(), state.into());
    doc.insert("metadata".into(), metadata.into());
    finish(doc, client_token, now)
}

/// Whether `after` holds a leaf that `before` does not hold with the same value.
fn has_new_leaves(after: &Map<String, Value>, before: &Map<String, Value>) -> bool {
    after
        .iter()
        .any(|(key, value)| match (value, before.get(key)) {
            (Value::Object(now), Some(Value::Object(was))) => has_new_leaves(now, was),
            (value, Some(was)) => value != was,
            (_, None) => true,
        })
}

/// The paths of the previous delta that `desired` no longer has, each marked `null`.
///
/// A pending object whose desired counterpart became a scalar is removed as a whole: its inner
/// paths are gone, and if the scalar is itself pending the current delta carries it instead.
fn removed_from_desired(
    before: &Map<String, Value>,
    desired: &Map<String, Value>,
) -> Map<String, Value> {
    let mut removed = Map::new();
    for (key, was) in before {
        match (was, desired.get(key)) {
            (Value::Object(was), Some(Value::Object(wanted))) => {
                let inner = removed_from_desired(was, wanted);
                if !inner.is_empty() {
                    removed.insert(key.clone(), inner.into());
                }
            }
            (Value::Object(_), Some(_)) | (_, None) => {
                removed.insert(key.clone(), Value::Null);
            }
            (_, Some(_)) => {}
        }
    }
    removed
}

/// Adds the `null` marks of `removed` to `state` where it has nothing at their path; pending
/// values always win over marks.
fn add_removals(state: &mut Map<String, Value>, removed: &Map<String, Value>) {
    for (key, mark) in removed {
        match (mark, state.get_mut(key)) {
            (Value::Object(inner), Some(Value::Object(target))) => add_removals(target, inner),
            (_, Some(_)) => {}
            (mark, None) => {
                state.insert(key.clone(), mark.clone());
            }
        }
    }
}

/// The rendered metadata of the leaves of `shape`, taken from `metadata` (the same shape as the
/// section's state); a `null` in `shape` is stamped `removed_at`.
fn metadata_of(
    shape: &Map<String, Value>,
    metadata: &Map<String, Value>,
    removed_at: Millis,
) -> Map<String, Value> {
    let empty = Map::new();
    let mut out = Map::new();
    for (key, value) in shape {
        let rendered = match (value, metadata.get(key)) {
            (Value::Null, _) => stamp(removed_at),
            (Value::Object(inner), found) => {
                let inner_metadata = match found {
                    Some(Value::Object(inner_metadata)) => inner_metadata,
                    _ => &empty,
                };
                metadata_of(inner, inner_metadata, removed_at).into()
            }
            (_, Some(found)) => match render_leaf(found) {
                Some(rendered) => rendered,
                None => continue,
            },
            (_, None) => continue,
        };
        out.insert(key.clone(), rendered);
    }
    out
}

/// Stored metadata (Unix milliseconds at each leaf) as AWS renders it: `{"timestamp": s}` at each
/// leaf.
fn render_metadata(metadata: &Map<String, Value>) -> Map<String, Value> {
    metadata
        .iter()
        .filter_map(|(key, value)| render_leaf(value).map(|rendered| (key.clone(), rendered)))
        .collect()
}

fn render_leaf(stored: &Value) -> Option<Value> {
    match stored {
        Value::Object(inner) => Some(render_metadata(inner).into()),
        leaf => leaf.as_i64().map(|ms| stamp(Millis(ms))),
    }
}

fn stamp(at: Millis) -> Value {
    let mut stamp = Map::new();
    stamp.insert("timestamp".into(), at.unix_seconds().into());
    stamp.into()
}

/// Adds what every response carries: `timestamp`, and `clientToken` when the request had one.
fn finish(mut doc: Map<String, Value>, client_token: Option<&str>, now: Millis) -> Value {
    doc.insert("timestamp".into(), now.unix_seconds().into());
    if let Some(token) = client_token {
        doc.insert("clientToken".into(), token.into());
    }
    doc.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_model::policy::ReplicaConfig;
    use doppel_model::{Applied, Context, UpdateRequest, apply};
    use proptest::prelude::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        max_document_bytes: 1024,
        max_depth: 3,
        max_named_shadows: 10,
        max_twins_per_tenant: 0,
    };

    /// Applies an AWS update (`{"desired": .., "reported": ..}`, `null` clearing) at `at_ms`.
    fn step(previous: Option<&Twin>, sections: Value, at_ms: i64) -> Twin {
        let change = |name: &str| match sections.get(name) {
            None => None,
            Some(Value::Null) => Some(SectionChange::Clear),
            Some(patch) => Some(SectionChange::Merge(patch.clone())),
        };
        let request = UpdateRequest {
            change: Change::Shadow {
                desired: change("desired"),
                reported: change("reported"),
                expected_shadow_version: None,
            },
            expected_version: None,
            changed_by: "tester".into(),
            change_reason: None,
            client_token: None,
            trace: None,
        };
        let context = Context {
            now: Millis(at_ms),
            limits: &Limits::default(),
            replica: &ReplicaConfig::hub(),
        };
        match apply(previous.cloned(), &request, &context) {
            Ok(Applied::Changed { twin, .. }) => twin,
            other => panic!("update not applied: {other:?}"),
        }
    }

    fn parse(payload: Value) -> Result<ShadowUpdate, Rejection> {
        parse_update(payload.to_string().as_bytes(), &LIMITS)
    }

    #[test]
    fn rejections_echo_the_token_only_when_given() {
        let err = Rejection::version_conflict();
        assert_eq!(
            rejected(&err, Some("t-1"), Millis(5_500)),
            json!({"code": 409, "message": "Version conflict", "timestamp": 5, "clientToken": "t-1"})
        );
        assert_eq!(
            rejected(&err, None, Millis(5_500)),
            json!({"code": 409, "message": "Version conflict", "timestamp": 5})
        );
    }

    #[test]
    fn parses_a_full_update() {
        let update = parse(json!({
            "state": {"desired": {"on": true, "light": {"level": null}}, "reported": null},
            "version": 7,
            "clientToken": "t-1",
            "timestamp": 123
        }))
        .unwrap();
        assert_eq!(
            update,
            ShadowUpdate {
                desired: Some(SectionChange::Merge(
                    json!({"on": true, "light": {"level": null}})
                )),
                reported: Some(SectionChange::Clear),
                version: Some(7),
                client_token: Some("t-1".into()),
            }
        );
        assert_eq!(
            update.to_change(),
            Change::Shadow {
                desired: update.desired.clone(),
                reported: Some(SectionChange::Clear),
                expected_shadow_version: Some(7),
            }
        );
        // `"state": null` clears the whole shadow, as on AWS; null version and token are absent.
        assert_eq!(
            parse(json!({"state": null, "version": null, "clientToken": null})).unwrap(),
            ShadowUpdate {
                desired: Some(SectionChange::Clear),
                reported: Some(SectionChange::Clear),
                version: None,
                client_token: None,
            }
        );
    }

    #[test]
    fn rejects_each_invalid_update_with_the_aws_message() {
        let cases = [
            (json!([1]), Rejection::invalid_json()),
            (json!("state"), Rejection::invalid_json()),
            (json!({}), Rejection::missing_state()),
            (json!({"desired": {"a": 1}}), Rejection::missing_state()),
            (json!({"state": 1}), Rejection::state_not_object()),
            (json!({"state": [{}]}), Rejection::state_not_object()),
            (
                json!({"state": {"desired": [1]}}),
                Rejection::desired_not_object(),
            ),
            (
                json!({"state": {"desired": {}, "reported": "x"}}),
                Rejection::reported_not_object(),
            ),
            (json!({"state": {}}), Rejection::invalid_state_node()),
            (
                json!({"state": {"delta": {"a": 1}}}),
                Rejection::invalid_state_node(),
            ),
            (
                json!({"state": {"desired": {"a": 1}, "metadata": {}}}),
                Rejection::invalid_state_node(),
            ),
            (
                json!({"state": {"desired": {"colors": [null, "RED"]}}}),
                Rejection::invalid_state_node(),
            ),
            (
                json!({"state": {"reported": {"a": {"b": {"c": {"d": 1}}}}}}),
                Rejection::too_deep(3),
            ),
            (
                json!({"state": {"desired": {"a": 1}}, "version": -1}),
                Rejection::invalid_version(),
            ),
            (
                json!({"state": {"desired": {"a": 1}}, "version": 1.5}),
                Rejection::invalid_version(),
            ),
            (
                json!({"state": {"desired": {"a": 1}}, "version": "3"}),
                Rejection::invalid_version(),
            ),
            (
                json!({"state": {"desired": {"a": 1}}, "clientToken": "x".repeat(65)}),
                Rejection::invalid_client_token(),
            ),
            (
                json!({"state": {"desired": {"a": 1}}, "clientToken": 7}),
                Rejection::invalid_client_token(),
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(parse(payload.clone()), Err(expected), "{payload}");
        }
        // At the limit is fine; a 64-byte token is fine.
        assert!(parse(json!({"state": {"reported": {"a": {"b": {}}}}})).is_ok());
        assert!(parse(json!({"state": {"desired": {}}, "clientToken": "x".repeat(64)})).is_ok());
    }

    #[test]
    fn rejects_payloads_that_are_not_json_text_of_acceptable_size() {
        assert_eq!(
            parse_update(b"{\"state\": ", &LIMITS),
            Err(Rejection::invalid_json())
        );
        assert_eq!(parse_update(b"", &LIMITS), Err(Rejection::invalid_json()));
        assert_eq!(
            parse_update(b"{\"state\": {\"desired\": {\"a\": \"\xff\"}}}", &LIMITS),
            Err(Rejection::unsupported_encoding())
        );
        let big = json!({"state": {"desired": {"a": "x".repeat(1024)}}});
        assert_eq!(parse(big), Err(Rejection::payload_too_large()));
    }

    #[test]
    fn pathological_nesting_gets_the_nesting_error_not_invalid_json() {
        // serde_json gives up at 128 levels; the answer must still be the documented one.
        for levels in [10, 200, 400] {
            let deep = format!(
                r#"{{"state": {{"reported": {{"a": {}1{}}}}}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            );
            assert_eq!(
                parse_update(deep.as_bytes(), &LIMITS),
                Err(Rejection::too_deep(3)),
                "{levels} levels"
            );
        }
        // Brackets inside strings are not nesting.
        let quoted = json!({"state": {"reported": {"a": "[".repeat(500)}}});
        assert!(parse(quoted).is_ok());
    }

    #[test]
    fn get_and_delete_payloads_yield_their_token() {
        assert_eq!(parse_client_token(b""), Ok(None));
        assert_eq!(parse_client_token(b"  "), Ok(None));
        assert_eq!(parse_client_token(b"whatever"), Ok(None));
        assert_eq!(parse_client_token(b"{}"), Ok(None));
        assert_eq!(
            parse_client_token(br#"{"clientToken": "t-1"}"#),
            Ok(Some("t-1".into()))
        );
        // Works on an update being rejected, too.
        assert_eq!(
            parse_client_token(br#"{"state": 1, "clientToken": "t-2"}"#),
            Ok(Some("t-2".into()))
        );
        let long = json!({"clientToken": "x".repeat(65)}).to_string();
        assert_eq!(
            parse_client_token(long.as_bytes()),
            Err(Rejection::invalid_client_token())
        );
    }

    /// The `/update/accepted` document as JSON, checked to be written exactly as the same
    /// document built as a `Value` would be (members in the same order).
    fn accepted_json(update: &ShadowUpdate, twin: &Twin, now: Millis) -> Value {
        let bytes =
            serde_json::to_vec(&update_accepted(update, twin, now)).expect("the answer encodes");
        let value: Value = serde_json::from_slice(&bytes).expect("the answer is JSON");
        assert_eq!(
            String::from_utf8(bytes).expect("JSON is UTF-8"),
            serde_json::to_string(&value).expect("a Value encodes")
        );
        value
    }

    #[test]
    fn update_accepted_matches_aws_for_a_report() {
        // The shape AWS answered in its SDK sample: `update-reported {"Color":"green"}`.
        let twin = step(
            None,
            json!({"reported": {"Color": "green"}}),
            1_719_853_620_400,
        );
        let update =
            parse(json!({"state": {"reported": {"Color": "green"}}, "clientToken": "c"})).unwrap();
        assert_eq!(
            accepted_json(&update, &twin, Millis(1_719_853_620_900)),
            json!({
                "state": {"reported": {"Color": "green"}},
                "metadata": {"reported": {"Color": {"timestamp": 1_719_853_620}}},
                "version": 1,
                "timestamp": 1_719_853_620,
                "clientToken": "c"
            })
        );
    }

    #[test]
    fn update_accepted_stamps_nested_and_removed_leaves_and_cleared_sections() {
        let first = step(None, json!({"desired": {"a": {"b": 1, "c": 2}}}), 1_000);
        let update =
            parse(json!({"state": {"desired": {"a": {"b": null, "d": [1, 2]}}, "reported": null}}))
                .unwrap();
        let twin = step(
            Some(&first),
            json!({"desired": {"a": {"b": null, "d": [1, 2]}}, "reported": null}),
            3_000,
        );
        assert_eq!(
            accepted_json(&update, &twin, Millis(4_000)),
            json!({
                "state": {"desired": {"a": {"b": null, "d": [1, 2]}}, "reported": null},
                "metadata": {
                    "desired": {"a": {"b": {"timestamp": 3}, "d": {"timestamp": 3}}},
                    "reported": {"timestamp": 3}
                },
                "version": 2,
                "timestamp": 4
            })
        );
    }

    #[test]
    fn get_accepted_shows_sections_delta_and_omits_empty_ones() {
        let twin = step(
            None,
            json!({"desired": {"Color": "red", "l": {"on": true}}}),
            2_000,
        );
        let twin = step(
            Some(&twin),
            json!({"reported": {"Color": "green", "l": {"on": true}}}),
            3_000,
        );
        assert_eq!(
            get_accepted(&twin, Some("g"), Millis(9_999)),
            json!({
                "state": {
                    "desired": {"Color": "red", "l": {"on": true}},
                    "reported": {"Color": "green", "l": {"on": true}},
                    "delta": {"Color": "red"}
                },
                "metadata": {
                    "desired": {"Color": {"timestamp": 2}, "l": {"on": {"timestamp": 2}}},
                    "reported": {"Color": {"timestamp": 3}, "l": {"on": {"timestamp": 3}}}
                },
                "version": 2,
                "timestamp": 9,
                "clientToken": "g"
            })
        );
        let reported_only = step(None, json!({"reported": {"t": 1}}), 1_000);
        assert_eq!(
            get_accepted(&reported_only, None, Millis(1_000)),
            json!({
                "state": {"reported": {"t": 1}},
                "metadata": {"reported": {"t": {"timestamp": 1}}},
                "version": 1,
                "timestamp": 1
            })
        );
        let cleared = step(Some(&reported_only), json!({"reported": null}), 2_000);
        assert_eq!(
            get_accepted(&cleared, None, Millis(2_000)),
            json!({"state": {}, "metadata": {}, "version": 2, "timestamp": 2})
        );
    }

    #[test]
    fn delete_accepted_carries_version_time_and_token() {
        assert_eq!(
            delete_accepted(13, Some("d"), Millis(1_719_858_420_000)),
            json!({"version": 13, "timestamp": 1_719_858_420, "clientToken": "d"})
        );
        assert_eq!(
            delete_accepted(13, None, Millis(0)),
            json!({"version": 13, "timestamp": 0})
        );
    }

    #[test]
    fn documents_show_before_and_after_with_null_for_a_new_shadow() {
        let first = step(None, json!({"reported": {"Color": "green"}}), 1_000);
        assert_eq!(
            documents(None, &first, Some("c"), Millis(1_500)),
            json!({
                "previous": null,
                "current": {
                    "state": {"reported": {"Color": "green"}},
                    "metadata": {"reported": {"Color": {"timestamp": 1}}},
                    "version": 1
                },
                "timestamp": 1,
                "clientToken": "c"
            })
        );
        let second = step(Some(&first), json!({"desired": {"Color": "red"}}), 2_000);
        assert_eq!(
            documents(Some(&first), &second, None, Millis(2_000)),
            json!({
                "previous": {
                    "state": {"reported": {"Color": "green"}},
                    "metadata": {"reported": {"Color": {"timestamp": 1}}},
                    "version": 1
                },
                "current": {
                    "state": {"desired": {"Color": "red"}, "reported": {"Color": "green"}},
                    "metadata": {
                        "desired": {"Color": {"timestamp": 2}},
                        "reported": {"Color": {"timestamp": 1}}
                    },
                    "version": 2
                },
                "timestamp": 2
            })
        );
        // A shadow created again after a delete had no previous document either.
        let tombstone = Twin {
            version: 5,
            deleted: true,
            ..Twin::default()
        };
        let reborn = step(Some(&tombstone), json!({"reported": {"a": 1}}), 3_000);
        assert_eq!(
            documents(Some(&tombstone), &reborn, None, Millis(3_000))["previous"],
            Value::Null
        );
    }

    #[test]
    fn delta_matches_aws_when_desired_changes() {
        // AWS's SDK sample: desired Color red while reported is green, at version 5.
        let synced = step(
            None,
            json!({"desired": {"Color": "green"}, "reported": {"Color": "green"}}),
            1_719_855_311_000,
        );
        let changed = step(
            Some(&synced),
            json!({"desired": {"Color": "red"}}),
            1_719_855_498_000,
        );
        assert_eq!(
            delta(
                Some(&synced),
                &changed,
                Some("c"),
                Millis(1_719_855_498_300)
            ),
            Some(json!({
                "version": 2,
                "timestamp": 1_719_855_498,
                "state": {"Color": "red"},
                "metadata": {"Color": {"timestamp": 1_719_855_498}},
                "clientToken": "c"
            }))
        );
    }

    #[test]
    fn delta_carries_the_whole_delta_when_a_key_is_added() {
        let first = step(None, json!({"desired": {"a": 1}}), 1_000);
        assert_eq!(
            delta(None, &first, None, Millis(1_000)).map(|doc| doc["state"].clone()),
            Some(json!({"a": 1}))
        );
        let second = step(Some(&first), json!({"desired": {"b": {"c": 2}}}), 2_000);
        assert_eq!(
            delta(Some(&first), &second, None, Millis(2_000)),
            Some(json!({
                "version": 2,
                "timestamp": 2,
                "state": {"a": 1, "b": {"c": 2}},
                "metadata": {"a": {"timestamp": 1}, "b": {"c": {"timestamp": 2}}}
            }))
        );
    }

    #[test]
    fn delta_is_sent_when_a_pending_value_changes_or_reported_drifts() {
        let first = step(
            None,
            json!({"desired": {"a": {"x": 1}}, "reported": {"a": {"x": 0}}}),
            1_000,
        );
        let changed = step(Some(&first), json!({"desired": {"a": {"x": 2}}}), 2_000);
        assert_eq!(
            delta(Some(&first), &changed, None, Millis(2_000)).map(|doc| doc["state"].clone()),
            Some(json!({"a": {"x": 2}}))
        );
        // The device reports a value that no longer matches desired: the delta grows again.
        let synced = step(Some(&changed), json!({"reported": {"a": {"x": 2}}}), 3_000);
        let drifted = step(Some(&synced), json!({"reported": {"a": {"x": 5}}}), 4_000);
        assert_eq!(
            delta(Some(&synced), &drifted, None, Millis(4_000)).map(|doc| doc["state"].clone()),
            Some(json!({"a": {"x": 2}}))
        );
        // Reported losing a key desired still has puts it back in the delta.
        let dropped = step(Some(&synced), json!({"reported": {"a": null}}), 5_000);
        assert_eq!(
            delta(Some(&synced), &dropped, None, Millis(5_000)).map(|doc| doc["state"].clone()),
            Some(json!({"a": {"x": 2}}))
        );
    }

    #[test]
    fn keys_removed_from_desired_are_sent_as_null_at_their_path() {
        let first = step(
            None,
            json!({"desired": {"a": 1, "b": 2, "n": {"x": 1, "y": 2}}, "reported": {"n": {}}}),
            1_000,
        );
        let removed = step(
            Some(&first),
            json!({"desired": {"a": null, "n": {"x": null}}}),
            2_000,
        );
        assert_eq!(
            delta(Some(&first), &removed, Some("r"), Millis(2_000)),
            Some(json!({
                "version": 2,
                "timestamp": 2,
                "state": {"a": null, "b": 2, "n": {"x": null, "y": 2}},
                "metadata": {
                    "a": {"timestamp": 2},
                    "b": {"timestamp": 1},
                    "n": {"x": {"timestamp": 2}, "y": {"timestamp": 1}}
                },
                "clientToken": "r"
            }))
        );
        // Clearing desired drops everything that was pending, and nothing else.
        let synced_key = step(Some(&first), json!({"reported": {"b": 2}}), 3_000);
        let cleared = step(Some(&synced_key), json!({"desired": null}), 4_000);
        assert_eq!(
            delta(Some(&synced_key), &cleared, None, Millis(4_000)).map(|doc| doc["state"].clone()),
            Some(json!({"a": null, "n": null}))
        );
        // A pending object replaced by a scalar that reported already holds is gone as a whole.
        let object = step(
            None,
            json!({"desired": {"m": {"k": 1}}, "reported": {"m": 3}}),
            1_000,
        );
        let scalar = step(Some(&object), json!({"desired": {"m": 3}}), 2_000);
        assert_eq!(
            delta(Some(&object), &scalar, None, Millis(2_000)).map(|doc| doc["state"].clone()),
            Some(json!({"m": null}))
        );
    }

    #[test]
    fn nothing_is_sent_when_the_delta_only_shrank_by_a_report_or_did_not_change() {
        let first = step(
            None,
            json!({"desired": {"a": 1, "n": {"x": 1, "y": 2}}}),
            1_000,
        );
        let caught_up = step(
            Some(&first),
            json!({"reported": {"a": 1, "n": {"x": 1}}}),
            2_000,
        );
        assert_eq!(Value::Object(caught_up.delta()), json!({"n": {"y": 2}}));
        assert_eq!(delta(Some(&first), &caught_up, None, Millis(2_000)), None);
        // Reported changing keys desired does not mention, or desired re-stating pending values.
        let unrelated = step(Some(&caught_up), json!({"reported": {"temp": 21}}), 3_000);
        assert_eq!(
            delta(Some(&caught_up), &unrelated, None, Millis(3_000)),
            None
        );
        let restated = step(Some(&unrelated), json!({"desired": {"n": {"y": 2}}}), 4_000);
        assert_eq!(
            delta(Some(&unrelated), &restated, None, Millis(4_000)),
            None
        );
        // A shadow with no delta, and a deleted one, send nothing.
        let reported_only = step(None, json!({"reported": {"a": 1}}), 1_000);
        assert_eq!(delta(None, &reported_only, None, Millis(1_000)), None);
        let tombstone = Twin {
            deleted: true,
            ..first.clone()
        };
        assert_eq!(delta(Some(&first), &tombstone, None, Millis(5_000)), None);
    }

    #[test]
    fn current_delta_is_the_pending_work_for_a_reconnecting_device() {
        let twin = step(
            None,
            json!({"desired": {"a": 1, "b": 2}, "reported": {"a": 1}}),
            7_000,
        );
        assert_eq!(
            current_delta(&twin, Millis(9_000)),
            Some(json!({
                "version": 1,
                "timestamp": 9,
                "state": {"b": 2},
                "metadata": {"b": {"timestamp": 7}}
            }))
        );
        let synced = step(Some(&twin), json!({"reported": {"b": 2}}), 8_000);
        assert_eq!(current_delta(&synced, Millis(9_000)), None);
        let tombstone = Twin {
            deleted: true,
            ..twin
        };
        assert_eq!(current_delta(&tombstone, Millis(9_000)), None);
    }

    fn arb_state() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![Just(Value::Null), (0i64..3).prop_map(Value::from)];
        let value = leaf.prop_recursive(2, 8, 3, |inner| {
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        });
        prop::collection::btree_map("[a-c]", value, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// An AWS update of one or both sections, as a device or an application sends it.
    fn arb_update() -> impl Strategy<Value = Value> {
        let section = prop_oneof![
            1 => Just(None),
            1 => Just(Some(Value::Null)),
            4 => arb_state().prop_map(Some),
        ];
        (section.clone(), section)
            .prop_filter("an update changes a section", |(d, r)| {
                d.is_some() || r.is_some()
            })
            .prop_map(|(desired, reported)| {
                let mut sections = Map::new();
                if let Some(desired) = desired {
                    sections.insert("desired".into(), desired);
                }
                if let Some(reported) = reported {
                    sections.insert("reported".into(), reported);
                }
                Value::Object(sections)
            })
    }

    /// Whether every leaf of `pending` is in `known` with the same value.
    fn contains(known: &Map<String, Value>, pending: &Map<String, Value>) -> bool {
        pending
            .iter()
            .all(|(key, value)| match (value, known.get(key)) {
                (Value::Object(inner), Some(Value::Object(have))) => contains(have, inner),
                (value, Some(have)) => value == have,
                (_, None) => false,
            })
    }

    /// Whether every path of `known` leads somewhere in `desired`.
    fn paths_exist(known: &Map<String, Value>, desired: &Map<String, Value>) -> bool {
        known
            .iter()
            .all(|(key, value)| match (value, desired.get(key)) {
                (_, None) => false,
                (Value::Object(inner), Some(Value::Object(wanted))) => paths_exist(inner, wanted),
                (Value::Object(inner), Some(_)) => inner.is_empty(),
                (_, Some(_)) => true,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A device that knew the pending work before an update, and merges the `/update/delta`
        /// the update causes (if any) into it, knows all pending work after it, keeps no work
        /// for a path desired no longer has, and is never sent a document that tells it nothing.
        #[test]
        fn a_device_following_deltas_knows_the_live_work(
            updates in prop::collection::vec(arb_update(), 1..6)
        ) {
            let mut twin: Option<Twin> = None;
            for (i, update) in updates.iter().enumerate() {
                let next = step(twin.as_ref(), update.clone(), 1_000 * (i as i64 + 1));
                let before = twin.as_ref().map(Twin::delta).unwrap_or_default();
                let mut known = before.clone();
                if let Some(doc) = delta(twin.as_ref(), &next, None, Millis(0)) {
                    let state = doc["state"].as_object().cloned().unwrap_or_default();
                    patch::merge(&mut known, &mut Map::new(), &state, Millis(0));
                    prop_assert_ne!(&known, &before, "a delta that changes nothing: {}", doc);
                }
                prop_assert!(contains(&known, &next.delta()),
                    "known {:?} misses pending {:?}", known, next.delta());
                prop_assert!(paths_exist(&known, &next.desired.state),
                    "known {:?} keeps work desired {:?} dropped", known, next.desired.state);
                twin = Some(next);
            }
        }
    }
}
