use super::*;
use crate::{Engine, EngineConfig};
use doppel_model::command::{CommandResult, CommandStatus};
use doppel_model::{DeviceId, Millis, TenantId};
use doppel_store::{HistoryBuckets, MemoryStore};
use serde_json::json;

/// Time as Tokio's (paused) clock tells it, so that the test runtime skips every wait and the
/// command timer and "now" agree.
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Millis {
        Millis(1_000_000 + i64::try_from(self.0.elapsed().as_millis()).unwrap())
    }
}

fn key(device: &str) -> TwinKey {
    TwinKey::new(TenantId::new("t").unwrap(), DeviceId::new(device).unwrap())
}

fn limits() -> CommandLimits {
    CommandLimits {
        ack_timeout: Duration::from_secs(30),
        max_attempts: 2,
        max_open: 4,
        ..CommandLimits::default()
    }
}

fn request(kind: &str, priority: i64, ttl: Duration, idempotency_key: Option<&str>) -> NewCommand {
    NewCommand {
        kind: kind.into(),
        payload: json!({"kind": kind}),
        priority,
        ttl,
        idempotency_key: idempotency_key.map(String::from),
    }
}

async fn start(store: &MemoryStore) -> Engine {
    let config = EngineConfig {
        shards: 2,
        commands: limits(),
        ..EngineConfig::default()
    };
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    Engine::start(Arc::new(store.clone()), clock, config)
        .await
        .unwrap()
        .0
}

fn kinds(commands: &[Arc<Command>]) -> Vec<&str> {
    commands
        .iter()
        .map(|command| command.kind.as_str())
        .collect()
}

