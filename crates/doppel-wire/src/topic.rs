//! Every topic Doppel serves or publishes, as one [`Topic`]: [`Topic::parse`] recognises a
//! topic once, and one builder per topic names it.
//!
//! - `$aws/things/{thing}/shadow/...`: AWS IoT Device Shadow requests and answers ([`shadow`]);
//! - `$aws/events/presence/{connected|disconnected}/{clientId}`: AWS lifecycle events;
//! - `$doppel/things/{thing}/commands/{id}`: a command delivered to a device, acknowledged on
//!   `.../{id}/ack` and answered on `.../{id}/ack/accepted` or `.../{id}/ack/rejected`;
//! - `$doppel/things/{thing}/sync`: an edge agent's sync request, answered on `.../sync/accepted`
//!   or `.../sync/rejected`;
//! - `$doppel/events/commands/{thing}/{event}`: command events for applications.
//!
//! The leading `$` keeps all of these out of `#` and `+` subscriptions made at the first level
//! (MQTT 3.1.1 section 4.7.2).
//!
//! [`shadow`]: crate::shadow

use crate::filter;
pub use crate::levels::Verdict;
use crate::levels::{AWS_EVENTS, AWS_THINGS, DOPPEL_EVENTS, DOPPEL_THINGS};
use crate::shadow::{self, ShadowAnswer, ShadowRequest};

/// An AWS lifecycle event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PresenceEvent {
    Connected,
    Disconnected,
}

impl PresenceEvent {
    /// The topic level and `eventType` of the event: `connected` or `disconnected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
        }
    }

    fn from_level(level: &str) -> Option<Self> {
        match level {
            "connected" => Some(Self::Connected),
            "disconnected" => Some(Self::Disconnected),
            _ => None,
        }
    }
}

/// What a topic name is, borrowed from it. The first three are what devices publish and the
/// hub serves; the next six are what the hub publishes; the last four sort everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic<'a> {
    /// A shadow request: `$aws/things/{thing}/shadow[/name/{shadow}]/{get|update|delete}`.
    ShadowRequest(ShadowRequest<'a>),
    /// A device acknowledges a command: `$doppel/things/{thing}/commands/{id}/ack`.
    CommandAck { thing: &'a str, id: &'a str },
    /// An edge agent syncs its replica: `$doppel/things/{thing}/sync`.
    SyncRequest { thing: &'a str },
    /// The hub's answer about a shadow: a request's reply, its delta or its documents.
    ShadowAnswer {
        thing: &'a str,
        shadow: Option<&'a str>,
        answer: ShadowAnswer,
    },
    /// A command delivered to its device: `$doppel/things/{thing}/commands/{id}`.
    CommandDelivery { thing: &'a str, id: &'a str },
    /// The hub's answer to an acknowledgement: `$doppel/things/{thing}/commands/{id}/ack/{verdict}`.
    CommandAckAnswer {
        thing: &'a str,
        id: &'a str,
        verdict: Verdict,
    },
    /// The hub's answer to a sync: `$doppel/things/{thing}/sync/{verdict}`.
    SyncAnswer { thing: &'a str, verdict: Verdict },
    /// A lifecycle event: `$aws/events/presence/{event}/{client_id}`.
    Presence {
        event: PresenceEvent,
        client_id: &'a str,
    },
    /// A command event for applications: `$doppel/events/commands/{thing}/{event}`.
    CommandEvent { thing: &'a str, event: &'a str },
    /// Any other topic where only the hub publishes: below a shadow, a thing's commands or its
    /// sync answers, or among the events, but none the hub names (`.../shadow/list`,
    /// `.../commands//ack`, `$aws/events/other`).
    HubReserved,
    /// Any other topic of one thing: `$aws/things/{thing}/...` or `$doppel/things/{thing}/...`
    /// with at least one level after the thing (which may be empty).
    Thing { thing: &'a str },
    /// Any other `$` topic.
    Reserved,
    /// A topic not starting with `$`: shared within a tenant under the configured rules.
    Ordinary,
}

impl<'a> Topic<'a> {
    /// Recognises a topic name. Names are not validated beyond being non-empty levels (without
    /// wildcards, for shadows); the hub checks them when it turns them into device ids.
    pub fn parse(topic: &'a str) -> Self {
        if !topic.starts_with('$') {
            return Self::Ordinary;
        }
        if let Some(rest) = below(topic, AWS_THINGS) {
            return parse_aws_thing(rest);
        }
        if let Some(rest) = below(topic, DOPPEL_THINGS) {
            return parse_doppel_thing(rest);
        }
        if let Some(rest) = within(topic, AWS_EVENTS) {
            return parse_aws_event(rest);
        }
        if let Some(rest) = within(topic, DOPPEL_EVENTS) {
            return parse_doppel_event(rest);
        }
        Self::Reserved
    }
}

/// The rest of `topic` after `namespace/`.
fn below<'a>(topic: &'a str, namespace: &str) -> Option<&'a str> {
    topic.strip_prefix(namespace)?.strip_prefix('/')
}

/// The rest of `topic` after `namespace/`, or `""` for `namespace` itself.
fn within<'a>(topic: &'a str, namespace: &str) -> Option<&'a str> {
    let rest = topic.strip_prefix(namespace)?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix('/')
}

