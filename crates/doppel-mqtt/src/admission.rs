//! Which connections the broker takes, decided on the CONNECT packet before any password is
//! checked, and the key each session is kept under.
//!
//! rmqtt keeps sessions by client id alone, one namespace for the whole broker. Client ids are
//! chosen by clients and public (presence events carry them), so a session there could be
//! resumed or kicked out by anyone who names its client id. Here a session is kept under its
//! principal and client id together ([`Identity::session_key`]): a client can resume or take
//! over only a session of its own principal, and the client's own id is unchanged wherever it
//! sees or is shown it.

use crate::connections::LiveConnections;
use crate::identity::{self, Directory};
use doppel_engine::Clock;
use rmqtt::codec::v3::ConnectAckReason as V3Reason;
use rmqtt::codec::v5::ConnectAckReason as V5Reason;
use rmqtt::types::{ClientId, ConnectAckReason, ConnectInfo};
use std::sync::Arc;

/// MQTT 3.1 (protocol level 3). AWS IoT takes 3.1.1 and 5 only, and rmqtt cannot tell a 3.1
/// CONNECT named `MQIsdp` from a malformed one named `MQTT`, so level 3 is refused outright.
const MQTT_3_1: u8 = 3;

/// What a refused CONNECT is answered with, and the line logged for it.
pub type Refusal = (ConnectAckReason, String);

/// The broker's decision on each CONNECT (installed as rmqtt's connect admission).
pub struct Admission {
    directory: Directory,
    /// Most live connections over every listener; beyond it CONNECT is refused.
    max_connections: usize,
    /// Most sessions one principal holds live connections under; beyond it CONNECT is refused.
    max_connections_per_principal: usize,
    /// Live connections now: raised by the connected hook, lowered by the disconnected hook.
    live: Arc<LiveConnections>,
    /// The engine's clock, which token logins are checked by.
    clock: Arc<dyn Clock>,
}

impl Admission {
    pub fn new(
        directory: Directory,
        max_connections: usize,
        max_connections_per_principal: usize,
        live: Arc<LiveConnections>,
        clock: Arc<dyn Clock>,
    ) -> Admission {
        Admission {
            directory,
            max_connections,
            max_connections_per_principal,
            live,
            clock,
        }
    }

    /// Refuses what MQTT forbids or the hub cannot take; otherwise names the session's key
    /// (`None` for a client whose claimed identity is unknown: authentication refuses it).
    pub fn decide(&self, connect: &ConnectInfo) -> Result<Option<ClientId>, Refusal> {
        let v5 = matches!(connect, ConnectInfo::V5(..));
        if let ConnectInfo::V3(_, packet) = connect
            && packet.protocol.0 == MQTT_3_1
        {
            return Err((
                ConnectAckReason::V3(V3Reason::UnacceptableProtocolVersion),
                "MQTT 3.1 is not supported: connect with MQTT 3.1.1 or 5".into(),
            ));
        }
        // MQTT-1.5.3-2: a UTF-8 string must not hold U+0000.
        if connect.client_id().contains('\0') {
            let reason = if v5 {
                ConnectAckReason::V5(V5Reason::ClientIdentifierNotValid)
            } else {
                ConnectAckReason::V3(V3Reason::IdentifierRejected)
            };
            return Err((reason, "the client id holds a NUL character".into()));
        }
        if self.live.total() >= self.max_connections {
            return Err((
                quota_exceeded(v5),
                format!(
                    "the hub holds mqtt.max_connections = {} connections",
                    self.max_connections
                ),
            ));
        }
        let Some(identity) = identity::identify(connect, &self.directory, self.clock.now()) else {
            return Ok(None);
        };
        let session_key = identity.session_key(connect.client_id());
        if !self
            .live
            .admits(&session_key, self.max_connections_per_principal)
        {
            return Err((
                quota_exceeded(v5),
                format!(
                    "{} holds mqtt.max_connections_per_principal = {} sessions",
                    identity.principal, self.max_connections_per_principal
                ),
            ));
        }
        Ok(Some(ClientId::from(session_key)))
    }
}

/// The answer to a CONNECT beyond a connection limit. MQTT 3.1.1 has no quota reason; server
/// unavailable tells its clients to come back later, as a full hub is.
fn quota_exceeded(v5: bool) -> ConnectAckReason {
    if v5 {
        ConnectAckReason::V5(V5Reason::QuotaExceeded)
    } else {
        ConnectAckReason::V3(V3Reason::ServiceUnavailable)
    }
}

#[cfg(test)]
mod tests;
