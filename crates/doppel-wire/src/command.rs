//! Command messages: what the hub delivers on a thing's command topic
//! ([`crate::topic::command_delivery`]) and what a device acknowledges on `.../ack`
//! ([`crate::topic::command_ack`]). The hub reads an acknowledgement with the model's checks
//! (`doppel_model::command::parse_acknowledgement`), which name the field that is wrong.

use doppel_model::Millis;
use doppel_model::command::{Command, CommandResult, result_name};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A command as a device receives it: what it needs to act, its attempt, and whether it is a
/// repeat (a repeat after a reconnect uses no attempt, so the attempt alone cannot tell).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandDelivery {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Value,
    pub priority: i64,
    /// RFC 3339, as the HTTP API shows instants.
    pub created_at: String,
    /// RFC 3339; the device need not act on it after this.
    pub expires_at: String,
    pub attempt: u32,
    pub repeat: bool,
}

impl CommandDelivery {
    /// The delivery of `command` as it stands.
    pub fn of(command: &Command) -> Self {
        Self {
            id: command.id.clone(),
            kind: command.kind.clone(),
            payload: command.payload.clone(),
            priority: command.priority,
            created_at: command.created_at.to_rfc3339(),
            expires_at: command.expires_at.to_rfc3339(),
            attempt: command.attempts,
            repeat: command.attempts > 1 || command.reconnect_deliveries > 0,
        }
    }

    /// When the command expires; `None` when the delivery does not say in RFC 3339.
    pub fn expires(&self) -> Option<Millis> {
        Millis::parse_rfc3339(&self.expires_at).ok()
    }
}

/// A device's acknowledgement, `{"status": "SUCCEEDED" | "FAILED" | "REJECTED", "response"}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommandAck<'a> {
    pub status: &'static str,
    /// `null` when the device said nothing more.
    pub response: Option<&'a Value>,
}

impl<'a> CommandAck<'a> {
    pub fn new(result: CommandResult, response: Option<&'a Value>) -> Self {
        Self {
            status: result_name(result),
            response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_model::command::parse_acknowledgement;
    use serde_json::json;

    #[test]
    fn a_delivery_reads_back_as_it_was_sent_and_names_its_fields_as_devices_see_them() {
        let delivery = CommandDelivery {
            id: "c-1".into(),
            kind: "reboot".into(),
            payload: json!({"delay": 5}),
            priority: 2,
            created_at: Millis(1_000).to_rfc3339(),
            expires_at: Millis(61_000).to_rfc3339(),
            attempt: 1,
            repeat: false,
        };
        let sent = serde_json::to_value(&delivery).expect("a delivery encodes");
        assert_eq!(sent["type"], "reboot");
        assert_eq!(sent["expires_at"], "1970-01-01T00:01:01.000Z");
        let read: CommandDelivery = serde_json::from_value(sent).expect("a delivery decodes");
        assert_eq!(read, delivery);
        assert_eq!(read.expires(), Some(Millis(61_000)));
    }

    #[test]
    fn an_ack_is_what_the_hub_reads() {
        let response = json!({"ok": true});
        for (result, response) in [
            (CommandResult::Succeeded, Some(&response)),
            (CommandResult::Rejected, None),
        ] {
            let sent =
                serde_json::to_value(CommandAck::new(result, response)).expect("an ack encodes");
            assert_eq!(
                parse_acknowledgement(&sent).expect("the hub reads it"),
                (result, response.cloned())
            );
        }
    }
}
