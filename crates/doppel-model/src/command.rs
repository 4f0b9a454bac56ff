//! Commands: operations that do not fit the state model (reboot, run a diagnostic), queued for a
//! device and delivered when it is reachable. This module holds the rules only: validation of a
//! new command, the life cycle and its transitions, and the order of delivery. The engine owns
//! ids, time, storage and timers.
//!
//! ```text
//!            deliver            acknowledge
//!  PENDING ──────────► DELIVERED ──────────► ACKNOWLEDGED (SUCCEEDED | FAILED | REJECTED)
//!     │  ▲ (redeliver: │  │
//!     │  └─ ack late)  │  └─ attempts run out ──► FAILED
//!     ├─ expires_at ───┴──────────────────────────► EXPIRED
//!     └─ cancel ───────┴──────────────────────────► CANCELED
//! ```

use crate::error::json_type_name;
use crate::limits::Limits;
use crate::patch;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::time::Duration;

/// Longest command type: it names an operation (`reboot`, `diagnostics.run`).
pub const MAX_COMMAND_TYPE_LEN: usize = 128;
/// Longest idempotency key; long enough for a UUID or a hash, short enough to index.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
/// Priorities range over `-MAX_PRIORITY..=MAX_PRIORITY`, higher first; a small range keeps
/// priorities meaningful rather than an arms race.
pub const MAX_PRIORITY: i64 = 1000;

/// Where a command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    Pending,
    Delivered,
    Acknowledged,
    Expired,
    Canceled,
    /// Delivered as often as allowed without an acknowledgement.
    Failed,
}

impl CommandStatus {
    /// A final status: nothing happens to the command any more.
    pub fn is_final(self) -> bool {
        !matches!(self, CommandStatus::Pending | CommandStatus::Delivered)
    }

