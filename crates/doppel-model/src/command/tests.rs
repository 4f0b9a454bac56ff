use super::*;
use proptest::prelude::*;
use serde_json::json;

fn limits() -> CommandLimits {
    CommandLimits {
        max_ttl: Duration::from_secs(3600),
        default_ttl: Duration::from_secs(60),
        max_payload_bytes: 64,
        ack_timeout: Duration::from_secs(10),
        max_attempts: 2,
        max_reconnect_deliveries: 3,
        max_open: 3,
    }
}

fn parse(body: Value) -> Result<NewCommand, CommandError> {
    NewCommand::from_json(&body, &limits(), &Limits::default())
}

fn command(priority: i64, ttl_seconds: u64, at: i64, id: &str) -> Command {
    let request =
        parse(json!({"type": "reboot", "priority": priority, "ttl_seconds": ttl_seconds})).unwrap();
    Command::new(id.into(), request, Millis(at))
}

#[test]
fn requests_are_validated_with_errors_naming_the_field() {
    let ok = parse(json!({"type": "diagnostics.run", "payload": {"level": 2}})).unwrap();
    assert_eq!(
        (ok.priority, ok.ttl, ok.idempotency_key),
        (0, Duration::from_secs(60), None)
    );
    assert_eq!(
        parse(json!({"type": "x", "ttl_seconds": 3601})),
        Err(CommandError::TtlTooLong {
            requested: 3601,
            max: 3600
        })
    );
    assert!(matches!(
        parse(json!({"type": "x", "payload": {"blob": "y".repeat(80)}})),
        Err(CommandError::TooLarge {
            what: "payload",
            ..
        })
    ));
    for (body, field) in [
        (json!({}), "type"),
        (json!({"type": "has space"}), "type"),
        (json!({"type": "x", "priority": 1001}), "priority"),
        (json!({"type": "x", "priority": 1.5}), "priority"),
        (json!({"type": "x", "ttl_seconds": 0}), "ttl_seconds"),
        (
            json!({"type": "x", "idempotency_key": ""}),
            "idempotency_key",
        ),
        (json!({"type": "x", "colour": "red"}), "body"),
        (json!([1]), "body"),
    ] {
        match parse(body.clone()) {
            Err(CommandError::InvalidField { field: got, .. }) => {
                assert_eq!(got, field, "{body}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn a_command_is_delivered_acknowledged_and_remembers_every_step() {
    let limits = limits();
    let mut command = command(0, 60, 1_000, "c1");
    assert_eq!(command.expires_at, Millis(61_000));
    assert!(command.due(Millis(1_000), &limits, false));
    command.deliver(Millis(2_000), &limits, false).unwrap();
    assert!(
        !command.due(Millis(5_000), &limits, false),
        "waiting for its acknowledgement"
    );
    command
        .acknowledge(
            CommandResult::Succeeded,
            Some(json!({"ok": true})),
            Millis(3_000),
            &limits,
            &Limits::default(),
        )
        .unwrap();
    let steps: Vec<_> = command
        .transitions
        .iter()
        .map(|t| (t.status, t.at.0, t.attempt))
        .collect();
    assert_eq!(
        steps,
        [
            (CommandStatus::Pending, 1_000, None),
            (CommandStatus::Delivered, 2_000, Some(1)),
            (CommandStatus::Acknowledged, 3_000, None)
        ]
    );
    assert_eq!(
        command.cancel(Millis(4_000)),
        Err(CommandError::NotAllowed {
            status: CommandStatus::Acknowledged,
            action: "canceled"
        })
    );
    assert!(
        command
            .acknowledge(
                CommandResult::Failed,
                None,
                Millis(5_000),
                &limits,
                &Limits::default()
            )
            .is_err()
    );
}

#[test]
fn an_unacknowledged_delivery_is_repeated_then_fails() {
    let limits = limits();
    let mut command = command(0, 3600, 0, "c1");
    command.deliver(Millis(0), &limits, false).unwrap();
    assert!(
        command.deliver(Millis(5_000), &limits, false).is_err(),
        "not overdue yet"
    );
    assert!(
        command.due(Millis(5_000), &limits, true),
        "a reconnected device lost what was in flight"
    );
    assert!(command.due(Millis(10_000), &limits, false));
    command.deliver(Millis(10_000), &limits, false).unwrap();
    assert_eq!(command.attempts, 2);
    assert!(
        !command.due(Millis(20_000), &limits, false),
        "no attempts left"
    );
    assert_eq!(
        command.next_deadline(Millis(10_000), &limits),
        Some(Millis(20_000))
    );
    assert_eq!(
        command.next_deadline(Millis(20_000), &limits),
        Some(Millis(3_600_000)),
        "once the acknowledgement is overdue, only the expiry is ahead"
    );
    assert!(!command.settle(Millis(19_999), &limits));
    assert!(command.settle(Millis(20_000), &limits));
    assert_eq!(command.status, CommandStatus::Failed);
    assert_eq!(command.next_deadline(Millis(20_000), &limits), None);
}

#[test]
fn reconnects_repeat_a_delivery_without_using_an_attempt_up_to_their_bound() {
    let limits = limits();
    let mut command = command(0, 3600, 0, "c1");
    command
        .deliver(Millis(0), &limits, true)
        .expect("the command is due");
    assert_eq!(
        (command.attempts, command.reconnect_deliveries),
        (1, 0),
        "a first delivery is an attempt, whatever brought it"
    );
    for (at, reconnects) in [(1_000, 1), (2_000, 2), (3_000, 3)] {
        command
            .deliver(Millis(at), &limits, true)
            .expect("the command is due");
        assert_eq!(
            (command.attempts, command.reconnect_deliveries),
            (1, reconnects)
        );
    }
    assert_eq!(
        command.ack_deadline(&limits),
        Some(Millis(13_000)),
        "the acknowledgement timeout counts from the latest delivery"
    );
    command
        .deliver(Millis(4_000), &limits, true)
        .expect("the command is due");
    assert_eq!(
        (command.attempts, command.reconnect_deliveries),
        (2, 3),
        "past their bound, reconnects use attempts"
    );
    assert!(
        !command.due(Millis(5_000), &limits, true),
        "no attempt and no reconnect delivery left"
    );
    assert!(command.settle(Millis(14_000), &limits));
    assert_eq!(command.status, CommandStatus::Failed);
}

#[test]
fn a_reconnect_delivers_again_even_after_the_last_attempt() {
    let limits = limits();
    let mut command = command(0, 3600, 0, "c1");
    command
        .deliver(Millis(0), &limits, false)
        .expect("the command is due");
    command
        .deliver(Millis(10_000), &limits, false)
        .expect("the command is due");
    assert_eq!(command.attempts, limits.max_attempts);
    // The device dropped the connection the last attempt went out on.
    command
        .deliver(Millis(12_000), &limits, true)
        .expect("the command is due");
    assert_eq!((command.attempts, command.reconnect_deliveries), (2, 1));
    assert!(
        !command.settle(Millis(20_000), &limits),
        "acknowledgement not overdue yet"
    );
    assert!(command.settle(Millis(22_000), &limits));
}

#[test]
fn a_late_acknowledgement_of_a_final_command_is_kept_once_without_changing_its_status() {
    let limits = limits();
    let document = Limits::default();
    let mut failed = command(0, 3600, 0, "c1");
    failed
        .deliver(Millis(0), &limits, false)
        .expect("the command is due");
    failed
        .deliver(Millis(10_000), &limits, false)
        .expect("the command is due");
    assert!(failed.settle(Millis(20_000), &limits));
    let steps = failed.transitions.len();
    failed
        .acknowledge_late(
            CommandResult::Succeeded,
            Some(json!({"done": true})),
            Millis(25_000),
            &limits,
            &document,
        )
        .expect("a failed command takes a late acknowledgement");
    assert_eq!(
        failed.status,
        CommandStatus::Failed,
        "what applications were told stays so"
    );
    assert_eq!(failed.result, Some(CommandResult::Succeeded));
    assert_eq!(failed.response, Some(json!({"done": true})));
    assert_eq!(failed.acknowledged_late_at, Some(Millis(25_000)));
    assert_eq!(failed.transitions.len(), steps);
    let view = failed.view();
    assert_eq!(view["status"], json!("FAILED"));
    assert_eq!(view["result"], json!("SUCCEEDED"));
    assert_eq!(
        view["acknowledged_late_at"],
        json!(Millis(25_000).to_rfc3339())
    );
    assert_eq!(
        failed.acknowledge_late(
            CommandResult::Failed,
            None,
            Millis(26_000),
            &limits,
            &document
        ),
        Err(CommandError::NotAllowed {
            status: CommandStatus::Failed,
            action: "acknowledged again"
        }),
        "only the first late acknowledgement is kept"
    );

    let mut canceled = command(0, 3600, 0, "c2");
    canceled.cancel(Millis(1)).expect("an open command cancels");
    let too_large = json!({"blob": "x".repeat(100)});
    assert!(matches!(
        canceled.acknowledge_late(
            CommandResult::Failed,
            Some(too_large),
            Millis(2),
            &limits,
            &document
        ),
        Err(CommandError::TooLarge { .. })
    ));
    assert_eq!(
        canceled.acknowledged_late_at, None,
        "a refused one changes nothing"
    );

    let mut open = command(0, 3600, 0, "c3");
    assert!(
        matches!(
            open.acknowledge_late(
                CommandResult::Succeeded,
                None,
                Millis(1),
                &limits,
                &document
            ),
            Err(CommandError::NotAllowed { .. })
        ),
        "an open command takes an ordinary acknowledgement"
    );
    open.acknowledge(
        CommandResult::Succeeded,
        None,
        Millis(2),
        &limits,
        &document,
    )
    .expect("an open command takes an acknowledgement");
    assert!(
        matches!(
            open.acknowledge_late(CommandResult::Failed, None, Millis(3), &limits, &document),
            Err(CommandError::NotAllowed { .. })
        ),
        "an acknowledged command is not acknowledged again"
    );
}

#[test]
fn an_expired_command_is_never_delivered() {
    let limits = limits();
    let mut command = command(0, 1, 0, "c1");
    assert_eq!(
        command.next_deadline(Millis(0), &limits),
        Some(Millis(1_000))
    );
    assert!(!command.due(Millis(1_000), &limits, false));
    assert!(command.deliver(Millis(1_000), &limits, false).is_err());
    assert!(command.settle(Millis(1_000), &limits));
    assert_eq!(command.status, CommandStatus::Expired);
    assert!(command.cancel(Millis(2_000)).is_err());
}

#[test]
fn views_name_statuses_like_the_stored_form_and_show_instants_as_rfc3339() {
    let mut command = command(5, 60, 0, "c1");
    command.deliver(Millis(1_500), &limits(), false).unwrap();
    let view = command.view();
    let stored = serde_json::to_value(&command).unwrap();
    assert_eq!(view["status"], stored["status"]);
    assert_eq!(
        view["transitions"][1]["status"],
        stored["transitions"][1]["status"]
    );
    assert_eq!(view["created_at"], "1970-01-01T00:00:00.000Z");
    assert_eq!(view["delivered_at"], "1970-01-01T00:00:01.500Z");
    assert_eq!(view["transitions"][1]["attempt"], 1);
    assert_eq!(view["result"], Value::Null);
}

#[test]
fn acknowledgements_name_the_field_that_is_wrong() {
    assert_eq!(
        parse_acknowledgement(&json!({"status": "SUCCEEDED", "response": {"uptime": 3}})),
        Ok((CommandResult::Succeeded, Some(json!({"uptime": 3}))))
    );
    assert_eq!(
        parse_acknowledgement(&json!({"status": "REJECTED", "response": null})),
        Ok((CommandResult::Rejected, None))
    );
    for (body, field) in [
        (json!({"status": "DONE"}), "status"),
        (json!({}), "status"),
        (json!({"status": "FAILED", "extra": 1}), "body"),
        (json!(["SUCCEEDED"]), "body"),
    ] {
        match parse_acknowledgement(&body) {
            Err(CommandError::InvalidField { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn serialized_commands_round_trip_with_aws_style_names() {
    let command = command(5, 60, 0, "c1");
    let value = serde_json::to_value(&command).unwrap();
    assert_eq!(value["type"], "reboot");
    assert_eq!(value["status"], "PENDING");
    assert_eq!(serde_json::from_value::<Command>(value).unwrap(), command);
    assert_eq!(
        CommandStatus::parse("expired"),
        Some(CommandStatus::Expired)
    );
    assert_eq!(
        CommandResult::parse("REJECTED"),
        Some(CommandResult::Rejected)
    );
}

proptest! {
    /// Delivery order is a total order: higher priority first, then creation order.
    #[test]
    fn delivery_order_is_priority_then_age(
        specs in proptest::collection::vec((-3i64..3, 0i64..5), 1..20)
    ) {
        let mut commands: Vec<Command> = specs
            .iter()
            .enumerate()
            .map(|(i, (priority, at))| command(*priority, 60, *at, &format!("c{i:03}")))
            .collect();
        commands.sort_by(delivery_order);
        for pair in commands.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            prop_assert!(
                a.priority > b.priority
                    || (a.priority == b.priority && (a.created_at, &a.id) < (b.created_at, &b.id))
            );
        }
    }
}