async fn next_event(
    events: &mut mpsc::Receiver<CommandEvent>,
    kind: CommandEventKind,
) -> CommandEvent {
    loop {
        let event = events.recv().await.unwrap();
        if event.kind == kind {
            return event;
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn commands_go_out_by_priority_then_age_and_expired_ones_never() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let engine = start(&store).await;
    let commands = engine.commands();
    let mut events = commands.follow(64);
    let device = key("pump");
    for (kind, priority, ttl) in [
        ("low", 0, HOUR),
        ("high", 5, HOUR),
        ("short", 9, Duration::from_secs(1)),
        ("low-later", 0, HOUR),
    ] {
        let queued = commands
            .queue(device.clone(), request(kind, priority, ttl, None))
            .await
            .unwrap();
        assert!(queued.created);
        assert_eq!(queued.command.status, CommandStatus::Pending);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The timer expires it: nothing touched the queue since it was queued.
    let expired = next_event(&mut events, CommandEventKind::Expired).await;
    assert_eq!(expired.command.kind, "short");
    let delivered = commands.deliver(device.clone(), false, 10).await.unwrap();
    assert_eq!(kinds(&delivered), ["high", "low", "low-later"]);
    assert!(
        delivered
            .iter()
            .all(|c| c.status == CommandStatus::Delivered && c.attempts == 1)
    );
    let stored = commands
        .list(
            &device,
            CommandQuery {
                status: Some(CommandStatus::Expired),
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, "short");
    assert_eq!(
        stored[0]
            .transitions
            .iter()
            .map(|t| t.status)
            .collect::<Vec<_>>(),
        [CommandStatus::Pending, CommandStatus::Expired]
    );
}

#[tokio::test(start_paused = true)]
async fn idempotency_keys_limits_and_final_states_are_enforced() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let engine = start(&store).await;
    let commands = engine.commands();
    let device = key("pump");
    let first = commands
        .queue(device.clone(), request("reboot", 0, HOUR, Some("k1")))
        .await
        .unwrap();
    let again = commands
        .queue(device.clone(), request("reboot", 0, HOUR, Some("k1")))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.command.id, first.command.id);
    for i in 0..3 {
        commands
            .queue(device.clone(), request(&format!("c{i}"), 0, HOUR, None))
            .await
            .unwrap();
    }
    assert!(matches!(
        commands
            .queue(device.clone(), request("one-too-many", 0, HOUR, None))
            .await,
        Err(EngineError::Command(CommandError::TooManyOpen { limit: 4 }))
    ));
    assert!(
        commands
            .queue(key("other"), request("x", 0, HOUR, None))
            .await
            .is_ok(),
        "the limit is per device"
    );
    let acknowledged = commands
        .acknowledge(
            device.clone(),
            first.command.id.clone(),
            CommandResult::Succeeded,
            Some(json!({"uptime": 3})),
        )
        .await
        .unwrap();
    assert_eq!(acknowledged.status, CommandStatus::Acknowledged);
    assert_eq!(acknowledged.result, Some(CommandResult::Succeeded));
    // Final now: the key still answers with it; it can be neither canceled nor acknowledged.
    let replay = commands
        .queue(device.clone(), request("reboot", 0, HOUR, Some("k1")))
        .await
        .unwrap();
    assert!(!replay.created);
    assert_eq!(replay.command.status, CommandStatus::Acknowledged);
    assert!(matches!(
        commands
            .cancel(device.clone(), first.command.id.clone())
            .await,
        Err(EngineError::Command(CommandError::NotAllowed {
            status: CommandStatus::Acknowledged,
            ..
        }))
    ));
    assert!(matches!(
        commands.cancel(device.clone(), "no-such-id".into()).await,
        Err(EngineError::Command(CommandError::NotFound { .. }))
    ));
    assert!(
        commands
            .queue(device.clone(), request("room-again", 0, HOUR, None))
            .await
            .is_ok(),
        "a final command frees its place"
    );
    // Once its command's time to live is over, a key may queue a new command.
    tokio::time::sleep(HOUR).await;
    let fresh = commands
        .queue(device.clone(), request("reboot", 0, HOUR, Some("k1")))
        .await
        .unwrap();
    assert!(fresh.created);
    assert_ne!(fresh.command.id, first.command.id);
}

#[tokio::test(start_paused = true)]
async fn unacknowledged_deliveries_come_due_again_then_fail() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let engine = start(&store).await;
    let commands = engine.commands();
    let mut events = commands.follow(64);
    let device = key("pump");
    let queued = commands
        .queue(device.clone(), request("photo", 0, HOUR, None))
        .await
        .unwrap();
    let first = commands.deliver(device.clone(), false, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        commands
            .deliver(device.clone(), false, 10)
            .await
            .unwrap()
            .is_empty(),
        "not again before the acknowledgement timeout"
    );
    let due = next_event(&mut events, CommandEventKind::Due).await;
    assert_eq!(due.command.id, queued.command.id);
    let second = commands.deliver(device.clone(), false, 10).await.unwrap();
    assert_eq!(
        second[0].id, queued.command.id,
        "the same id goes out again"
    );
    assert_eq!(second[0].attempts, 2);
    let failed = next_event(&mut events, CommandEventKind::Failed).await;
    assert_eq!(failed.command.status, CommandStatus::Failed);
    assert!(
        commands
            .deliver(device.clone(), true, 10)
            .await
            .unwrap()
            .is_empty(),
        "a failed command is never delivered"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reconnected_device_gets_in_flight_commands_again() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let engine = start(&store).await;
    let commands = engine.commands();
    let device = key("pump");
    commands
        .queue(device.clone(), request("photo", 0, HOUR, None))
        .await
        .unwrap();
    assert_eq!(
        commands
            .deliver(device.clone(), false, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let again = commands.deliver(device.clone(), true, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].attempts, again[0].reconnect_deliveries),
        (1, 1),
        "a reconnect's repeat uses no attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_acknowledgement_of_a_failed_command_is_kept_announced_and_durable() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let device = key("pump");
    let id = {
        let engine = start(&store).await;
        let commands = engine.commands();
        let mut events = commands.follow(64);
        let id = commands
            .queue(device.clone(), request("photo", 0, HOUR, None))
            .await
            .expect("the command is queued")
            .command
            .id
            .clone();
        commands
            .deliver(device.clone(), false, 10)
            .await
            .expect("the command is due");
        next_event(&mut events, CommandEventKind::Due).await;
        commands
            .deliver(device.clone(), false, 10)
            .await
            .expect("the command is due");
        next_event(&mut events, CommandEventKind::Failed).await;

        let late = commands
            .acknowledge(
                device.clone(),
                id.clone(),
                CommandResult::Succeeded,
                Some(json!({"photo": "p1.jpg"})),
            )
            .await
            .expect("the late acknowledgement is kept");
        assert_eq!(late.status, CommandStatus::Failed);
        assert_eq!(late.result, Some(CommandResult::Succeeded));
        assert!(late.acknowledged_late_at.is_some());
        let announced = next_event(&mut events, CommandEventKind::AcknowledgedLate).await;
        assert_eq!(announced.command.id, id);
        assert!(matches!(
            commands
                .acknowledge(device.clone(), id.clone(), CommandResult::Failed, None)
                .await,
            Err(EngineError::Command(CommandError::NotAllowed {
                status: CommandStatus::Failed,
                ..
            }))
        ));
        id
    };
    let engine = start(&store).await;
    let stored = engine
        .commands()
        .get(&device, &id)
        .await
        .expect("the store answers")
        .expect("the command is kept");
    assert_eq!(stored.status, CommandStatus::Failed);
    assert_eq!(stored.response, Some(json!({"photo": "p1.jpg"})));
    assert!(
        stored.acknowledged_late_at.is_some(),
        "the late acknowledgement is durable"
    );
}

#[tokio::test(start_paused = true)]
async fn queues_survive_a_restart() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let device = key("pump");
    let (open, acknowledged) = {
        let engine = start(&store).await;
        let commands = engine.commands();
        let open = commands
            .queue(device.clone(), request("open", 1, HOUR, Some("k-open")))
            .await
            .unwrap()
            .command;
        let done = commands
            .queue(device.clone(), request("done", 0, HOUR, Some("k-done")))
            .await
            .unwrap()
            .command;
        commands
            .acknowledge(
                device.clone(),
                done.id.clone(),
                CommandResult::Rejected,
                None,
            )
            .await
            .unwrap();
        (open, done)
    };
    let engine = start(&store).await;
    let commands = engine.commands();
    let replay = commands
        .queue(device.clone(), request("done", 0, HOUR, Some("k-done")))
        .await
        .unwrap();
    assert!(!replay.created, "idempotency keys survive");
    assert_eq!(replay.command.result, Some(CommandResult::Rejected));
    assert_eq!(replay.command.id, acknowledged.id);
    let delivered = commands.deliver(device.clone(), false, 10).await.unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].id, open.id);
    assert_eq!(
        commands
            .get(&device, &open.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        CommandStatus::Delivered
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_wakes_when_a_command_is_queued() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let engine = start(&store).await;
    let commands = engine.commands().clone();
    let device = key("pump");
    assert_eq!(
        commands
            .next(device.clone(), Duration::from_secs(5))
            .await
            .unwrap(),
        None,
        "nothing queued: the poll ends empty when its wait is over"
    );
    let poll = tokio::spawn({
        let (commands, device) = (commands.clone(), device.clone());
        async move { commands.next(device, Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    commands
        .queue(key("someone-else"), request("other", 0, HOUR, None))
        .await
        .unwrap();
    let queued = commands
        .queue(device.clone(), request("mine", 0, HOUR, None))
        .await
        .unwrap();
    let got = poll.await.unwrap().unwrap().unwrap();
    assert_eq!(got.id, queued.command.id);
    assert_eq!(got.status, CommandStatus::Delivered);
}

#[tokio::test(start_paused = true)]
async fn ending_long_polls_answers_them_at_once() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let engine = start(&store).await;
    let commands = engine.commands().clone();
    let started = tokio::time::Instant::now();
    let poll = tokio::spawn({
        let commands = commands.clone();
        async move { commands.next(key("pump"), Duration::from_secs(60)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    commands.end_long_polls();
    assert_eq!(poll.await.unwrap().unwrap(), None);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the poll did not wait out its minute"
    );
    assert_eq!(
        commands
            .next(key("pump"), Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn settled_commands_are_dropped_after_the_retention_and_open_ones_kept() {
    let store = MemoryStore::new(HistoryBuckets::new(1000));
    let config = EngineConfig {
        shards: 1,
        history_retention: Duration::from_secs(2),
        retention_check_interval: Duration::from_secs(1),
        commands: CommandLimits {
            max_ttl: Duration::from_secs(3),
            ..limits()
        },
        ..EngineConfig::default()
    };
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    let engine = Engine::start(Arc::new(store.clone()), clock, config)
        .await
        .unwrap()
        .0;
    let commands = engine.commands();
    let device = key("pump");
    let canceled = commands
        .queue(device.clone(), request("old", 0, HOUR, None))
        .await
        .unwrap()
        .command;
    commands
        .cancel(device.clone(), canceled.id.clone())
        .await
        .unwrap();
    let open = commands
        .queue(device.clone(), request("open", 0, HOUR, None))
        .await
        .unwrap()
        .command;
    assert!(commands.get(&device, &canceled.id).await.unwrap().is_some());
    // Kept for the longer of the history retention and the longest time to live (3 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(commands.get(&device, &canceled.id).await.unwrap(), None);
    assert!(commands.get(&device, &open.id).await.unwrap().is_some());
}

#[test]
fn the_command_metric_labels_are_the_durable_event_names() {
    assert_eq!(
        CommandEventKind::CHANGES.map(CommandEventKind::name),
        crate::metric::COMMAND_EVENTS
    );
}
