//! The pure per-message work of the MQTT shadow service, on a realistic twin: the ~300-byte
//! report of an environmental sensor (the engine benchmark's report) with a desired state that
//! differs from it, so the delta is never empty.
//!
//! Everything here is CPU work the hub does around one AWS shadow update besides the engine and
//! the broker: recognising the topic, the ACL, mounting tenants' topics, parsing the request,
//! building and encoding the response documents, and, in the change feed, decoding the previous
//! twin and building `/update/delta` and `/update/documents`. `per_update` chains all of it as
//! `service::handle`, the delivery hook and `service::announce` do for one accepted update, so
//! its time can be set against the CPU per update that `scripts/bench-mqtt` measures for the
//! whole server.
//!
//! Under `cargo test --all-targets` (no `--bench`) criterion runs each benchmark once.
//! Run it with `cargo bench -p doppel-mqtt --bench shadow`; see docs/BENCHMARKS.md.

// The same twin as the engine benchmark's.
#[path = "../../doppel-engine/benches/fixtures/sensor.rs"]
mod sensor;
#[path = "../../doppel-model/benches/fixtures/sensor_requests.rs"]
mod sensor_requests;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use doppel_model::codec::EncodedTwin;
use doppel_model::policy::ReplicaConfig;
use doppel_model::{Applied, Change, Context, Limits, Millis, Twin, apply};
use doppel_mqtt::acl::{self, AclRule, Role};
use doppel_mqtt::mount;
use doppel_mqtt::shadow::document::{self, ShadowUpdate};
use doppel_wire::shadow::{self as topic, ShadowAnswer, ShadowOp};
use doppel_wire::{Topic, Verdict};
use sensor_requests::{first_report, report_at, request};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Duration;

/// The thing every benchmark works on; as long as a typical fleet's device ids.
const THING: &str = "sensor-0000042";
const TENANT: &str = "default";
/// When the twin was last written and when the documents are built (Unix milliseconds).
const WRITTEN_AT: Millis = Millis(1_795_000_000_000);
const NOW: Millis = Millis(1_795_000_000_250);

/// The `/update` payload a device sends with `reported`, as bytes on the wire.
fn update_payload(reported: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "state": {"reported": reported},
        "clientToken": "sensor-0000042-1234567"
    }))
    .expect("encode an update")
}

fn applied(previous: Option<Twin>, change: Change, at: Millis) -> Twin {
    let request = request(change);
    // The engine's path for a hub nobody syncs with, the engine's default.
    let context = Context {
        now: at,
        limits: &Limits::default(),
        replica: &ReplicaConfig::hub(),
    };
    match apply(previous, &request, &context) {
        Ok(Applied::Changed { twin, .. }) => twin,
        other => panic!("setup change not applied: {other:?}"),
    }
}

/// A twin before and after one device report.
struct Step {
    payload: Vec<u8>,
    update: ShadowUpdate,
    previous: Twin,
    previous_record: EncodedTwin,
    current: Twin,
}

/// The twin holds a first report (light at level 7, as desired) and the desired state; the
/// device then reports again. With `light_level` 7 the delta does not change (no
/// `/update/delta`), otherwise it grows by `light.level` (an `/update/delta` is sent).
fn step(light_level: u64) -> Step {
    let limits = Limits::default();
    let first = document::parse_update(&update_payload(&first_report()), &limits)
        .expect("a valid first report");
    let twin = applied(None, first.to_change(), WRITTEN_AT);
    let desire = serde_json::to_vec(&json!({"state": {"desired": sensor::desired()}}))
        .expect("encode a desired update");
    let desire = document::parse_update(&desire, &limits).expect("a valid desired update");
    let previous = applied(Some(twin), desire.to_change(), WRITTEN_AT);
    let payload = update_payload(&report_at(120, light_level));
    let update = document::parse_update(&payload, &limits).expect("a valid report");
    let current = applied(Some(previous.clone()), update.to_change(), NOW);
    Step {
        payload,
        update,
        previous_record: EncodedTwin::encode(&previous),
        previous,
        current,
    }
}