    pub fn parse(text: &str) -> Option<CommandStatus> {
        match text.to_ascii_uppercase().as_str() {
            "PENDING" => Some(Self::Pending),
            "DELIVERED" => Some(Self::Delivered),
            "ACKNOWLEDGED" => Some(Self::Acknowledged),
            "EXPIRED" => Some(Self::Expired),
            "CANCELED" => Some(Self::Canceled),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// What the device said when it acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandResult {
    Succeeded,
    Failed,
    Rejected,
}

impl CommandResult {
    pub fn parse(text: &str) -> Option<CommandResult> {
        match text {
            "SUCCEEDED" => Some(Self::Succeeded),
            "FAILED" => Some(Self::Failed),
            "REJECTED" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// One step of a command's life, kept for as long as the command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub status: CommandStatus,
    pub at: Millis,
    /// The delivery attempt, for DELIVERED steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// How commands are bounded; every limit has its reason at its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandLimits {
    /// Longest time to live a command may ask for.
    pub max_ttl: Duration,
    /// Time to live of a command that names none.
    pub default_ttl: Duration,
    /// Largest payload or response, serialized.
    pub max_payload_bytes: usize,
    /// How long a delivered command waits for its acknowledgement before it is delivered again.
    pub ack_timeout: Duration,
    /// Deliveries of one command before it is FAILED.
    pub max_attempts: u32,
    /// Deliveries of one command, beyond its attempts, that are repeats because its device
    /// reconnected or subscribed again: those lost what was in flight, so they use no attempt,
    /// up to this bound, past which a command that makes its device crash still ends FAILED.
    pub max_reconnect_deliveries: u32,
    /// Open (PENDING or DELIVERED) commands one device may have.
    pub max_open: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        Self {
            // A week: a device that is away longer needs a new decision, not an old command.
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            // An hour: long enough for a reconnect, short enough that a stale reboot is not run.
            default_ttl: Duration::from_secs(3600),
            // Commands carry parameters, not firmware images.
            max_payload_bytes: 16 * 1024,
            // Long enough for a slow device to act, short enough to notice a lost delivery.
            ack_timeout: Duration::from_secs(30),
            // At least once without hammering a device that cannot act on it.
            max_attempts: 5,
            // A flapping link reconnects a few times an hour; a device that crashes on a
            // command reconnects dozens of times.
            max_reconnect_deliveries: 20,
            // A device that has a hundred commands waiting is not keeping up; more would only
            // pile up behind them.
            max_open: 100,
        }
    }
}

/// Why a command request or transition was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("invalid field {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("ttl_seconds {requested} is above the maximum of {max}")]
    TtlTooLong { requested: u64, max: u64 },
    #[error("{what} would be {size} bytes; the limit is {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("a {} command cannot be {action}", status_name(*status))]
    NotAllowed {
        status: CommandStatus,
        action: &'static str,
    },
    #[error("no command {id} is queued for this device")]
    NotFound { id: String },
    #[error("the device already has {limit} open commands, the most it may have")]
    TooManyOpen { limit: usize },
}

/// A command as an application asks for it, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCommand {
    pub kind: String,
    pub payload: Value,
    pub priority: i64,
    pub ttl: Duration,
    pub idempotency_key: Option<String>,
}

impl NewCommand {
    /// Parses `{"type", "payload"?, "priority"?, "ttl_seconds"?, "idempotency_key"?}`.
    pub fn from_json(
        body: &Value,
        limits: &CommandLimits,
        document: &Limits,
    ) -> Result<Self, CommandError> {
        let invalid =
            |field: &'static str, reason: String| CommandError::InvalidField { field, reason };
        let body = body.as_object().ok_or_else(|| {
            invalid(
                "body",
                format!("must be an object, got {}", json_type_name(body)),
            )
        })?;
        if let Some(unknown) = body.keys().find(|key| {
            !matches!(
                key.as_str(),
                "type" | "payload" | "priority" | "ttl_seconds" | "idempotency_key"
            )
        }) {
            return Err(invalid(
                "body",
                format!(
                    "unknown field {unknown:?}; expected type, payload, priority, ttl_seconds or idempotency_key"
                ),
            ));
        }
        let kind = match body.get("type") {
            Some(Value::String(kind)) if valid_label(kind, MAX_COMMAND_TYPE_LEN) => kind.clone(),
            Some(_) => {
                return Err(invalid(
                    "type",
                    format!(
                        "must be 1 to {MAX_COMMAND_TYPE_LEN} characters of A-Z a-z 0-9 _ . - :"
                    ),
                ));
            }
            None => return Err(invalid("type", "is required".into())),
        };
        let payload = body
            .get("payload")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        check_payload("payload", &payload, limits, document)?;
        let priority = match body.get("priority") {
            None => 0,
            Some(value) => value
                .as_i64()
                .filter(|p| (-MAX_PRIORITY..=MAX_PRIORITY).contains(p))
                .ok_or_else(|| {
                    invalid(
                        "priority",
                        format!("must be an integer from -{MAX_PRIORITY} to {MAX_PRIORITY}"),
                    )
                })?,
        };
        let ttl = match body.get("ttl_seconds") {
            None => limits.default_ttl,
            Some(value) => {
                let seconds = value
                    .as_u64()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| invalid("ttl_seconds", "must be a positive integer".into()))?;
                if seconds > limits.max_ttl.as_secs() {
                    return Err(CommandError::TtlTooLong {
                        requested: seconds,
                        max: limits.max_ttl.as_secs(),
                    });
                }
                Duration::from_secs(seconds)
            }
        };
        let idempotency_key = match body.get("idempotency_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN => {
                Some(key.clone())
            }
            Some(_) => {
                return Err(invalid(
                    "idempotency_key",
                    format!("must be a string of 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes"),
                ));
            }
        };
        Ok(NewCommand {
            kind,
            payload,
            priority,
            ttl,
            idempotency_key,
        })
    }
}

fn valid_label(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
}

fn check_payload(
    what: &'static str,
    value: &Value,
    limits: &CommandLimits,
    document: &Limits,
) -> Result<(), CommandError> {
    let size = patch::serialized_len(value);
    if size > limits.max_payload_bytes {
        return Err(CommandError::TooLarge {
            what,
            size,
            limit: limits.max_payload_bytes,
        });
    }
    patch::check_depth(what, value, document.max_depth).map_err(|err| CommandError::InvalidField {
        field: what,
        reason: err.to_string(),
    })
}

