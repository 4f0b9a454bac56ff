//! The pure cost of replication (`doppel_model::replica`) on one realistic twin: the ~300-byte
//! report of an environmental sensor (the engine benchmark's, 13 top-level properties) with a
//! desired state of 4 properties that differs from it.
//!
//! - `replica/plain_report`: the hub applies a device report touching 2 properties to a twin no
//!   edge has synced, the common case of a fleet.
//! - `replica/replicated_report`: the same report at an edge agent, which replicates every twin:
//!   stamps for the 2 properties, a vector clock tick and the delta on the history entry.
//! - `replica/crdt_increment`: a `{"cycles": {"increment": 1}}` report at an edge agent whose
//!   rules declare `cycles` a G-Counter.
//! - `replica/merge_change`: the hub merges one change of an edge agent (2 reported properties).
//! - `replica/merge_snapshot`: an edge agent merges the hub's whole state of a twin it already
//!   has in full: the anti-entropy round that finds nothing to do (stale).
//!
//! Every change goes through `doppel_model::apply`, the engine's one path. Each iteration gets
//! its own copy of the twin, made outside the timed part, and the result is dropped outside it
//! too, so the figures are the update alone.
//!
//! Under `cargo test --all-targets` (no `--bench`) criterion runs each benchmark once.
//! Run it with `cargo bench -p doppel-model --bench replica`.

// The same twin as the engine's and the MQTT shadow benchmarks'.
#[path = "../../doppel-engine/benches/fixtures/sensor.rs"]
mod sensor;
#[path = "fixtures/sensor_requests.rs"]
mod sensor_requests;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use doppel_model::crdt::CrdtKind;
use doppel_model::policy::{HUB_REPLICA, ReplicaConfig, ReplicationRules, Role};
use doppel_model::replica::{ReplicaDelta, snapshot};
use doppel_model::update::MetaPatch;
use doppel_model::{
    Applied, Change, Context, HistoryEntry, Limits, Millis, ModelError, Twin, UpdateRequest, apply,
};
use sensor_requests::{first_report, request};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Duration;

/// When the twin was made and synced (Unix milliseconds); each setup step is 100 ms later.
const WRITTEN_AT: Millis = Millis(1_795_000_000_000);
/// When the benchmarked report is written, a minute later.
const NOW: Millis = Millis(1_795_000_060_000);
/// When the hub merges the edge's change of [`NOW`], after the trip to the hub.
const MERGED_AT: Millis = Millis(1_795_000_060_050);
const EDGE: &str = "edge-a";
const DEVICE_TYPE: &str = "env-sensor";

/// The benchmarked report: 2 of the properties changed (device version 2).
fn two_properties() -> Value {
    json!({"temperature": 21.9, "uptime_s": 120})
}

fn report(patch: Value, device_version: u64) -> UpdateRequest {
    request(Change::Reported {
        patch,
        device_version: Some(device_version),
    })
}

fn desired() -> UpdateRequest {
    request(Change::DesiredPatch(sensor::desired()))
}

fn device_type() -> UpdateRequest {
    request(Change::Meta(MetaPatch {
        device_type: Some(Some(DEVICE_TYPE.into())),
        ..MetaPatch::default()
    }))
}

fn merge(delta: ReplicaDelta) -> UpdateRequest {
    request(Change::Merge(Box::new(delta)))
}

/// The twin and history entry of a change that must apply.
fn changed(result: Result<Applied, ModelError>) -> (Twin, HistoryEntry) {
    match result.expect("setup change is valid") {
        Applied::Changed { twin, entry } => (twin, entry),
        Applied::Stale { .. } => panic!("setup change was stale"),
    }
}

/// The delta a replica sends for the change `entry` records.
fn delta_of(entry: &HistoryEntry) -> ReplicaDelta {
    entry
        .replica
        .as_deref()
        .cloned()
        .expect("a replicated change carries its delta")
}

/// A replica's copy of the twin and the rules it writes by.
struct Replica {
    config: ReplicaConfig,
    twin: Option<Twin>,
    /// Its wall clock for setup changes.
    at: Millis,
}

impl Replica {
    fn new(config: ReplicaConfig) -> Self {
        Self {
            config,
            twin: None,
            at: WRITTEN_AT,
        }
    }

    /// Applies a setup change, which must apply, and returns its history entry.
    fn write(&mut self, request: &UpdateRequest) -> HistoryEntry {
        let context = Context {
            now: self.at,
            limits: &Limits::default(),
            replica: &self.config,
        };
        let result = apply(self.twin.take(), request, &context);
        let (twin, entry) = changed(result);
        self.twin = Some(twin);
        self.at = Millis(self.at.0 + 100);
        entry
    }

    fn twin(&self) -> &Twin {
        self.twin.as_ref().expect("the replica has the twin")
    }
}

/// An edge agent and the hub by `rules`, both holding the same twin: the edge made it from the
/// sensor's `first_report` and sent the change to the hub, the hub set its device type and
/// desired state and answered with its whole replicated state, as a sync answer does.
fn synced(rules: &ReplicationRules, first_report: Value) -> (Replica, Replica) {
    let mut edge = Replica::new(rules.replica(EDGE.into(), Role::Device));
    let mut hub = Replica::new(rules.replica(HUB_REPLICA.into(), Role::Cloud));
    let first = edge.write(&report(first_report, 1));
    hub.at = edge.at;
    hub.write(&merge(delta_of(&first)));
    hub.write(&device_type());
    hub.write(&desired());
    // The hub's sync answer: its whole replicated state, meta included, which is how an agent
    // learns a device type (meta is the hub's; an agent may not write it).
    let answer = snapshot(hub.twin(), &hub.config).expect("the hub's twin replicates");
    edge.at = hub.at;
    edge.write(&merge(answer));
    assert!(edge.twin().replica.is_some() && hub.twin().replica.is_some());
    assert_eq!(edge.twin().reported.state, hub.twin().reported.state);
    assert_eq!(edge.twin().desired.state, hub.twin().desired.state);
    (edge, hub)
}

