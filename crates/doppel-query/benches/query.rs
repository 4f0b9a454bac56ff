//! Parse and evaluation cost of a typical fleet query.
//!
//! `matches` runs once per candidate twin, so its cost times the fleet size bounds a scan; parse
//! runs once per request.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use doppel_query::{Fields, Path, parse};
use serde_json::{Value, json};

const QUERY: &str = "device_type = 'thermostat' AND tags.site IN ('berlin', 'paris', 'lyon') \
    AND reported.sensors.temperature > 30.5 AND firmware_version LIKE '2.%' \
    AND NOT (connection.status = 'DISCONNECTED' OR delta IS NOT EMPTY)";

/// A twin held as plain JSON trees, the simplest faithful `Fields`.
struct Twin {
    reported: Value,
    desired: Value,
    tags: Value,
    status: Value,
    device_type: Value,
    firmware_version: Value,
}

impl Fields for Twin {
    fn value(&self, path: &Path) -> Option<Cow<'_, Value>> {
        let found = match path {
            Path::Reported(segments) => walk(&self.reported, segments),
            Path::Desired(segments) => walk(&self.desired, segments),
            Path::Tag(name) => self.tags.get(name),
            Path::ConnectionStatus => Some(&self.status),
            Path::ConnectionStale => return Some(Cow::Owned(Value::Bool(false))),
            Path::DeviceType => Some(&self.device_type),
            Path::FirmwareVersion => Some(&self.firmware_version),
        };
        found.map(Cow::Borrowed)
    }

    fn delta_is_empty(&self) -> bool {
        true
    }
}

fn walk<'v>(mut value: &'v Value, segments: &[String]) -> Option<&'v Value> {
    for segment in segments {
        value = value.get(segment)?;
    }
    Some(value)
}

fn twin() -> Twin {
    Twin {
        reported: json!({
            "sensors": {"temperature": 31.2, "humidity": 48, "pressure": 1013.2},
            "mode": "heat",
            "setpoint": 21.5,
            "battery": {"level": 87, "charging": false},
            "uptime_s": 86400,
        }),
        desired: json!({"mode": "heat", "setpoint": 21.5}),
        tags: json!({"site": "paris", "floor": "3", "owner": "facilities"}),
        status: json!("CONNECTED"),
        device_type: json!("thermostat"),
        firmware_version: json!("2.4.1"),
    }
}

fn bench(c: &mut Criterion) {
    c.bench_function("parse typical query", |b| {
        b.iter(|| parse(black_box(QUERY)))
    });
    let query = match parse(QUERY) {
        Ok(query) => query,
        Err(error) => panic!("the benchmark query must parse: {error}"),
    };
    let twin = twin();
    assert!(query.matches(&twin), "the benchmark twin must match");
    c.bench_function("matches ~300-byte twin", |b| {
        b.iter(|| black_box(&query).matches(black_box(&twin)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
