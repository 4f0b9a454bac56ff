use super::*;
use crate::shadow::{ShadowOp, answer, filter, request};

fn shadow_request(
    thing: &'static str,
    shadow: Option<&'static str>,
    op: ShadowOp,
) -> Topic<'static> {
    Topic::ShadowRequest(ShadowRequest { thing, shadow, op })
}

/// The wire format, spelled out once: what every builder names.
#[test]
fn builders_name_the_documented_topics() {
    let cases = [
        (
            request("pump-7", None, ShadowOp::Update),
            "$aws/things/pump-7/shadow/update",
        ),
        (
            request("pump-7", Some("config"), ShadowOp::Get),
            "$aws/things/pump-7/shadow/name/config/get",
        ),
        (
            answer(
                "pump-7",
                None,
                ShadowAnswer::Reply(ShadowOp::Update, Verdict::Accepted),
            ),
            "$aws/things/pump-7/shadow/update/accepted",
        ),
        (
            answer(
                "pump-7",
                Some("config"),
                ShadowAnswer::Reply(ShadowOp::Delete, Verdict::Rejected),
            ),
            "$aws/things/pump-7/shadow/name/config/delete/rejected",
        ),
        (
            answer("pump-7", None, ShadowAnswer::Delta),
            "$aws/things/pump-7/shadow/update/delta",
        ),
        (
            answer("pump-7", Some("config"), ShadowAnswer::Documents),
            "$aws/things/pump-7/shadow/name/config/update/documents",
        ),
        (filter("pump-7", None), "$aws/things/pump-7/shadow/#"),
        (
            command_delivery("pump-7", "0192"),
            "$doppel/things/pump-7/commands/0192",
        ),
        (
            command_delivery("pump-7", "+"),
            "$doppel/things/pump-7/commands/+",
        ),
        (
            command_ack("pump-7", "0192"),
            "$doppel/things/pump-7/commands/0192/ack",
        ),
        (
            command_ack_answer("pump-7", "0192", Verdict::Accepted),
            "$doppel/things/pump-7/commands/0192/ack/accepted",
        ),
        (
            command_event("pump-7", "acknowledged"),
            "$doppel/events/commands/pump-7/acknowledged",
        ),
        (sync_request("pump-7"), "$doppel/things/pump-7/sync"),
        (
            sync_answer("pump-7", Verdict::Rejected),
            "$doppel/things/pump-7/sync/rejected",
        ),
        (
            presence_event(PresenceEvent::Connected.as_str(), "pump-7"),
            "$aws/events/presence/connected/pump-7",
        ),
    ];
    for (built, expected) in cases {
        assert_eq!(built, expected);
    }
}

#[test]
fn every_topic_parses_back_to_what_built_it() {
    for shadow in [None, Some("config")] {
        // Each answer topic parses back to the answer that built it; the topic is handed back
        // for the checks that differ between replies and events.
        let parses_back = |kind: ShadowAnswer| {
            let topic = answer("pump-7", shadow, kind);
            let expected = Topic::ShadowAnswer {
                thing: "pump-7",
                shadow,
                answer: kind,
            };
            assert_eq!(Topic::parse(&topic), expected, "{topic}");
            topic
        };
        for op in ShadowOp::ALL {
            let request_topic = request("pump-7", shadow, op);
            let parsed = Topic::parse(&request_topic);
            assert_eq!(
                parsed,
                shadow_request("pump-7", shadow, op),
                "{request_topic}"
            );
            let Topic::ShadowRequest(parsed) = parsed else {
                panic!("a request");
            };
            for verdict in [Verdict::Accepted, Verdict::Rejected] {
                let topic = parses_back(ShadowAnswer::Reply(op, verdict));
                assert_eq!(parsed.reply(verdict), topic);
            }
        }
        for kind in [ShadowAnswer::Delta, ShadowAnswer::Documents] {
            parses_back(kind);
        }
    }
    let (thing, id) = ("pump-7", "0192");
    for verdict in [Verdict::Accepted, Verdict::Rejected] {
        assert_eq!(
            Topic::parse(&command_ack_answer(thing, id, verdict)),
            Topic::CommandAckAnswer { thing, id, verdict }
        );
        assert_eq!(
            Topic::parse(&sync_answer(thing, verdict)),
            Topic::SyncAnswer { thing, verdict }
        );
    }
    assert_eq!(
        Topic::parse(&command_delivery(thing, id)),
        Topic::CommandDelivery { thing, id }
    );
    assert_eq!(
        Topic::parse(&command_ack(thing, id)),
        Topic::CommandAck { thing, id }
    );
    assert_eq!(
        Topic::parse(&sync_request(thing)),
        Topic::SyncRequest { thing }
    );
    assert_eq!(
        Topic::parse(&command_event(thing, "queued")),
        Topic::CommandEvent {
            thing,
            event: "queued"
        }
    );
    for event in [PresenceEvent::Connected, PresenceEvent::Disconnected] {
        assert_eq!(
            Topic::parse(&presence_event(event.as_str(), "client-1")),
            Topic::Presence {
                event,
                client_id: "client-1"
            }
        );
    }
}