/// The example rules of docs/MQTT.md: devices publish and read only their own telemetry.
fn example_rules() -> Vec<AclRule> {
    let rules: Value = json!([
        {"permission": "allow", "clients": "devices", "access": "both", "topic": "telemetry/{thing}/#"},
        {"permission": "deny", "clients": "devices", "topic": "telemetry/#"}
    ]);
    serde_json::from_value(rules).expect("valid rules")
}

fn encode(document: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(document).expect("encode a document")
}

/// Topic recognition, ACL and tenant mounting: the broker hooks' work for every publish.
fn topics(c: &mut Criterion) {
    let update_topic = topic::request(THING, None, ShadowOp::Update);
    let accepted_topic = topic::answer(
        THING,
        None,
        ShadowAnswer::Reply(ShadowOp::Update, Verdict::Accepted),
    );
    let parsed_update = Topic::parse(&update_topic);
    let parsed_telemetry = Topic::Ordinary;
    let mounted_accepted = mount::mount(TENANT, &accepted_topic);
    let anonymous = Role::Anonymous {
        thing: Some(THING.into()),
    };
    let device = Role::Device {
        thing: THING.into(),
    };
    let rules = example_rules();
    let telemetry = format!("telemetry/{THING}/env");

    let mut group = c.benchmark_group("topic");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_request", |b| {
        b.iter(|| match Topic::parse(black_box(&update_topic)) {
            Topic::ShadowRequest(request) => Some(request.op),
            _ => None,
        })
    });
    group.bench_function("acl_allowed/own_shadow", |b| {
        b.iter(|| {
            acl::may_publish(
                black_box(&[]),
                black_box(&anonymous),
                black_box(&parsed_update),
                black_box(&update_topic),
            )
        })
    });
    group.bench_function("acl_allowed/ordinary_two_rules", |b| {
        b.iter(|| {
            acl::may_publish(
                black_box(&rules),
                black_box(&device),
                black_box(&parsed_telemetry),
                black_box(&telemetry),
            )
        })
    });
    group.bench_function("mount", |b| {
        b.iter(|| mount::mount(black_box(TENANT), black_box(&update_topic)))
    });
    group.bench_function("unmount", |b| {
        b.iter(|| mount::unmount(black_box(&mounted_accepted)).map(|(_, topic)| topic.len()))
    });
    group.finish();
}

/// Parsing an `/update` request and building (then encoding) the documents it causes.
fn documents(c: &mut Criterion) {
    let limits = Limits::default();
    let quiet = step(7);
    let grown = step(3);
    assert!(
        document::delta(Some(&quiet.previous), &quiet.current, None, NOW).is_none(),
        "a report that changes no pending key sends no delta"
    );
    assert!(
        document::delta(Some(&grown.previous), &grown.current, None, NOW).is_some(),
        "a report that drifts from desired sends a delta"
    );
    let token = quiet.update.client_token.as_deref();

    let mut group = c.benchmark_group("document");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_client_token", |b| {
        b.iter(|| document::parse_client_token(black_box(&quiet.payload)))
    });
    group.bench_function("parse_update", |b| {
        b.iter(|| document::parse_update(black_box(&quiet.payload), &limits))
    });
    group.bench_function("update_accepted", |b| {
        b.iter(|| {
            encode(&document::update_accepted(
                black_box(&quiet.update),
                &quiet.current,
                NOW,
            ))
        })
    });
    group.bench_function("delta/unchanged", |b| {
        b.iter(|| document::delta(Some(black_box(&quiet.previous)), &quiet.current, token, NOW))
    });
    group.bench_function("delta/grew", |b| {
        b.iter(|| document::delta(Some(black_box(&grown.previous)), &grown.current, token, NOW))
    });
    group.bench_function("documents", |b| {
        b.iter(|| document::documents(Some(black_box(&quiet.previous)), &quiet.current, token, NOW))
    });
    group.bench_function("get_accepted", |b| {
        b.iter(|| document::get_accepted(black_box(&quiet.current), token, NOW))
    });
    group.bench_function("decode_previous_twin", |b| {
        b.iter(|| EncodedTwin::decode(black_box(&quiet.previous_record.0)))
    });
    group.finish();

    let accepted = encode(&document::update_accepted(
        &quiet.update,
        &quiet.current,
        NOW,
    ));
    let delta = document::delta(Some(&grown.previous), &grown.current, token, NOW)
        .expect("a delta document");
    let before_after = document::documents(Some(&quiet.previous), &quiet.current, token, NOW);
    let get = document::get_accepted(&quiet.current, token, NOW);
    println!(
        "shadow: update payload {} bytes; documents encoded: update/accepted {} bytes, update/delta {} bytes, \
         update/documents {} bytes, get/accepted {} bytes; previous twin record {} bytes",
        quiet.payload.len(),
        accepted.len(),
        encode(&delta).len(),
        encode(&before_after).len(),
        encode(&get).len(),
        quiet.previous_record.0.len(),
    );
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for (name, doc) in [
        ("delta", &delta),
        ("documents", &before_after),
        ("get_accepted", &get),
    ] {
        group.bench_function(name, |b| b.iter(|| encode(black_box(doc))));
    }
    group.finish();
}