/// A queued command and everything that happened to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Unique and time-ordered; chosen by the engine.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Value,
    pub priority: i64,
    pub created_at: Millis,
    pub expires_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub status: CommandStatus,
    /// Deliveries so far that counted against `max_attempts`.
    pub attempts: u32,
    /// Repeated deliveries because the device reconnected or subscribed again, which used no
    /// attempt (see [`CommandLimits::max_reconnect_deliveries`]).
    #[serde(default)]
    pub reconnect_deliveries: u32,
    /// When the latest delivery went out; the acknowledgement timeout counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CommandResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// When the device acknowledged a command that was already EXPIRED, CANCELED or FAILED:
    /// its status stays what applications were told, and `result` and `response` record what
    /// the device said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_late_at: Option<Millis>,
    pub transitions: Vec<Transition>,
}

impl Command {
    /// A new PENDING command.
    pub fn new(id: String, request: NewCommand, now: Millis) -> Command {
        let ttl_ms = i64::try_from(request.ttl.as_millis()).unwrap_or(i64::MAX);
        Command {
            id,
            kind: request.kind,
            payload: request.payload,
            priority: request.priority,
            created_at: now,
            expires_at: Millis(now.0.saturating_add(ttl_ms)),
            idempotency_key: request.idempotency_key,
            status: CommandStatus::Pending,
            attempts: 0,
            reconnect_deliveries: 0,
            delivered_at: None,
            result: None,
            response: None,
            acknowledged_late_at: None,
            transitions: vec![Transition {
                status: CommandStatus::Pending,
                at: now,
                attempt: None,
            }],
        }
    }

    fn step(&mut self, status: CommandStatus, at: Millis, attempt: Option<u32>) {
        self.status = status;
        self.transitions.push(Transition {
            status,
            at,
            attempt,
        });
    }

    pub fn is_expired(&self, now: Millis) -> bool {
        now >= self.expires_at
    }

    /// Whether the command should go to the device now: pending, or delivered and left
    /// unacknowledged past the timeout with attempts to spare; never once expired. A device that
    /// has just (re)connected lost what was in flight, so `reconnected` does not wait for the
    /// acknowledgement timeout, and such a repeat uses no attempt while reconnect deliveries
    /// are left.
    pub fn due(&self, now: Millis, limits: &CommandLimits, reconnected: bool) -> bool {
        if self.is_expired(now) {
            return false;
        }
        match self.status {
            CommandStatus::Pending => true,
            CommandStatus::Delivered => {
                let attempt_left = self.attempts < limits.max_attempts;
                (reconnected && self.reconnect_delivery_left(limits))
                    || ((reconnected || self.ack_overdue(now, limits)) && attempt_left)
            }
            _ => false,
        }
    }

    fn reconnect_delivery_left(&self, limits: &CommandLimits) -> bool {
        self.reconnect_deliveries < limits.max_reconnect_deliveries
    }

    fn ack_overdue(&self, now: Millis, limits: &CommandLimits) -> bool {
        self.ack_deadline(limits)
            .is_none_or(|deadline| now >= deadline)
    }

    /// Records a delivery (the first, or a repeat after an overdue acknowledgement or a
    /// reconnect).
    pub fn deliver(
        &mut self,
        now: Millis,
        limits: &CommandLimits,
        reconnected: bool,
    ) -> Result<(), CommandError> {
        if !self.due(now, limits, reconnected) {
            return Err(CommandError::NotAllowed {
                status: self.status,
                action: "delivered now",
            });
        }
        let repeat = self.status == CommandStatus::Delivered;
        if reconnected && repeat && self.reconnect_delivery_left(limits) {
            self.reconnect_deliveries += 1;
        } else {
            self.attempts += 1;
        }
        self.delivered_at = Some(now);
        self.step(CommandStatus::Delivered, now, Some(self.attempts));
        Ok(())
    }

