use super::*;
use crate::ManualClock;
use doppel_model::DeviceId;

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn key(tenant_name: &str, device: &str) -> TwinKey {
    TwinKey::new(tenant(tenant_name), DeviceId::new(device).unwrap())
}

fn streams(retention: usize, buffer: usize) -> Streams {
    streams_with(
        Arc::new(ManualClock::new(Millis(1_000))),
        StreamLimits {
            retention,
            subscriber_buffer: buffer,
            ..StreamLimits::default()
        },
    )
}

fn streams_with(clock: Arc<ManualClock>, limits: StreamLimits) -> Streams {
    Streams::new(clock, limits)
}

/// Streams released once unwatched for `idle_release`, on a clock the test moves.
fn releasing_after(idle_release: Duration) -> (Arc<ManualClock>, Streams) {
    let clock = Arc::new(ManualClock::new(Millis(1_000)));
    let streams = streams_with(
        clock.clone(),
        StreamLimits {
            idle_release,
            ..StreamLimits::default()
        },
    );
    (clock, streams)
}

fn after(sequence: u64) -> Option<EventId> {
    Some(EventId {
        epoch: 1_000,
        sequence,
    })
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

#[test]
fn the_ring_is_bounded_by_bytes_and_a_resume_from_an_evicted_event_is_told_so() {
    // Each event's JSON is about 1 KiB: room for three of them.
    let cost = |i: usize| {
        serde_json::to_string(&json!({"i": i, "blob": "x".repeat(1000)}))
            .unwrap()
            .len()
    };
    let streams = streams_with(
        Arc::new(ManualClock::new(Millis(1_000))),
        StreamLimits {
            retention: 1_000,
            retention_bytes: 3 * (cost(0) + 60 + EVENT_OVERHEAD_BYTES),
            ..StreamLimits::default()
        },
    );
    streams.open(&tenant("a"), None);
    let events = (0..10)
        .map(|i| {
            (
                EventType::TwinReported,
                key("a", "d"),
                json!({"i": i, "blob": "x".repeat(1000)}),
            )
        })
        .collect();
    streams.append(&tenant("a"), events);
    let resumed = streams.open(&tenant("a"), after(1));
    assert_eq!(resumed.gap, Some(Gap::Expired));
    assert_eq!(sequences(&resumed.backlog), [8, 9, 10]);
    let kept: usize = resumed.backlog.iter().map(|e| event_cost(e)).sum();
    assert!(kept <= streams.limits.retention_bytes, "{kept}");
    assert_eq!(streams.open(&tenant("a"), after(8)).gap, None);
    // One event larger than the whole bound is not kept at all, and says so on resume.
    streams.append(
        &tenant("a"),
        vec![(
            EventType::TwinReported,
            key("a", "d"),
            json!({"blob": "x".repeat(10_000)}),
        )],
    );
    let resumed = streams.open(&tenant("a"), after(10));
    assert_eq!(resumed.gap, Some(Gap::Expired));
    assert!(resumed.backlog.is_empty());
}

#[test]
fn a_stream_nobody_watches_is_released_and_a_later_resume_gets_a_gap_not_reused_ids() {
    let (clock, streams) = releasing_after(Duration::from_secs(600));
    let watched = streams.open(&tenant("w"), None);
    let client = streams.open(&tenant("a"), None);
    push(&streams, "a", 3);
    drop(client);
    assert_eq!(streams.release_idle(), 0, "first seen unwatched now");
    clock.set(Millis(1_000 + 599_999));
    assert_eq!(streams.release_idle(), 0, "not yet");
    clock.set(Millis(1_000 + 600_000));
    assert_eq!(streams.release_idle(), 1);
    assert!(
        !streams.streaming(&tenant("a")),
        "no more events are rendered for it"
    );
    assert!(streams.streaming(&tenant("w")), "a watched stream stays");
    // A client that saw events 1 to 3 comes back: events happened meanwhile that nobody kept.
    let resumed = streams.open(&tenant("a"), after(3));
    assert_eq!(resumed.gap, Some(Gap::Expired));
    assert!(resumed.backlog.is_empty());
    // The new stream goes on numbering: no id is handed out twice.
    push(&streams, "a", 1);
    let next = streams.open(&tenant("a"), after(3));
    assert_eq!(next.gap, Some(Gap::Expired));
    assert_eq!(sequences(&next.backlog), [4]);
    assert_eq!(streams.open(&tenant("a"), after(4)).gap, None);
    drop(watched);
}

#[test]
fn a_stream_watched_again_before_its_time_is_kept() {
    let (clock, streams) = releasing_after(Duration::from_secs(60));
    push(&streams, "a", 2);
    assert_eq!(streams.release_idle(), 0);
    clock.set(Millis(31_000));
    let client = streams.open(&tenant("a"), after(1));
    assert_eq!(sequences(&client.backlog), [2]);
    assert_eq!(streams.release_idle(), 0);
    drop(client);
    clock.set(Millis(70_000));
    assert_eq!(
        streams.release_idle(),
        0,
        "unwatched for less than a minute since it was seen"
    );
    clock.set(Millis(130_000));
    assert_eq!(streams.release_idle(), 1);
}

#[test]
fn a_read_returns_what_is_kept_and_where_to_resume() {
    let streams = streams(3, 100);
    let first = streams.read(&tenant("a"), None);
    assert!(first.events.is_empty(), "the read began the stream");
    assert_eq!(first.last, None, "no id handed out yet");
    assert!(streams.streaming(&tenant("a")));
    push(&streams, "a", 5);
    let all = streams.read(&tenant("a"), None);
    assert_eq!(sequences(&all.events), [3, 4, 5], "every kept event");
    assert_eq!(all.gap, None);
    assert_eq!(all.last, after(5));
    let resumed = streams.read(&tenant("a"), after(4));
    assert_eq!(sequences(&resumed.events), [5]);
    assert_eq!(resumed.gap, None);
    let caught_up = streams.read(&tenant("a"), after(5));
    assert!(caught_up.events.is_empty());
    assert_eq!(caught_up.last, after(5));
    let expired = streams.read(&tenant("a"), after(1));
    assert_eq!(expired.gap, Some(Gap::Expired));
    assert_eq!(sequences(&expired.events), [3, 4, 5]);
}

#[test]
fn reading_keeps_a_stream_from_being_released() {
    let (clock, streams) = releasing_after(Duration::from_secs(60));
    push(&streams, "a", 2);
    assert_eq!(streams.release_idle(), 0, "first seen unwatched now");
    clock.set(Millis(50_000));
    assert_eq!(sequences(&streams.read(&tenant("a"), after(1)).events), [2]);
    clock.set(Millis(70_000));
    assert_eq!(
        streams.release_idle(),
        0,
        "read 20 s ago: seen unwatched now"
    );
    clock.set(Millis(129_000));
    assert_eq!(streams.release_idle(), 0, "not a minute since");
    clock.set(Millis(130_000));
    assert_eq!(streams.release_idle(), 1);
}