/// `$aws/things/{rest}`.
fn parse_aws_thing(rest: &str) -> Topic<'_> {
    let mut levels = rest.splitn(3, '/');
    match (levels.next(), levels.next()) {
        (_, Some("shadow")) => match shadow::parse(rest) {
            Some(shadow::Parsed::Request(request)) => Topic::ShadowRequest(request),
            Some(shadow::Parsed::Answer {
                thing,
                shadow,
                answer,
            }) => Topic::ShadowAnswer {
                thing,
                shadow,
                answer,
            },
            None => Topic::HubReserved,
        },
        (Some(thing), Some(_)) => Topic::Thing { thing },
        _ => Topic::Reserved,
    }
}

/// `$doppel/things/{rest}`.
fn parse_doppel_thing(rest: &str) -> Topic<'_> {
    let mut levels = rest.split('/');
    let thing = levels.next().unwrap_or_default();
    let kind = levels.next();
    let levels = (levels.next(), levels.next(), levels.next(), levels.next());
    let named = !thing.is_empty();
    match (kind, levels) {
        (Some("commands"), (Some(id), None, None, None)) if named && !id.is_empty() => {
            Topic::CommandDelivery { thing, id }
        }
        (Some("commands"), (Some(id), Some("ack"), None, None)) if named && !id.is_empty() => {
            Topic::CommandAck { thing, id }
        }
        (Some("commands"), (Some(id), Some("ack"), Some(verdict), None))
            if named && !id.is_empty() =>
        {
            match Verdict::from_level(verdict) {
                Some(verdict) => Topic::CommandAckAnswer { thing, id, verdict },
                None => Topic::HubReserved,
            }
        }
        (Some("commands"), _) => Topic::HubReserved,
        (Some("sync"), (None, ..)) if named => Topic::SyncRequest { thing },
        (Some("sync"), (Some(verdict), None, ..)) if named => match Verdict::from_level(verdict) {
            Some(verdict) => Topic::SyncAnswer { thing, verdict },
            None => Topic::HubReserved,
        },
        // Anything below a thing's sync topic carries the hub's replicated state.
        (Some("sync"), (Some(_), ..)) => Topic::HubReserved,
        (Some(_), _) => Topic::Thing { thing },
        (None, _) => Topic::Reserved,
    }
}