/// Everything the hub computes for one accepted update outside the engine and the broker, in
/// the order it happens: the publish hook (topic, ACL, request, twin id, parsing, the change),
/// the `/update/accepted` answer, the delivery hook (unmount), and the change feed (decode the
/// previous twin, `/update/delta` when it changed, `/update/documents`, each encoded and
/// mounted). The feed skips decoding and rendering for topics nobody subscribes to; this is the
/// case where someone listens on both (the routing lookups themselves are not included).
fn per_update(c: &mut Criterion) {
    let limits = Limits::default();
    let role = Role::Anonymous {
        thing: Some(THING.into()),
    };
    let update_topic = topic::request(THING, None, ShadowOp::Update);
    let mut group = c.benchmark_group("per_update");
    group.throughput(Throughput::Elements(1));
    for (name, step) in [("delta_unchanged", step(7)), ("delta_grew", step(3))] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let topic_name = black_box(&update_topic);
                let mut bytes = 0;
                // The publish hook and `service::handle`.
                let parsed = Topic::parse(topic_name);
                assert!(acl::may_publish(&[], &role, &parsed, topic_name));
                let Topic::ShadowRequest(request) = parsed else {
                    panic!("a shadow request");
                };
                let device = request.device().expect("a valid thing name");
                let token = document::parse_client_token(&step.payload).ok().flatten();
                let update =
                    document::parse_update(black_box(&step.payload), &limits).expect("valid");
                let change = black_box(update.to_change());
                let accepted = document::update_accepted(&update, &step.current, NOW);
                bytes += encode(&accepted).len();
                let response = mount::mount(TENANT, &request.reply(Verdict::Accepted));
                bytes += mount::mount(TENANT, topic_name).len();
                // The delivery hook, for the answer.
                bytes += mount::unmount(&response).map_or(0, |(_, topic)| topic.len());
                // The change feed (`service::announce`).
                let previous = EncodedTwin::decode(&step.previous_record.0)
                    .expect("a valid record")
                    .live()
                    .cloned();
                let (thing, shadow) = topic::shadow_of(&device);
                if let Some(delta) =
                    document::delta(previous.as_ref(), &step.current, token.as_deref(), NOW)
                {
                    bytes += encode(&delta).len();
                    bytes +=
                        mount::mount(TENANT, &topic::answer(thing, shadow, ShadowAnswer::Delta))
                            .len();
                }
                let before_after =
                    document::documents(previous.as_ref(), &step.current, token.as_deref(), NOW);
                bytes += encode(&before_after).len();
                bytes += mount::mount(
                    TENANT,
                    &topic::answer(thing, shadow, ShadowAnswer::Documents),
                )
                .len();
                drop(change);
                bytes
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = topics, documents, per_update
}
criterion_main!(benches);
