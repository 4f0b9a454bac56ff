//! Why Doppel refuses an MQTT request, in one type for every topic family (shadow requests,
//! command acknowledgements, edge syncs) and one mapping from the model's, the command queue's
//! and the engine's errors, as `problem.rs` is for HTTP. A new error variant needs a decision
//! here, once.

use doppel_engine::{EngineError, QuotaError};
use doppel_model::command::CommandError;
use doppel_model::{Millis, ModelError, Subject};
use serde_json::{Map, Value};

/// A refused request: the HTTP-style `code` and the `message`, AWS's word for word where AWS has
/// the case (device SDKs and existing fleets match on them). Published on the request's
/// `/rejected` topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub struct Rejection {
    /// 400, 403, 404, 409, 413, 415 or 500, as AWS uses them.
    pub code: u16,
    /// AWS's message for the case, word for word.
    pub message: String,
}

impl Rejection {
    fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// 400: the payload is not a JSON object.
    pub fn invalid_json() -> Self {
        Self::new(400, "Invalid JSON")
    }

    /// 400: an update without a `state` member.
    pub fn missing_state() -> Self {
        Self::new(400, "Missing required node: state")
    }

    /// 400: `state` is neither an object nor `null`.
    pub fn state_not_object() -> Self {
        Self::new(400, "State node must be an object")
    }

    /// 400: `state.desired` is neither an object nor `null`.
    pub fn desired_not_object() -> Self {
        Self::new(400, "Desired node must be an object")
    }

    /// 400: `state.reported` is neither an object nor `null`.
    pub fn reported_not_object() -> Self {
        Self::new(400, "Reported node must be an object")
    }

    /// 400: `version` is not a non-negative integer.
    pub fn invalid_version() -> Self {
        Self::new(400, "Invalid version")
    }

    /// 400: `clientToken` is not a string of at most 64 bytes, AWS's limit.
    pub fn invalid_client_token() -> Self {
        Self::new(400, "Invalid clientToken")
    }

    /// 400: a state section nests deeper than `max_depth` (AWS's own limit is 6).
    pub fn too_deep(max_depth: usize) -> Self {
        Self::new(
            400,
            format!("JSON contains too many levels of nesting; maximum is {max_depth}"),
        )
    }

    /// 400: `state` holds something other than `desired` and `reported`, or neither of them, or
    /// an array holds `null`.
    pub fn invalid_state_node() -> Self {
        Self::new(400, "State contains an invalid node")
    }

    /// 400: a section's version is `u64::MAX` and cannot count on (AWS has no such case: its
    /// devices cannot set a version; Doppel's HTTP reports can).
    pub fn version_overflow(what: &str) -> Self {
        Self::new(
            400,
            format!("The {what} version is at its maximum; no later version can be recorded"),
        )
    }

    /// 403: the update would create a shadow beyond `limits.max_named_shadows` or
    /// `limits.max_twins_per_tenant`. Not 409, which AWS SDKs take for a version conflict and
    /// answer by fetching the shadow and retrying; nor 429, which invites a retry too.
    pub fn quota(err: &QuotaError) -> Self {
        Self::new(403, err.to_string())
    }

    /// 404: the shadow does not exist. AWS names the thing for a classic shadow and the shadow
    /// name for a named one, in single quotes.
    pub fn not_found(name: &str) -> Self {
        Self::new(404, format!("No shadow exists with name: '{name}'"))
    }

    /// 409: the request's `version` is not the shadow's current version.
    pub fn version_conflict() -> Self {
        Self::new(409, "Version conflict")
    }

    /// 413: the payload, or the state it would leave, is larger than the limit.
    pub fn payload_too_large() -> Self {
        Self::new(413, "The payload exceeds the maximum size allowed")
    }

    /// 415: the payload is not UTF-8.
    pub fn unsupported_encoding() -> Self {
        Self::new(
            415,
            "Unsupported documented encoding; supported encoding is UTF-8",
        )
    }

    /// 400 with Doppel's own message, for the cases AWS has no message for (a command
    /// acknowledgement or a sync request that does not parse).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 503: the hub is stopping; the request changed nothing and may be sent again once it is
    /// back. Not 500: nothing failed.
    pub fn shutting_down() -> Self {
        Self::new(503, "the hub is shutting down")
    }

