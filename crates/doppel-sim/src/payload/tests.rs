use serde_json::{Value, json};

use super::{ACK_SUCCEEDED, Delta, command_id, is_delta, periodic_report, sensor_readings};
use crate::timing::device_rng;
use doppel_wire::Verdict;
use doppel_wire::shadow::{self, ShadowAnswer, ShadowOp};
use doppel_wire::topic;

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[test]
fn the_acknowledgement_says_succeeded() {
    assert_eq!(parse(ACK_SUCCEEDED), json!({"status": "SUCCEEDED"}));
}

#[test]
fn a_command_id_is_read_only_from_the_devices_own_command_topic() {
    let thing = "sim-000001";
    assert_eq!(
        command_id(thing, &topic::command_delivery(thing, "019ad3c4")),
        Some("019ad3c4")
    );
    for topic in [
        topic::command_delivery("sim-000002", "019ad3c4"),
        topic::command_delivery("sim-0000011", "019ad3c4"),
        topic::command_delivery(thing, ""),
        topic::command_ack(thing, "019ad3c4"),
        topic::command_ack_answer(thing, "019ad3c4", Verdict::Accepted),
        shadow::answer(thing, None, ShadowAnswer::Delta),
    ] {
        assert_eq!(command_id(thing, &topic), None, "{topic}");
    }
}

#[test]
fn a_delta_is_only_the_devices_own_classic_one() {
    let thing = "sim-000001";
    assert!(is_delta(
        thing,
        &shadow::answer(thing, None, ShadowAnswer::Delta)
    ));
    for topic in [
        shadow::answer("sim-000002", None, ShadowAnswer::Delta),
        shadow::answer(thing, Some("config"), ShadowAnswer::Delta),
        shadow::answer(thing, None, ShadowAnswer::Documents),
        shadow::request(thing, None, ShadowOp::Update),
        topic::command_delivery(thing, "019ad3c4"),
    ] {
        assert!(!is_delta(thing, &topic), "{topic}");
    }
}

#[test]
fn a_report_is_a_sensor_document_of_about_300_bytes_that_changes() {
    let mut rng = device_rng(1, 0);
    let first = periodic_report(&mut rng, 10, None);
    let second = periodic_report(&mut rng, 20, None);
    assert_ne!(first, second);
    for report in [&first, &second] {
        assert!(
            (250..=400).contains(&report.len()),
            "{} bytes",
            report.len()
        );
        let reported = &parse(report)["state"]["reported"];
        for key in [
            "temperature",
            "humidity",
            "battery",
            "light",
            "mode",
            "uptime_s",
        ] {
            assert!(reported.get(key).is_some(), "{key} missing from {reported}");
        }
        assert_eq!(parse(report)["state"].as_object().map(|o| o.len()), Some(1));
    }
    assert_eq!(parse(&first)["state"]["reported"]["uptime_s"], 10);
    assert_eq!(parse(&second)["state"]["reported"]["uptime_s"], 20);
}

#[test]
fn readings_stay_plausible() {
    let mut rng = device_rng(3, 3);
    for _ in 0..1_000 {
        let readings = sensor_readings(&mut rng, 0);
        let temperature = readings["temperature"].as_f64().expect("a number");
        assert!((18.0..26.0).contains(&temperature));
        let level = readings["battery"]["level"].as_u64().expect("a number");
        assert!((20..=100).contains(&level));
    }
}

#[test]
fn applying_a_delta_reports_its_state_and_keeps_it_in_later_reports() {
    let message = json!({
        "state": {"mode": "boost", "light": {"level": 7}},
        "version": 12,
        "timestamp": 1_764_530_000,
        "metadata": {"mode": {"timestamp": 1_764_530_000}}
    });
    let delta = Delta::parse(message.to_string().as_bytes()).expect("a delta");
    assert_eq!(delta.version, 12);
    let mut applied = None;
    let report = delta.apply(&mut applied);
    assert_eq!(
        parse(&report),
        json!({"state": {"reported": {"mode": "boost", "light": {"level": 7}}}})
    );

    let mut rng = device_rng(1, 0);
    let later = parse(&periodic_report(&mut rng, 30, applied.as_ref()));
    let reported = &later["state"]["reported"];
    assert_eq!(reported["mode"], "boost");
    assert_eq!(reported["light"]["level"], 7);
    assert_eq!(reported["light"]["on"], true, "the rest of light stays");
    assert_eq!(reported["uptime_s"], 30);
}

#[test]
fn a_null_in_a_delta_drops_the_applied_key() {
    let mut applied = None;
    let first = Delta::parse(br#"{"state":{"mode":"boost","setpoint":21},"version":1}"#);
    first.expect("a delta").apply(&mut applied);
    let second = Delta::parse(br#"{"state":{"mode":null},"version":2}"#).expect("a delta");
    let report = second.apply(&mut applied);
    assert_eq!(
        parse(&report),
        json!({"state": {"reported": {"mode": null}}})
    );
    assert_eq!(applied, Some(json!({"setpoint": 21})));
    let third = Delta::parse(br#"{"state":{"setpoint":null},"version":3}"#).expect("a delta");
    third.apply(&mut applied);
    assert_eq!(applied, None, "nothing left to apply");
    let mut rng = device_rng(1, 0);
    let later = parse(&periodic_report(&mut rng, 0, applied.as_ref()));
    assert_eq!(
        later["state"]["reported"]["mode"], "eco",
        "back to the firmware's own"
    );
}

#[test]
fn what_is_not_a_delta_is_ignored() {
    assert_eq!(Delta::parse(b"not json"), None);
    assert_eq!(Delta::parse(br#"{"version": 3}"#), None);
    assert_eq!(Delta::parse(br#"{"state": 5}"#), None);
    let without_version = Delta::parse(br#"{"state": {}}"#).expect("a delta");
    assert_eq!(without_version.version, 0);
}
