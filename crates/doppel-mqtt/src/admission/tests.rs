use super::*;
use doppel_engine::SystemClock;
use doppel_model::TenantId;
use rmqtt::codec::v3::Connect as ConnectV3;
use rmqtt::codec::v5::Connect as ConnectV5;
use rmqtt::types::Id;

fn tenants() -> Directory {
    Directory {
        anonymous: TenantId::new("default").unwrap(),
        certificate: TenantId::new("certs").unwrap(),
        tokens: None,
    }
}

/// An admission with `live` anonymous connections open (which count toward no principal).
fn admission(max_connections: usize, live: usize) -> Admission {
    let connections = LiveConnections::default();
    for n in 0..live {
        connections.opened(&format!("default/anonymous/|client-{n}"));
    }
    Admission::new(
        tenants(),
        max_connections,
        100,
        Arc::new(connections),
        Arc::new(SystemClock),
    )
}

fn id(client_id: &str, username: Option<&str>) -> Id {
    Id::new(1, 1, None, None, client_id.into(), username.map(Into::into))
}

fn v3(client_id: &str, username: Option<&str>) -> ConnectInfo {
    let packet = ConnectV3 {
        protocol: rmqtt::codec::types::Protocol(4),
        client_id: client_id.into(),
        username: username.map(Into::into),
        ..ConnectV3::default()
    };
    ConnectInfo::V3(id(client_id, username), Box::new(packet))
}

fn v5(client_id: &str, username: Option<&str>) -> ConnectInfo {
    let packet = ConnectV5 {
        client_id: client_id.into(),
        username: username.map(Into::into),
        ..ConnectV5::default()
    };
    ConnectInfo::V5(id(client_id, username), Box::new(packet))
}

fn key(connect: &ConnectInfo) -> String {
    admission(10, 0)
        .decide(connect)
        .unwrap()
        .expect("a known principal has a session key")
        .to_string()
}

#[test]
fn one_client_id_of_two_principals_names_two_sessions() {
    let victim = key(&v3("pump-7", Some("t2/devices/pump-7")));
    let other_tenant = key(&v3("pump-7", Some("t1/devices/pump-7")));
    let same_tenant = key(&v3("pump-7", Some("t2/devices/pump-8")));
    let app = key(&v5("pump-7", Some("t2/apps/dashboard")));
    let anonymous = key(&v3("pump-7", None));
    let keys = [&victim, &other_tenant, &same_tenant, &app, &anonymous];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // The same principal finds its own session again, whatever protocol or SDK suffix.
    assert_eq!(
        key(&v5(
            "pump-7",
            Some("t2/devices/pump-7?SDK=IoTDeviceSDK/Python")
        )),
        victim
    );
}

#[test]
fn a_client_id_cannot_forge_another_principals_key() {
    // "t2/devices/pump|x|pump-7" could only be the key of a device named "pump|x", and the
    // separator is not allowed in device ids.
    let crafted = key(&v3("x|pump-7", Some("t2/devices/pump")));
    assert_eq!(crafted, "t2/devices/pump|x|pump-7");
    assert_eq!(
        admission(10, 0).decide(&v3("pump-7", Some("t2/devices/pump|x"))),
        Ok(None)
    );
}

#[test]
fn nul_in_a_client_id_is_refused_with_the_protocols_reason() {
    let (reason, _) = admission(10, 0).decide(&v3("a\0b", None)).unwrap_err();
    assert_eq!(reason, ConnectAckReason::V3(V3Reason::IdentifierRejected));
    let (reason, _) = admission(10, 0).decide(&v5("a\0b", None)).unwrap_err();
    assert_eq!(
        reason,
        ConnectAckReason::V5(V5Reason::ClientIdentifierNotValid)
    );
}

#[test]
fn mqtt_3_1_is_refused() {
    let ConnectInfo::V3(id, mut packet) = v3("old", None) else {
        unreachable!()
    };
    packet.protocol = rmqtt::codec::types::Protocol(3);
    let (reason, _) = admission(10, 0)
        .decide(&ConnectInfo::V3(id, packet))
        .unwrap_err();
    assert_eq!(
        reason,
        ConnectAckReason::V3(V3Reason::UnacceptableProtocolVersion)
    );
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    assert!(admission(2, 1).decide(&v3("c", None)).is_ok());
    let (reason, message) = admission(2, 2).decide(&v3("c", None)).unwrap_err();
    assert_eq!(reason, ConnectAckReason::V3(V3Reason::ServiceUnavailable));
    assert!(message.contains("mqtt.max_connections = 2"), "{message}");
    let (reason, _) = admission(2, 2).decide(&v5("c", None)).unwrap_err();
    assert_eq!(reason, ConnectAckReason::V5(V5Reason::QuotaExceeded));
}

#[test]
fn sessions_of_one_principal_beyond_its_limit_are_refused() {
    let connections = Arc::new(LiveConnections::default());
    let admission = Admission::new(tenants(), 10, 2, connections.clone(), Arc::new(SystemClock));
    for client_id in ["a", "b"] {
        let key = admission
            .decide(&v3(client_id, Some("t2/devices/pump-7")))
            .expect("the connection is admitted")
            .expect("a known principal has a session key");
        connections.opened(&key);
    }
    let (reason, message) = admission
        .decide(&v3("c", Some("t2/devices/pump-7")))
        .unwrap_err();
    assert_eq!(reason, ConnectAckReason::V3(V3Reason::ServiceUnavailable));
    assert!(
        message.contains("mqtt.max_connections_per_principal = 2"),
        "{message}"
    );
    let (reason, _) = admission
        .decide(&v5("c", Some("t2/devices/pump-7")))
        .unwrap_err();
    assert_eq!(reason, ConnectAckReason::V5(V5Reason::QuotaExceeded));
    // Its own sessions can still be resumed, and other principals are not held back.
    assert!(
        admission
            .decide(&v3("a", Some("t2/devices/pump-7")))
            .is_ok()
    );
    assert!(
        admission
            .decide(&v3("c", Some("t2/devices/pump-8")))
            .is_ok()
    );
}