    /// 500: the hub failed (storage, a corrupt record, a panicked task); the request may be
    /// retried.
    pub fn internal() -> Self {
        Self::new(500, "Internal service failure")
    }

    /// The AWS error for a model error. `thing_or_shadow_name` is what a 404 names: the thing for a
    /// classic shadow, the shadow name for a named one.
    ///
    /// Every variant is matched by name so that a new model error needs a decision here.
    pub fn of_model(err: &ModelError, thing_or_shadow_name: &str) -> Self {
        match err {
            ModelError::VersionMismatch { .. } => Self::version_conflict(),
            ModelError::VersionOverflow { what, .. } => Self::version_overflow(what),
            ModelError::TooLarge { .. } => Self::payload_too_large(),
            ModelError::TooDeep { limit, .. } => Self::too_deep(*limit),
            ModelError::TwinNotFound => Self::not_found(thing_or_shadow_name),
            ModelError::NotAnObject { what, .. } => match what {
                Subject::DesiredState => Self::desired_not_object(),
                Subject::ReportedState => Self::reported_not_object(),
                Subject::RequestBody => Self::state_not_object(),
            },
            ModelError::InvalidField { .. } => Self::invalid_state_node(),
            // AWS has no message for a name outside the alphabet (its topics cannot carry one);
            // the model's message says what is allowed.
            ModelError::InvalidId { .. } | ModelError::InvalidTimestamp { .. } => {
                Self::new(400, err.to_string())
            }
            // Only an edge agent refuses these, and it speaks no MQTT to its devices; were it to,
            // 409 is AWS's status for a request the current state does not allow.
            ModelError::DeviceTypeUnknown { .. } | ModelError::MetaOwnedByHub => {
                Self::new(409, err.to_string())
            }
            ModelError::CorruptRecord(_) => Self::internal(),
        }
    }

    /// The rejection for a refused command request.
    pub fn of_command(err: &CommandError) -> Self {
        let code = match err {
            CommandError::NotFound { .. } => 404,
            CommandError::NotAllowed { .. } => 409,
            CommandError::TooLarge { .. } => 413,
            CommandError::TooManyOpen { .. } => 429,
            CommandError::InvalidField { .. } | CommandError::TtlTooLong { .. } => 400,
        };
        Self::new(code, err.to_string())
    }

    /// The rejection for an engine error. `thing_or_shadow_name` is what a 404 names. A
    /// failure of the hub itself is logged here, with what the request was `doing`, since its
    /// message to the device says no more than that it failed.
    pub fn of_engine(err: &EngineError, thing_or_shadow_name: &str, doing: &str) -> Self {
        match err {
            EngineError::Model(err) => Self::of_model(err, thing_or_shadow_name),
            EngineError::Command(err) => Self::of_command(err),
            // The update would create a twin the hub has no room for: the request's fault.
            EngineError::Quota(err) => Self::quota(err),
            EngineError::ShuttingDown => Self::shutting_down(),
            EngineError::Store(_) | EngineError::TaskFailed(_) => {
                tracing::error!(error = %err, "{doing} failed in the engine");
                Self::internal()
            }
        }
    }

