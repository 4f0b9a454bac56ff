use super::*;
use doppel_model::DeviceId;

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn key(tenant_name: &str, device: &str) -> TwinKey {
    TwinKey::new(tenant(tenant_name), DeviceId::new(device).unwrap())
}

fn streams(retention: usize, buffer: usize) -> Streams {
    Streams::new(Millis(1_000), retention, buffer)
}

/// Appends `count` events to a tenant's stream, which begins (as a client's first subscription
/// would begin it) if it has not.
fn push(streams: &Streams, tenant_name: &str, count: usize) {
    if !streams.streaming(&tenant(tenant_name)) {
        streams.open(&tenant(tenant_name), None);
    }
    let events = (0..count)
        .map(|i| {
            (
                EventType::TwinReported,
                key(tenant_name, "d"),
                json!({"i": i}),
            )
        })
        .collect();
    streams.append(&tenant(tenant_name), events);
}

fn sequences(events: &[Arc<StreamEvent>]) -> Vec<u64> {
    events.iter().map(|e| e.id.sequence).collect()
}

#[test]
fn each_tenant_numbers_its_own_events_and_resumes_exactly_after_the_last_one_seen() {
    let streams = streams(100, 100);
    push(&streams, "a", 3);
    push(&streams, "b", 2);
    push(&streams, "a", 2);
    let from_two = streams.open(
        &tenant("a"),
        Some(EventId {
            epoch: 1_000,
            sequence: 2,
        }),
    );
    assert_eq!(sequences(&from_two.backlog), [3, 4, 5]);
    assert_eq!(from_two.gap, None);
    let b = streams.open(
        &tenant("b"),
        Some(EventId {
            epoch: 1_000,
            sequence: 2,
        }),
    );
    assert!(b.backlog.is_empty(), "nothing after b's last event");
    let data: Value = serde_json::from_str(&from_two.backlog[0].data).unwrap();
    assert_eq!(data["id"], "1000-3");
    assert_eq!(data["type"], "twin.reported");
    assert_eq!(data["device_id"], "d");
    assert_eq!(data["i"], 2);
}

#[tokio::test]
async fn the_live_feed_continues_the_backlog_without_a_gap_or_a_duplicate() {
    let streams = streams(100, 100);
    push(&streams, "a", 3);
    let mut opened = streams.open(
        &tenant("a"),
        Some(EventId {
            epoch: 1_000,
            sequence: 1,
        }),
    );
    push(&streams, "a", 2);
    let mut seen = sequences(&opened.backlog);
    while let Ok(event) = opened.live.try_recv() {
        seen.push(event.id.sequence);
    }
    assert_eq!(seen, [2, 3, 4, 5]);
}

#[test]
fn a_resume_beyond_what_is_kept_says_so() {
    let streams = streams(3, 100);
    push(&streams, "a", 5);
    let expired = streams.open(
        &tenant("a"),
        Some(EventId {
            epoch: 1_000,
            sequence: 1,
        }),
    );
    assert_eq!(expired.gap, Some(Gap::Expired));
    assert_eq!(sequences(&expired.backlog), [3, 4, 5]);
    let restarted = streams.open(
        &tenant("a"),
        Some(EventId {
            epoch: 999,
            sequence: 4,
        }),
    );
    assert_eq!(restarted.gap, Some(Gap::EarlierEpoch));
    let ahead = streams.open(
        &tenant("a"),
        Some(EventId {
            epoch: 1_000,
            sequence: 9,
        }),
    );
    assert_eq!(ahead.gap, Some(Gap::Unknown));
    assert!(ahead.backlog.is_empty());
    let exact = streams.open(
        &tenant("a"),
        Some(EventId {
            epoch: 1_000,
            sequence: 2,
        }),
    );
    assert_eq!(exact.gap, None, "event 3 is still kept");
    assert_eq!(sequences(&exact.backlog), [3, 4, 5]);
}

#[test]
fn a_subscriber_that_falls_behind_learns_it_and_appending_never_waits() {
    let streams = streams(100, 4);
    let mut opened = streams.open(&tenant("a"), None);
    push(&streams, "a", 10);
    assert!(matches!(
        opened.live.try_recv(),
        Err(broadcast::error::TryRecvError::Lagged(_))
    ));
}

#[test]
fn ids_and_type_patterns_parse() {
    assert_eq!(
        EventId::parse("1764-42"),
        Some(EventId {
            epoch: 1764,
            sequence: 42
        })
    );
    for bad in ["", "42", "a-1", "1-", "-1", "1-2-3"] {
        assert_eq!(EventId::parse(bad), None, "{bad}");
    }
    let queued = EventType::Command(CommandEventKind::Queued);
    assert!(queued.matches("command.*"));
    assert!(queued.matches("command.queued"));
    assert!(!queued.matches("twin.*"));
    assert!(!EventType::TwinDelta.matches("twin.del"));
    assert!(!EventType::TwinDelta.matches("twin"));
    assert!(
        EventType::NAMES
            .iter()
            .all(|name| name.starts_with("twin.") || name.starts_with("command."))
    );
}

#[test]
fn events_of_a_traced_change_carry_its_traceparent() {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut twin = Twin::default();
    twin.desired.state.insert("on".into(), json!(true));
    twin.desired.version = 1;
    let change = |trace| TwinChange {
        key: key("a", "d"),
        kind: HistoryKind::Desired,
        previous: None,
        current: Arc::new(twin.clone()),
        client_token: None,
        trace,
    };
    let traced = twin_events(&change(Some(traceparent.parse().unwrap())));
    let types: Vec<EventType> = traced.iter().map(|(kind, _, _)| *kind).collect();
    assert_eq!(types, [EventType::TwinDesired, EventType::TwinDelta]);
    for (_, _, body) in &traced {
        assert_eq!(body["traceparent"], json!(traceparent), "{body}");
    }
    for (_, _, body) in twin_events(&change(None)) {
        assert!(body.get("traceparent").is_none(), "{body}");
    }
}
