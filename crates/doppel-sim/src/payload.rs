//! What a simulated device says and understands: its topics, its sensor report, the delta
//! messages it applies and the command acknowledgement it sends (docs/MQTT.md).

use doppel_wire::Topic;
use doppel_wire::shadow::ShadowAnswer;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The command id in `topic` when it is one of `thing`'s command deliveries
/// (`$doppel/things/{thing}/commands/{id}`), else `None`.
pub fn command_id<'a>(thing: &str, topic: &'a str) -> Option<&'a str> {
    match Topic::parse(topic) {
        Topic::CommandDelivery { thing: to, id } if to == thing => Some(id),
        _ => None,
    }
}

/// Whether `topic` is the delta of `thing`'s classic shadow, the one a device applies.
pub fn is_delta(thing: &str, topic: &str) -> bool {
    matches!(
        Topic::parse(topic),
        Topic::ShadowAnswer { thing: to, shadow: None, answer: ShadowAnswer::Delta } if to == thing
    )
}

/// The acknowledgement of a command that was carried out.
pub const ACK_SUCCEEDED: &[u8] = br#"{"status":"SUCCEEDED"}"#;

/// The readings of an environmental sensor with a light, about 300 bytes of JSON as reported:
/// the document of the engine's and the MQTT adapter's benchmarks
/// (`crates/doppel-engine/benches/fixtures/sensor.rs`), with fresh values at every call so that
/// every report changes the twin. `uptime_s` is the only value that is not drawn.
pub fn sensor_readings(rng: &mut impl Rng, uptime_s: u64) -> Value {
    json!({
        "temperature": hundredths(rng.random_range(1_800..2_600)),
        "humidity": hundredths(rng.random_range(3_000..6_000)),
        "pressure": hundredths(rng.random_range(98_000..103_000)),
        "co2_ppm": rng.random_range(400..1_200),
        "battery": {
            "level": rng.random_range(20..=100),
            "voltage": hundredths(rng.random_range(330..420)),
            "charging": rng.random_bool(0.1),
        },
        "light": {"on": true, "level": rng.random_range(0..10)},
        "mode": "eco",
        "rssi": rng.random_range(-90..-40),
        "uptime_s": uptime_s,
        "firmware": "2.4.1",
        "location": {"lat": 52.5200, "lon": 13.4050, "floor": 3},
        "errors": [],
        "sensor_status": "ok"
    })
}

/// Readings with two decimals, as a sensor would round them (and shorter to send).
fn hundredths(value: i32) -> f64 {
    f64::from(value) / 100.0
}

/// A shadow update that reports `reported`: `{"state":{"reported":...}}`.
pub fn report_document(reported: Value) -> Vec<u8> {
    let document = json!({"state": {"reported": reported}});
    // A `Value` always serialises; the fallback is an empty report, never a panic.
    serde_json::to_vec(&document).unwrap_or_default()
}

/// A periodic report: fresh readings with the desired state the device has applied laid over
/// them (RFC 7396), so that once a delta is applied the device keeps reporting the new values, as
/// real firmware does, and the delta stays empty.
pub fn periodic_report(rng: &mut impl Rng, uptime_s: u64, applied: Option<&Value>) -> Vec<u8> {
    let mut reported = sensor_readings(rng, uptime_s);
    if let Some(applied) = applied {
        json_patch::merge(&mut reported, applied);
    }
    report_document(reported)
}

/// A delta message as the hub sends it on `.../shadow/update/delta`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Delta {
    /// What desired asks that reported does not have yet; `null` drops a key.
    pub state: Map<String, Value>,
    /// The shadow version the delta was computed at; a device discards deltas older than the
    /// newest it has applied (AWS's advice), since the hub may repeat one after a reconnect.
    #[serde(default)]
    pub version: u64,
}

impl Delta {
    /// Parses a delta message; `None` when it is not one (a device ignores what it cannot read).
    pub fn parse(payload: &[u8]) -> Option<Delta> {
        serde_json::from_slice(payload).ok()
    }

    /// Applies the delta to what the device has applied so far (RFC 7396: `null` removes) and
    /// returns the report that tells the hub: the delta's state, as reported.
    pub fn apply(self, applied: &mut Option<Value>) -> Vec<u8> {
        let state = Value::Object(self.state);
        let target = applied.get_or_insert_with(|| Value::Object(Map::new()));
        json_patch::merge(target, &state);
        if target.as_object().is_some_and(Map::is_empty) {
            // Nothing applied any more: drop the map, so an idle device holds no JSON.
            *applied = None;
        }
        report_document(state)
    }
}

#[cfg(test)]
mod tests;