    /// `{"code", "message", "timestamp"}`, the members every `/rejected` document has; each
    /// topic family adds its own token.
    pub fn document(&self, now: Millis) -> Map<String, Value> {
        let mut doc = Map::new();
        doc.insert("code".into(), self.code.into());
        doc.insert("message".into(), self.message.clone().into());
        doc.insert("timestamp".into(), now.unix_seconds().into());
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_aws_codes_and_messages_word_for_word() {
        let cases = [
            (Rejection::invalid_json(), 400, "Invalid JSON"),
            (
                Rejection::missing_state(),
                400,
                "Missing required node: state",
            ),
            (
                Rejection::state_not_object(),
                400,
                "State node must be an object",
            ),
            (
                Rejection::desired_not_object(),
                400,
                "Desired node must be an object",
            ),
            (
                Rejection::reported_not_object(),
                400,
                "Reported node must be an object",
            ),
            (Rejection::invalid_version(), 400, "Invalid version"),
            (
                Rejection::invalid_client_token(),
                400,
                "Invalid clientToken",
            ),
            (
                Rejection::too_deep(6),
                400,
                "JSON contains too many levels of nesting; maximum is 6",
            ),
            (
                Rejection::invalid_state_node(),
                400,
                "State contains an invalid node",
            ),
            (
                Rejection::not_found("pump-7"),
                404,
                "No shadow exists with name: 'pump-7'",
            ),
            (Rejection::version_conflict(), 409, "Version conflict"),
            (
                Rejection::payload_too_large(),
                413,
                "The payload exceeds the maximum size allowed",
            ),
            (
                Rejection::unsupported_encoding(),
                415,
                "Unsupported documented encoding; supported encoding is UTF-8",
            ),
            (Rejection::internal(), 500, "Internal service failure"),
        ];
        for (err, code, message) in cases {
            assert_eq!((err.code, err.message.as_str()), (code, message));
        }
    }

    #[test]
    fn model_errors_map_to_one_aws_error_each() {
        let name = "config";
        let cases = [
            (
                ModelError::VersionMismatch {
                    expected: 1,
                    current: 2,
                },
                Rejection::version_conflict(),
            ),
            (
                ModelError::TooLarge {
                    what: "reported state",
                    size: 9,
                    limit: 8,
                },
                Rejection::payload_too_large(),
            ),
            (
                ModelError::TooDeep {
                    what: "desired state",
                    depth: 9,
                    limit: 8,
                },
                Rejection::too_deep(8),
            ),
            (ModelError::TwinNotFound, Rejection::not_found("config")),
            (
                ModelError::NotAnObject {
                    what: Subject::DesiredState,
                    found: "an array",
                },
                Rejection::desired_not_object(),
            ),
            (
                ModelError::NotAnObject {
                    what: Subject::ReportedState,
                    found: "an array",
                },
                Rejection::reported_not_object(),
            ),
            (
                ModelError::InvalidField {
                    field: "state",
                    reason: "must contain desired or reported".into(),
                },
                Rejection::invalid_state_node(),
            ),
            (
                ModelError::CorruptRecord("bad tag".into()),
                Rejection::internal(),
            ),
            (
                ModelError::VersionOverflow {
                    what: "reported state",
                    version: u64::MAX,
                },
                Rejection::version_overflow("reported state"),
            ),
        ];
        for (model, expected) in cases {
            assert_eq!(Rejection::of_model(&model, name), expected, "{model:?}");
        }
        let invalid_id = ModelError::InvalidId {
            kind: "shadow name",
            value: "a.b".into(),
        };
        let mapped = Rejection::of_model(&invalid_id, name);
        assert_eq!(mapped.code, 400);
        assert!(mapped.message.contains("a.b"), "{}", mapped.message);
    }

    #[test]
    fn command_errors_map_to_one_code_each() {
        let cases = [
            (CommandError::NotFound { id: "c-1".into() }, 404),
            (CommandError::TooManyOpen { limit: 1 }, 429),
        ];
        for (err, code) in cases {
            let rejection = Rejection::of_command(&err);
            assert_eq!((rejection.code, rejection.message), (code, err.to_string()));
        }
    }

    #[test]
    fn a_stopping_hub_is_not_a_failed_one() {
        assert_eq!(
            Rejection::of_engine(&EngineError::ShuttingDown, "pump-7", "a test").code,
            503
        );
        assert_eq!(
            Rejection::of_engine(&EngineError::TaskFailed("applying"), "pump-7", "a test"),
            Rejection::internal()
        );
        assert_eq!(
            Rejection::of_engine(
                &EngineError::Model(ModelError::TwinNotFound),
                "pump-7",
                "a test"
            ),
            Rejection::not_found("pump-7")
        );
    }

    #[test]
    fn the_document_carries_code_message_and_whole_seconds() {
        assert_eq!(
            Value::from(Rejection::version_conflict().document(Millis(5_500))),
            serde_json::json!({"code": 409, "message": "Version conflict", "timestamp": 5})
        );
    }
}
