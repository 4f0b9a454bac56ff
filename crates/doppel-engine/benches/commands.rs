//! A command's whole durable life through the engine: queue, deliver, acknowledge, each
//! committed (fsynced) to a fjall store in a temporary directory before it is answered.
//!
//! - `commands/life_in_flight_256`: 256 devices, each running command lives back to back, so
//!   workers group many changes per commit; throughput in command lives (three durable changes
//!   each) per second.
//! - `commands/life_single`: one device, one life at a time: the latency of three fsyncs in turn.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use doppel_engine::{Engine, EngineConfig, SystemClock};
use doppel_model::command::{CommandLimits, CommandResult, NewCommand};
use doppel_model::{DeviceId, TenantId, TwinKey};
use doppel_store::{FjallStore, HistoryBuckets};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const DEVICES_IN_FLIGHT: usize = 256;
/// Runtime worker threads: one per core of the 2-core machine the targets are set for.
const WORKER_THREADS: usize = 2;

fn device(index: usize) -> TwinKey {
    TwinKey::new(
        TenantId::new("bench").expect("valid tenant"),
        DeviceId::new(format!("device-{index}")).expect("valid device"),
    )
}

fn request() -> NewCommand {
    NewCommand {
        kind: "diagnostics.run".into(),
        payload: json!({"level": 2, "upload": "https://example.com/logs"}),
        priority: 0,
        ttl: Duration::from_secs(3600),
        idempotency_key: None,
    }
}

/// Queues, delivers and acknowledges one command of `key`'s device.
async fn life(engine: &Engine, key: &TwinKey) {
    let commands = engine.commands();
    let queued = commands
        .queue(key.clone(), request())
        .await
        .expect("queued");
    let delivered = commands
        .deliver(key.clone(), false, 1)
        .await
        .expect("delivered");
    assert_eq!(delivered.len(), 1);
    commands
        .acknowledge(
            key.clone(),
            queued.command.id.clone(),
            CommandResult::Succeeded,
            Some(json!({"ok": true})),
        )
        .await
        .expect("acknowledged");
}

async fn lives(engine: &Engine, devices: usize, rounds: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..devices {
        let engine = engine.clone();
        tasks.spawn(async move {
            let key = device(index);
            for _ in 0..rounds {
                life(&engine, &key).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("device task");
    }
    started.elapsed()
}

fn commands(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = start(&runtime, dir.path());
    let mut group = c.benchmark_group("commands");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.throughput(Throughput::Elements(DEVICES_IN_FLIGHT as u64));
    group.bench_function("life_in_flight_256", |b| {
        b.iter_custom(|rounds| runtime.block_on(lives(&engine, DEVICES_IN_FLIGHT, rounds)));
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("life_single", |b| {
        b.iter_custom(|rounds| runtime.block_on(lives(&engine, 1, rounds)));
    });
    group.finish();
}

fn start(runtime: &Runtime, dir: &std::path::Path) -> Engine {
    let store = FjallStore::open(dir, HistoryBuckets::new(24 * 3600 * 1000)).expect("store");
    let config = EngineConfig {
        shards: WORKER_THREADS,
        commands: CommandLimits::default(),
        ..EngineConfig::default()
    };
    runtime
        .block_on(Engine::start(
            Arc::new(store),
            Arc::new(SystemClock),
            config,
        ))
        .expect("engine")
        .0
}

criterion_group!(benches, commands);
criterion_main!(benches);
