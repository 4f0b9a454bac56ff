use super::*;
use doppel_model::{Connection, Meta};
use serde_json::json;

fn twin(status: ConnectionStatus, site: &str, temp: Value) -> Twin {
    let mut twin = Twin {
        connection: Connection {
            status,
            ..Connection::default()
        },
        meta: Meta {
            device_type: Some("pump".into()),
            tags: [("site".to_owned(), site.to_owned())].into(),
            ..Meta::default()
        },
        ..Twin::default()
    };
    twin.reported.state.insert("temp".into(), temp);
    twin
}

fn key(device: &str) -> TwinKey {
    TwinKey::new(TenantId::new("t").unwrap(), DeviceId::new(device).unwrap())
}

fn ids(devices: Option<BTreeSet<DeviceId>>) -> Vec<String> {
    devices
        .expect("indexed")
        .into_iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn a_twin_answers_every_path_of_the_language() {
    let twin = twin(ConnectionStatus::Connected, "berlin", json!(31));
    let query = doppel_query::parse(
        "tags.site = 'berlin' AND connection.status = 'CONNECTED' AND reported.temp > 30 \
         AND device_type LIKE 'pu%' AND NOT EXISTS firmware_version AND delta IS EMPTY",
    )
    .unwrap();
    assert!(query.matches(&TwinFields(&twin)));
    let other = doppel_query::parse("reported.temp.inner = 1").unwrap();
    assert!(!other.matches(&TwinFields(&twin)));
}

#[test]
fn an_index_entry_is_walked_a_chunk_at_a_time_in_device_order() {
    let tenant = TenantId::new("t").unwrap();
    let mut index = FleetIndex::new(IndexedPaths::default());
    index.mark_ready();
    for i in (0..10).rev() {
        let site = if i % 3 == 0 { "paris" } else { "berlin" };
        index.update(
            &key(&format!("d{i}")),
            Some(&twin(ConnectionStatus::Connected, site, json!(1))),
        );
    }
    let site = Path::Tag("site".into());
    let values = [json!("berlin"), json!("paris")];
    let mut seen = Vec::new();
    let mut after: Option<DeviceId> = None;
    for _ in 0..20 {
        let walked = index
            .devices_after(&tenant, &site, &values, after.as_ref(), 3)
            .expect("indexed")
            .settle();
        seen.extend(walked.devices.iter().map(ToString::to_string));
        match walked.frontier {
            Some(frontier) => after = Some(frontier),
            None => break,
        }
    }
    let all: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
    assert_eq!(seen, all, "two entries merged, each read 3 at a time");
}

#[test]
fn changes_move_a_twin_between_index_entries() {
    let tenant = TenantId::new("t").unwrap();
    let temp = Path::Reported(vec!["temp".into()]);
    let mut index = FleetIndex::new(IndexedPaths {
        state: vec![temp.clone()],
    });
    index.mark_ready();
    index.update(
        &key("a"),
        Some(&twin(ConnectionStatus::Connected, "berlin", json!(1))),
    );
    index.update(
        &key("b"),
        Some(&twin(ConnectionStatus::Disconnected, "berlin", json!(1.0))),
    );
    let site = Path::Tag("site".into());
    assert_eq!(
        ids(index.lookup(&tenant, &site, &[json!("berlin")])),
        ["a", "b"]
    );
    assert_eq!(
        ids(index.lookup(&tenant, &temp, &[json!(1)])),
        ["a", "b"],
        "1 and 1.0 are one number"
    );
    index.update(
        &key("a"),
        Some(&twin(ConnectionStatus::Connected, "paris", json!(2))),
    );
    assert_eq!(ids(index.lookup(&tenant, &site, &[json!("berlin")])), ["b"]);
    assert_eq!(
        ids(index.lookup(&tenant, &site, &[json!("berlin"), json!("paris")])),
        ["a", "b"]
    );
    assert_eq!(
        index.count(&tenant, &Path::ConnectionStatus, &[json!("CONNECTED")]),
        Some(1)
    );
    index.update(&key("b"), None);
    assert!(
        ids(index.lookup(&tenant, &site, &[json!("berlin")])).is_empty(),
        "a deleted twin leaves the index"
    );
    assert_eq!(
        index.lookup(&tenant, &Path::Reported(vec!["other".into()]), &[json!(1)]),
        None,
        "unconfigured state paths are not indexed"
    );
    let other_tenant = TenantId::new("u").unwrap();
    assert!(
        ids(index.lookup(&other_tenant, &site, &[json!("paris")])).is_empty(),
        "tenants never share entries"
    );
}
