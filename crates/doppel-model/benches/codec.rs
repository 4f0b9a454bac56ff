//! The stored twin record, which the engine decodes and encodes on every write of a twin and
//! start-up reads for every twin: the benchmarks' sensor twin (its ~300-byte report, then a
//! desired change) in the first record format (every metadata stamp) and in the compact one
//! (only the stamps that differ from their section's time), side by side in one binary.
//!
//! - `codec/encode/{first_format,compact}`: the twin to its record.
//! - `codec/decode/{first_format,compact}`: the record back to the twin.
//!
//! Under `cargo test --all-targets` (no `--bench`) criterion runs each benchmark once.
//! Run it with `cargo bench -p doppel-model --bench codec`.

// The same twin as the engine's and the MQTT shadow benchmarks'.
#[path = "../../doppel-engine/benches/fixtures/sensor.rs"]
mod sensor;
#[path = "fixtures/sensor_requests.rs"]
mod sensor_requests;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use doppel_model::codec::EncodedTwin;
use doppel_model::policy::ReplicaConfig;
use doppel_model::{Applied, Change, Context, Limits, Millis, Twin, apply};
use sensor_requests::{first_report, request};
use std::hint::black_box;

/// The first format's tag of a live twin.
const FIRST_FORMAT_LIVE: u8 = 1;

fn sensor_twin() -> Twin {
    let limits = Limits::default();
    let replica = ReplicaConfig::hub();
    let mut twin = None;
    let changes = [
        Change::Reported {
            patch: first_report(),
            device_version: Some(1),
        },
        Change::DesiredPatch(sensor::desired()),
    ];
    for (step, change) in changes.into_iter().enumerate() {
        let context = Context {
            now: Millis(1_795_000_000_000 + 100 * step as i64),
            limits: &limits,
            replica: &replica,
        };
        match apply(twin.take(), &request(change), &context).expect("a valid change") {
            Applied::Changed { twin: next, .. } => twin = Some(next),
            Applied::Stale { .. } => panic!("a setup change was stale"),
        }
    }
    twin.expect("the twin was made")
}

/// The first format's record of `twin`, as releases before the compact record wrote it.
fn first_format(twin: &Twin) -> Vec<u8> {
    let mut record = vec![FIRST_FORMAT_LIVE];
    serde_json::to_writer(&mut record, twin).expect("a twin serializes");
    record
}

fn codec(c: &mut Criterion) {
    let twin = sensor_twin();
    let first = first_format(&twin);
    let compact = EncodedTwin::encode(&twin).0;
    println!(
        "records: {} bytes in the first format, {} compact",
        first.len(),
        compact.len()
    );
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode/first_format", |b| {
        b.iter(|| first_format(black_box(&twin)))
    });
    group.bench_function("encode/compact", |b| {
        b.iter(|| EncodedTwin::encode(black_box(&twin)))
    });
    group.bench_function("decode/first_format", |b| {
        b.iter(|| EncodedTwin::decode(black_box(&first)).expect("a valid record"))
    });
    group.bench_function("decode/compact", |b| {
        b.iter(|| EncodedTwin::decode(black_box(&compact)).expect("a valid record"))
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
