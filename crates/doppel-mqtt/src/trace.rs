//! W3C trace context over MQTT 5: a `traceparent` user property on a shadow request names the
//! trace its work joins, and the messages that work causes carry the same property to MQTT 5
//! subscribers (MQTT 3.1.1 has no properties; those subscribers get the messages without it).

use doppel_model::TraceParent;
use rmqtt::codec::v5::PublishProperties;

/// The user property's name, the same as the W3C HTTP header's.
pub(crate) use doppel_model::trace::TRACEPARENT;

/// The trace context among a PUBLISH's user properties. A missing or invalid value gives
/// `None`: W3C says a receiver then starts a new trace, so it never fails the request.
pub(crate) fn traceparent(properties: Option<&PublishProperties>) -> Option<TraceParent> {
    properties?
        .user_properties
        .iter()
        .find(|(name, _)| &**name == TRACEPARENT)
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// The properties of a message the hub sends on behalf of a traced change.
pub(crate) fn properties(trace: Option<&TraceParent>) -> Option<PublishProperties> {
    trace.map(|trace| PublishProperties {
        user_properties: vec![(TRACEPARENT.into(), trace.to_string().into())],
        ..PublishProperties::default()
    })
}

#[cfg(test)]
mod tests;
