//! Replica sync messages: what an edge agent publishes on a thing's sync topic
//! ([`crate::topic::sync_request`]) and what the hub answers on `.../sync/accepted`.
//!
//! An agent sends the changes it made while away, in the order it made them, each a
//! [`ReplicaDelta`] with its vector clock; the hub merges each as its own durable change and
//! answers with the twin's whole replicated state for the agent to merge in turn. An empty
//! `changes` fetches the state. Merging is idempotent, so an agent that did not hear the answer
//! sends the same changes again.

use doppel_model::replica::ReplicaDelta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most changes one sync request may carry, for the agent that sends and the hub that checks
/// alike: an agent that was away for long sends its backlog in several requests, so no request
/// holds a twin's shard for long.
pub const MAX_SYNC_CHANGES: usize = 256;

/// A sync request. The agent sends borrowed changes (`SyncRequest<&ReplicaDelta>`), the hub
/// reads owned ones.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest<C = ReplicaDelta> {
    /// Echoed in the answer, so the agent can tell which request it answers.
    #[serde(default)]
    pub token: Value,
    /// At most [`MAX_SYNC_CHANGES`].
    #[serde(default = "Vec::new")]
    pub changes: Vec<C>,
}

/// The hub's answer to an accepted sync.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncAccepted {
    /// How many of the request's changes were merged (none into a twin that does not exist).
    #[serde(default)]
    pub merged: usize,
    /// The twin's whole replicated state, meta included (the agent's rules follow the device
    /// type, and meta is set on the hub only); `None` when there is no such twin.
    #[serde(default)]
    pub state: Option<ReplicaDelta>,
    /// The request's token.
    #[serde(default)]
    pub token: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_default_their_fields_and_refuse_unknown_ones() {
        let request: SyncRequest =
            serde_json::from_value(json!({})).expect("an empty request is a fetch");
        assert_eq!(request.token, Value::Null);
        assert!(request.changes.is_empty());
        assert!(serde_json::from_value::<SyncRequest>(json!({"chnages": []})).is_err());
    }

    #[test]
    fn what_the_agent_sends_the_hub_reads() {
        let change = ReplicaDelta {
            origin: "edge-1".to_owned(),
            ..ReplicaDelta::default()
        };
        let sent = SyncRequest {
            token: json!(7),
            changes: vec![&change],
        };
        let text = serde_json::to_string(&sent).expect("a request serialises");
        let read: SyncRequest = serde_json::from_str(&text).expect("the hub reads it");
        assert_eq!(read.token, json!(7));
        assert_eq!(read.changes, vec![change]);
    }

    #[test]
    fn answers_name_their_fields_as_the_wire_spells_them() {
        let answer = SyncAccepted {
            merged: 2,
            state: None,
            token: json!(7),
        };
        assert_eq!(
            serde_json::to_value(&answer).expect("an answer serialises"),
            json!({"merged": 2, "state": null, "token": 7})
        );
    }
}