#[test]
fn names_are_names_not_keywords() {
    // A thing called "name" and a shadow called "get" are still names.
    assert_eq!(
        Topic::parse("$aws/things/name/shadow/name/get/get"),
        shadow_request("name", Some("get"), ShadowOp::Get)
    );
    // A thing whose name starts with another's is its own.
    assert_eq!(
        Topic::parse("$doppel/things/sim-0000011/commands/019ad3c4"),
        Topic::CommandDelivery {
            thing: "sim-0000011",
            id: "019ad3c4"
        }
    );
}

/// What is below a shadow, a thing's commands or its sync answers, or among the events, but is
/// no topic the hub serves or names, is still the hub's alone.
#[test]
fn malformed_topics_in_the_hubs_namespaces_are_hub_reserved() {
    for topic in [
        "$aws/things/pump-7/shadow/name/update",
        "$aws/things/pump-7/shadow/list",
        "$aws/things/pump-7/shadow",
        "$aws/things/pump-7/shadow/GET",
        "$aws/things//shadow/get",
        "$aws/things/pump-7/shadow/name//get",
        "$aws/things/+/shadow/get",
        "$aws/things/pump-7/shadow/name/+/get",
        "$aws/things/pu#mp/shadow/get",
        "$aws/things/pump-7/shadow/get/",
        "$aws/things/pump-7/shadow/name/a/b/get",
        "$aws/things/pump-7/shadow/name/update/delta",
        "$aws/things/pump-7/shadow/update/delta/x",
        "$aws/things//shadow/update/delta",
        "$aws/things/+/shadow/update/delta",
        "$aws/things/pump-7/shadow/name/+/update/delta",
        "$aws/things/pump-7/shadow/#",
        "$aws/things/pump-7/shadow/get/maybe",
        "$doppel/things//commands/0192/ack",
        "$doppel/things/pump-7/commands//ack",
        "$doppel/things/pump-7/commands/",
        "$doppel/things/pump-7/commands",
        "$doppel/things/pump-7/commands/0192/ack/maybe",
        "$doppel/things/pump-7/commands/0192/ack/accepted/x",
        "$doppel/things/pump-7/sync/",
        "$doppel/things/pump-7/sync/maybe",
        "$doppel/things/pump-7/sync/accepted/x",
        "$doppel/things//sync/accepted",
        "$aws/events",
        "$aws/events/presence/connected",
        "$aws/events/presence/connected/",
        "$aws/events/presence/left/pump-7",
        "$doppel/events/commands/pump-7",
        "$doppel/events/other/pump-7/queued",
    ] {
        assert_eq!(Topic::parse(topic), Topic::HubReserved, "{topic}");
    }
}

#[test]
fn other_topics_are_a_things_reserved_or_ordinary() {
    for (topic, thing) in [
        ("$aws/things/pump-7/Shadow/get", "pump-7"),
        ("$aws/things/pump-7/", "pump-7"),
        ("$aws/things/pump-7/sync", "pump-7"),
        ("$aws/things/pump-7/commands/0192/ack", "pump-7"),
        ("$doppel/things/pump-7/jobs/1", "pump-7"),
        ("$doppel/things//sync", ""),
        ("$doppel/things/a/b/sync", "a"),
    ] {
        assert_eq!(Topic::parse(topic), Topic::Thing { thing }, "{topic}");
    }
    for topic in [
        "$aws/things",
        "$aws/things/",
        "$aws/things/pump-7",
        "$aws/things/#",
        "$doppel/things/pump-7",
        "$aws/thingsX/pump-7/shadow/get",
        "$SYS/broker",
        "$doppel",
    ] {
        assert_eq!(Topic::parse(topic), Topic::Reserved, "{topic}");
    }
    for topic in [
        "aws/things/pump-7/shadow/get",
        "/$aws/things/pump-7/shadow/get",
        "sensors/t",
        "",
    ] {
        assert_eq!(Topic::parse(topic), Topic::Ordinary, "{topic}");
    }
}

#[test]
fn filters_are_scoped_by_what_they_can_bring() {
    let cases = [
        (
            "$doppel/things/pump-7/commands/+",
            FilterScope::Commands {
                thing: Some("pump-7"),
            },
        ),
        (
            "$doppel/things/pump-7/#",
            FilterScope::Commands {
                thing: Some("pump-7"),
            },
        ),
        ("$doppel/things/#", FilterScope::Commands { thing: None }),
        (
            "$doppel/things/pump-7/jobs/#",
            FilterScope::Things {
                thing: Some("pump-7"),
            },
        ),
        (
            "$aws/things/pump-7/shadow/#",
            FilterScope::Things {
                thing: Some("pump-7"),
            },
        ),
        ("$aws/things/pump-7", FilterScope::Things { thing: None }),
        ("$aws/events/presence/+/+", FilterScope::AwsEvents),
        ("$doppel/events/commands/#", FilterScope::DoppelEvents),
        ("$aws/#", FilterScope::Reserved),
        ("$SYS/#", FilterScope::Reserved),
    ];
    for (filter, scope) in cases {
        assert_eq!(FilterScope::of(filter), scope, "{filter}");
    }
}