/// `$aws/events/{rest}`.
fn parse_aws_event(rest: &str) -> Topic<'_> {
    let mut levels = rest.split('/');
    match (levels.next(), levels.next(), levels.next(), levels.next()) {
        (Some("presence"), Some(event), Some(client_id), None) if !client_id.is_empty() => {
            match PresenceEvent::from_level(event) {
                Some(event) => Topic::Presence { event, client_id },
                None => Topic::HubReserved,
            }
        }
        _ => Topic::HubReserved,
    }
}

/// `$doppel/events/{rest}`.
fn parse_doppel_event(rest: &str) -> Topic<'_> {
    let mut levels = rest.split('/');
    match (levels.next(), levels.next(), levels.next(), levels.next()) {
        (Some("commands"), Some(thing), Some(event), None)
            if !thing.is_empty() && !event.is_empty() =>
        {
            Topic::CommandEvent { thing, event }
        }
        _ => Topic::HubReserved,
    }
}

/// Where a subscription filter to a `$` topic reaches, as far as who may subscribe to it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterScope<'a> {
    /// It may bring some thing's command topics. `thing` is the filter's thing level, when
    /// more levels follow it.
    Commands { thing: Option<&'a str> },
    /// Within the things' namespaces (`$aws/things/...`, `$doppel/things/...`) otherwise.
    Things { thing: Option<&'a str> },
    /// Within `$aws/events/...` (presence).
    AwsEvents,
    /// Within `$doppel/events/...` (command events).
    DoppelEvents,
    /// Any other `$` filter.
    Reserved,
}

impl<'a> FilterScope<'a> {
    /// Where `filter` reaches; `filter` starts with `$`.
    pub fn of(filter: &'a str) -> Self {
        let levels: Vec<&str> = filter.split('/').collect();
        let thing = match levels.as_slice() {
            [_, _, thing, _, ..] => Some(*thing),
            _ => None,
        };
        let every_things_commands = format!("{DOPPEL_THINGS}/+/commands/#");
        if filter::intersect(filter, &every_things_commands) {
            return Self::Commands { thing };
        }
        if within(filter, AWS_THINGS).is_some() || within(filter, DOPPEL_THINGS).is_some() {
            Self::Things { thing }
        } else if within(filter, AWS_EVENTS).is_some() {
            Self::AwsEvents
        } else if within(filter, DOPPEL_EVENTS).is_some() {
            Self::DoppelEvents
        } else {
            Self::Reserved
        }
    }
}

/// The topic a command is delivered on: `$doppel/things/{thing}/commands/{id}`. With `id` `+`,
/// the filter a device subscribes to for its commands.
pub fn command_delivery(thing: &str, id: &str) -> String {
    format!("{DOPPEL_THINGS}/{thing}/commands/{id}")
}

/// The topic on which a device acknowledges the command `id`.
pub fn command_ack(thing: &str, id: &str) -> String {
    format!("{}/ack", command_delivery(thing, id))
}

/// The topic on which the hub answers an acknowledgement. With `id` `+`, for any command.
pub fn command_ack_answer(thing: &str, id: &str, verdict: Verdict) -> String {
    format!("{}/{}", command_ack(thing, id), verdict.as_str())
}

/// The topic applications follow for one kind of command event (`queued`, `acknowledged`, ...,
/// or `+`) of one thing.
pub fn command_event(thing: &str, event: &str) -> String {
    format!("{DOPPEL_EVENTS}/commands/{thing}/{event}")
}

/// The topic on which an edge agent syncs its thing's replica.
pub fn sync_request(thing: &str) -> String {
    format!("{DOPPEL_THINGS}/{thing}/sync")
}

/// The topic on which the hub answers a sync.
pub fn sync_answer(thing: &str, verdict: Verdict) -> String {
    format!("{}/{}", sync_request(thing), verdict.as_str())
}

/// The topic of a lifecycle event of the client `client_id`. With `+` for either, a filter.
pub fn presence_event(event: &str, client_id: &str) -> String {
    format!("{AWS_EVENTS}/presence/{event}/{client_id}")
}

#[cfg(test)]
mod tests;