    /// Records the device's acknowledgement. PENDING accepts it too: a device may act on a
    /// command it read from a listing before any delivery. A final command takes none here:
    /// see [`Command::acknowledge_late`].
    pub fn acknowledge(
        &mut self,
        result: CommandResult,
        response: Option<Value>,
        now: Millis,
        limits: &CommandLimits,
        document: &Limits,
    ) -> Result<(), CommandError> {
        if self.status.is_final() {
            return Err(CommandError::NotAllowed {
                status: self.status,
                action: "acknowledged",
            });
        }
        self.keep_answer(result, response, limits, document)?;
        self.step(CommandStatus::Acknowledged, now, None);
        Ok(())
    }

    /// Keeps what the device answered, once its response is known to be within the limits.
    fn keep_answer(
        &mut self,
        result: CommandResult,
        response: Option<Value>,
        limits: &CommandLimits,
        document: &Limits,
    ) -> Result<(), CommandError> {
        if let Some(response) = &response {
            check_payload("response", response, limits, document)?;
        }
        self.result = Some(result);
        self.response = response;
        Ok(())
    }

    /// Records an acknowledgement that came after the command became EXPIRED, CANCELED or
    /// FAILED (a device, or an edge agent, that acted on it while the hub had given up). What
    /// applications were told stays so: the status does not change, but what the device said
    /// is kept, once, instead of being lost.
    pub fn acknowledge_late(
        &mut self,
        result: CommandResult,
        response: Option<Value>,
        now: Millis,
        limits: &CommandLimits,
        document: &Limits,
    ) -> Result<(), CommandError> {
        let late = matches!(
            self.status,
            CommandStatus::Expired | CommandStatus::Canceled | CommandStatus::Failed
        );
        if !late || self.acknowledged_late_at.is_some() {
            return Err(CommandError::NotAllowed {
                status: self.status,
                action: "acknowledged again",
            });
        }
        self.keep_answer(result, response, limits, document)?;
        self.acknowledged_late_at = Some(now);
        Ok(())
    }

    /// Cancels a command that is not final yet.
    pub fn cancel(&mut self, now: Millis) -> Result<(), CommandError> {
        if self.status.is_final() {
            return Err(CommandError::NotAllowed {
                status: self.status,
                action: "canceled",
            });
        }
        self.step(CommandStatus::Canceled, now, None);
        Ok(())
    }

    /// Applies what time alone does: EXPIRED once `expires_at` has passed, FAILED once the last
    /// attempt's acknowledgement is overdue. Returns whether the status changed.
    pub fn settle(&mut self, now: Millis, limits: &CommandLimits) -> bool {
        if self.status.is_final() {
            return false;
        }
        if self.is_expired(now) {
            self.step(CommandStatus::Expired, now, None);
            return true;
        }
        if self.status == CommandStatus::Delivered
            && self.attempts >= limits.max_attempts
            && self.ack_overdue(now, limits)
        {
            self.step(CommandStatus::Failed, now, None);
            return true;
        }
        false
    }

    /// The next instant after `now` at which time alone changes something for this command
    /// (its expiry, or the end of its acknowledgement timeout), for the engine's timer; `None`
    /// once final.
    pub fn next_deadline(&self, now: Millis, limits: &CommandLimits) -> Option<Millis> {
        if self.status.is_final() {
            return None;
        }
        Some(match self.ack_deadline(limits) {
            Some(ack) if ack > now => ack.min(self.expires_at),
            _ => self.expires_at,
        })
    }

    /// When the latest delivery's acknowledgement becomes overdue, while delivered.
    pub fn ack_deadline(&self, limits: &CommandLimits) -> Option<Millis> {
        let timeout = i64::try_from(limits.ack_timeout.as_millis()).unwrap_or(i64::MAX);
        match (self.status, self.delivered_at) {
            (CommandStatus::Delivered, Some(at)) => Some(Millis(at.0.saturating_add(timeout))),
            _ => None,
        }
    }
}