fn replica(c: &mut Criterion) {
    let limits = Limits::default();
    let patch = report(two_properties(), 2);

    // A twin the hub alone keeps: its first report, device type and desired state.
    let hub_config = ReplicaConfig::hub();
    let plain = {
        let setup = Context {
            now: WRITTEN_AT,
            limits: &limits,
            replica: &hub_config,
        };
        let (twin, _) = changed(apply(None, &report(first_report(), 1), &setup));
        let (twin, _) = changed(apply(Some(twin), &device_type(), &setup));
        let (twin, _) = changed(apply(Some(twin), &desired(), &setup));
        twin
    };
    let at_hub = Context {
        now: NOW,
        limits: &limits,
        replica: &hub_config,
    };
    let (twin, entry) = changed(apply(Some(plain.clone()), &patch, &at_hub));
    assert!(twin.replica.is_none() && entry.replica.is_none());

    // The twin kept by an edge agent and the hub, in sync. The edge then makes the report
    // (`edge_reported`), and the hub merges that change (`hub_merged`).
    let (edge, hub) = synced(&ReplicationRules::default(), first_report());
    let at_edge = Context {
        now: NOW,
        limits: &limits,
        replica: &edge.config,
    };
    let (edge_reported, entry) = changed(apply(Some(edge.twin().clone()), &patch, &at_edge));
    let edge_change = delta_of(&entry);
    assert_eq!(edge_change.reported.len(), 2);
    let edge_change_bytes = serde_json::to_vec(&edge_change).expect("encode").len();
    let merge_change = merge(edge_change);
    let merged_at_hub = Context {
        now: MERGED_AT,
        limits: &limits,
        replica: &hub.config,
    };
    let (hub_merged, entry) = changed(apply(
        Some(hub.twin().clone()),
        &merge_change,
        &merged_at_hub,
    ));
    assert_eq!(hub_merged.reported.state, edge_reported.reported.state);
    assert!(entry.resolutions.is_empty());
    let hub_snapshot = snapshot(&hub_merged, &hub.config).expect("the hub replicates the twin");
    let snapshot_bytes = serde_json::to_vec(&hub_snapshot).expect("encode").len();
    let merge_snapshot = merge(hub_snapshot);
    let merged_at_edge = Context {
        now: MERGED_AT,
        limits: &limits,
        replica: &edge.config,
    };
    let stale = apply(
        Some(edge_reported.clone()),
        &merge_snapshot,
        &merged_at_edge,
    );
    assert!(
        matches!(stale, Ok(Applied::Stale { .. })),
        "an edge that has everything finds the hub's snapshot stale"
    );

    // The same twin with a G-Counter of cycles, at the edge.
    let mut rules = ReplicationRules::default();
    rules
        .default
        .crdts
        .insert("cycles".into(), CrdtKind::GCounter);
    let mut counted = first_report();
    counted["cycles"] = json!({"increment": 41});
    let (counting, _) = synced(&rules, counted);
    let increment = report(json!({"cycles": {"increment": 1}}), 2);
    let at_counting_edge = Context {
        now: NOW,
        limits: &limits,
        replica: &counting.config,
    };
    let (twin, entry) = changed(apply(
        Some(counting.twin().clone()),
        &increment,
        &at_counting_edge,
    ));
    assert_eq!(twin.reported.state["cycles"], json!(42));
    assert!(delta_of(&entry).crdts.contains_key("cycles"));

    let report_bytes = serde_json::to_vec(&first_report()).expect("encode").len();
    let replica_state_bytes = serde_json::to_vec(&edge.twin().replica)
        .expect("encode")
        .len();
    println!(
        "replica: report {report_bytes} bytes, {} reported and {} desired properties; \
         replica state {replica_state_bytes} bytes; edge change {edge_change_bytes} bytes; \
         hub snapshot {snapshot_bytes} bytes",
        plain.reported.state.len(),
        plain.desired.state.len(),
    );

    let mut group = c.benchmark_group("replica");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plain_report", |b| {
        b.iter_batched(
            || plain.clone(),
            |twin| apply(Some(twin), black_box(&patch), &at_hub),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("replicated_report", |b| {
        b.iter_batched(
            || edge.twin().clone(),
            |twin| apply(Some(twin), black_box(&patch), &at_edge),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("crdt_increment", |b| {
        b.iter_batched(
            || counting.twin().clone(),
            |twin| apply(Some(twin), black_box(&increment), &at_counting_edge),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("merge_change", |b| {
        b.iter_batched(
            || hub.twin().clone(),
            |twin| apply(Some(twin), black_box(&merge_change), &merged_at_hub),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("merge_snapshot", |b| {
        b.iter_batched(
            || edge_reported.clone(),
            |twin| apply(Some(twin), black_box(&merge_snapshot), &merged_at_edge),
            BatchSize::SmallInput,
        )
    });
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
    targets = replica
}
criterion_main!(benches);
