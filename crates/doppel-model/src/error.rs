//! Errors of the model: each is the caller's fault and changes nothing.

use thiserror::Error;

/// Why the model refused a request. Every variant means the twin was left unchanged; the HTTP and
/// MQTT adapters map each variant to exactly one status or reason code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid {kind} id {value:?}: ids are 1 to 128 characters of A-Z a-z 0-9 : _ . -")]
    InvalidId { kind: &'static str, value: String },

    #[error("{what} must be a JSON object, got {found}")]
    NotAnObject { what: Subject, found: &'static str },

    #[error("{what} nests {depth} levels deep; the limit is {limit}")]
    TooDeep {
        what: &'static str,
        depth: usize,
        limit: usize,
    },

    #[error("{what} would be {size} bytes; the limit is {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },

    #[error("the twin is at version {current} but the request expected version {expected}")]
    VersionMismatch { expected: u64, current: u64 },

    /// A version would pass `u64::MAX`: counting on would wrap to 0, after which an old report
    /// would look newer than everything stored.
    #[error(
        "the {what} is at version {version}, the largest there is; no later version can be recorded (delete the twin to start its versions again)"
    )]
    VersionOverflow { what: &'static str, version: u64 },

    /// The one not-found error of twins, over HTTP (`twin_not_found`) and MQTT (AWS's 404) alike.
    #[error("no twin with this id exists in this tenant")]
    TwinNotFound,

    #[error("invalid timestamp {value:?}: {reason}")]
    InvalidTimestamp { value: String, reason: String },

    #[error("invalid field {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },

    /// At an edge agent: a CRDT operation for a twin whose device type the agent has not yet
    /// heard from the hub, so it cannot tell which rules (CRDT or plain value) apply; storing
    /// the operation as a plain value would lose it at the next merge.
    #[error(
        "reported property {property:?} is written as a CRDT operation, but this agent does not know the twin's device type yet (its meta comes from the hub); retry once the agent has synced with the hub"
    )]
    DeviceTypeUnknown { property: String },

    /// At an edge agent: a twin's meta (device type, tags, ...) belongs to the hub, which
    /// replicates it to the agents; a local change would be overwritten at the next sync.
    #[error(
        "a twin's meta is set on the hub, not at an edge agent; the agent gets it at its next sync"
    )]
    MetaOwnedByHub,

    #[error("a stored record is corrupt: {0}")]
    CorruptRecord(String),
}

/// The JSON type name of a value, for error messages.
pub fn json_type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// What a [`ModelError::NotAnObject`] is about, as a value rather than words, so that each
/// protocol can name it its own way (AWS has one message per section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    RequestBody,
    DesiredState,
    ReportedState,
}

impl Subject {
    /// How the model's own messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestBody => "the request body",
            Self::DesiredState => "desired state",
            Self::ReportedState => "reported state",
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