impl Command {
    /// The command as applications and devices see it: its stored form with instants as
    /// RFC 3339 strings, like every instant of the API.
    pub fn view(&self) -> Value {
        let instant = |at: Millis| Value::String(at.to_rfc3339());
        let mut view = Map::new();
        view.insert("id".into(), Value::String(self.id.clone()));
        view.insert("type".into(), Value::String(self.kind.clone()));
        view.insert("payload".into(), self.payload.clone());
        view.insert("priority".into(), self.priority.into());
        view.insert("status".into(), status_name(self.status).into());
        view.insert("created_at".into(), instant(self.created_at));
        view.insert("expires_at".into(), instant(self.expires_at));
        view.insert(
            "idempotency_key".into(),
            self.idempotency_key
                .clone()
                .map_or(Value::Null, Value::String),
        );
        view.insert("attempts".into(), self.attempts.into());
        view.insert(
            "delivered_at".into(),
            self.delivered_at.map_or(Value::Null, instant),
        );
        view.insert(
            "result".into(),
            self.result.map_or(Value::Null, |r| result_name(r).into()),
        );
        view.insert(
            "response".into(),
            self.response.clone().unwrap_or(Value::Null),
        );
        view.insert(
            "reconnect_deliveries".into(),
            self.reconnect_deliveries.into(),
        );
        view.insert(
            "acknowledged_late_at".into(),
            self.acknowledged_late_at.map_or(Value::Null, instant),
        );
        let transitions = self
            .transitions
            .iter()
            .map(|step| {
                let mut entry = Map::new();
                entry.insert("status".into(), status_name(step.status).into());
                entry.insert("at".into(), instant(step.at));
                if let Some(attempt) = step.attempt {
                    entry.insert("attempt".into(), attempt.into());
                }
                Value::Object(entry)
            })
            .collect();
        view.insert("transitions".into(), Value::Array(transitions));
        Value::Object(view)
    }
}

pub fn status_name(status: CommandStatus) -> &'static str {
    match status {
        CommandStatus::Pending => "PENDING",
        CommandStatus::Delivered => "DELIVERED",
        CommandStatus::Acknowledged => "ACKNOWLEDGED",
        CommandStatus::Expired => "EXPIRED",
        CommandStatus::Canceled => "CANCELED",
        CommandStatus::Failed => "FAILED",
    }
}

pub fn result_name(result: CommandResult) -> &'static str {
    match result {
        CommandResult::Succeeded => "SUCCEEDED",
        CommandResult::Failed => "FAILED",
        CommandResult::Rejected => "REJECTED",
    }
}

/// Reads a device's acknowledgement, `{"status": "SUCCEEDED"|"FAILED"|"REJECTED", "response":
/// ...}`, over HTTP and MQTT alike. A `null` or absent response is none; the response's size is
/// checked when it is recorded ([`Command::acknowledge`]).
pub fn parse_acknowledgement(body: &Value) -> Result<(CommandResult, Option<Value>), CommandError> {
    let invalid =
        |field: &'static str, reason: String| CommandError::InvalidField { field, reason };
    let object = body
        .as_object()
        .ok_or_else(|| invalid("body", "an acknowledgement is a JSON object".into()))?;
    if let Some(unknown) = object
        .keys()
        .find(|key| !matches!(key.as_str(), "status" | "response"))
    {
        return Err(invalid(
            "body",
            format!("unknown field {unknown:?}; expected status and response"),
        ));
    }
    let result = object
        .get("status")
        .and_then(Value::as_str)
        .and_then(CommandResult::parse)
        .ok_or_else(|| invalid("status", "must be SUCCEEDED, FAILED or REJECTED".into()))?;
    let response = object.get("response").filter(|r| !r.is_null()).cloned();
    Ok((result, response))
}

/// The order in which due commands go out: higher priority first, then older first (the id
/// breaks ties between commands of the same millisecond).
pub fn delivery_order(a: &Command, b: &Command) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then(a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests;
