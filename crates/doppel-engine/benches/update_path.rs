//! The engine's update path under load: apply a ~300-byte reported update to one of N twins
//! (1M by default), compute the delta, make it durable in a group commit across shards, append
//! history.
//!
//! Setup writes N twins straight to a fjall store in a temporary directory (`TMPDIR` decides
//! where), each with a realistic reported state and a desired state that differs from it, then
//! starts the engine on that store, which loads every twin into memory (its time is printed).
//!
//! Two measurements follow, each counting acknowledged (durable) updates:
//! - `update_path/in_flight_4096`: [`IN_FLIGHT`] writers, each sending its next report as soon as
//!   the previous one is acknowledged, so about that many updates are always queued; throughput
//!   in updates per second.
//! - `update_path/single_writer`: one writer, one update at a time; the time per update is the
//!   durable latency of one update, bound by one fsync.
//! - `update_path/store_alone`: the baseline for the first: the same store written directly,
//!   with no engine, in commits of as many writes as the engine's commits had on average in
//!   `in_flight_4096`, each write a twin record and its history entry of the same sizes as an
//!   update's (`FjallStore::commit_group`: one fjall batch, then `persist(SyncAll)`, the fsync
//!   policy the engine uses). The ratio of the two rates is what the engine's own work costs.
//!
//! The requests are built before the timer starts, so the figures are the engine's own work (and
//! the delta the caller computes from the acknowledged twin), not JSON building in the client.
//!
//! `DOPPEL_BENCH_TWINS` sets N (for example 10000 for a quick run). Without `--bench` (as under
//! `cargo test --all-targets`) criterion runs each benchmark once and N defaults to
//! [`TEST_MODE_TWINS`], so a test run stays quick.

#[path = "fixtures/harness.rs"]
mod harness;
#[path = "fixtures/sensor.rs"]
mod sensor;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use doppel_engine::{Clock, Engine, EngineConfig, Outcome, SystemClock};
use doppel_model::{Millis, TwinKey, UpdateRequest};
use doppel_store::{TwinStore, TwinWrite};
use harness::{
    CpuTime, Fleet, SplitMix, WORKER_THREADS, report, reported_then_desired, reported_update,
    twin_write, twins_wanted,
};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The hub's allocator (crates/doppel/src/main.rs), so that these figures are the hub's.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Twins when criterion runs the benchmark as a test (no `--bench`): enough to exercise the path.
const TEST_MODE_TWINS: usize = 1_000;
/// Updates kept in flight by the throughput benchmark: the engine's default queue depth, enough
/// to fill the largest commit group every shard may make.
const IN_FLIGHT: usize = 4096;

/// The record of one pre-populated twin: first reported (device version 1), then desired. Only
/// the last change's history entry is written: one entry per twin is enough for the benchmark's
/// history appends to land among existing entries.
fn initial_write(key: &TwinKey, now: Millis, rng: &mut SplitMix) -> TwinWrite {
    let (twin, entry) = reported_then_desired(now, rng, |_| sensor::desired());
    twin_write(key, &twin, &entry)
}

/// What the writers saw.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    applied: u64,
    stale: u64,
    /// Twins whose delta after the update was not empty; should be every applied one.
    with_delta: u64,
    /// Time from the first send to the last acknowledgement, summed over runs.
    timed: Duration,
    /// CPU time of the whole process (engine, store, writers) within `timed`.
    cpu: CpuTime,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.applied += other.applied;
        self.stale += other.stale;
        self.with_delta += other.with_delta;
        self.timed += other.timed;
        self.cpu.add(other.cpu);
    }
}

/// Sends `plan` one update at a time, each after the previous one is acknowledged, and computes
/// the delta of every acknowledged twin as an adapter does before publishing it.
async fn write_in_turn(engine: Engine, plan: Vec<(TwinKey, UpdateRequest)>) -> Tally {
    let mut tally = Tally::default();
    for (key, request) in plan {
        match engine
            .update(key, request)
            .await
            .expect("update acknowledged")
        {
            Outcome::Changed(twin) => {
                tally.applied += 1;
                if !black_box(twin.delta()).is_empty() {
                    tally.with_delta += 1;
                }
            }
            Outcome::Stale(_) => tally.stale += 1,
        }
    }
    tally
}

struct Fixture {
    fleet: Fleet,
    rng: SplitMix,
    /// Device versions only grow, across both benchmarks, so a report is stale only when a later
    /// report for the same twin, sent by another writer, overtook it.
    next_device_version: u64,
    tally: Tally,
}

impl Fixture {
    fn next_request(&mut self) -> (TwinKey, UpdateRequest) {
        let index = self.rng.below(self.fleet.keys.len() as u64) as usize;
        self.next_device_version += 1;
        let patch = report(self.next_device_version, &mut self.rng);
        (
            self.fleet.keys[index].clone(),
            reported_update(patch, self.next_device_version),
        )
    }

    /// Plans for `writers` writers of `rounds` updates each. Round-major, so device versions grow
    /// in about the order the updates reach the engine.
    fn plans(&mut self, writers: usize, rounds: u64) -> Vec<Vec<(TwinKey, UpdateRequest)>> {
        let rounds = usize::try_from(rounds).expect("rounds fit in memory");
        let mut plans: Vec<Vec<_>> = (0..writers).map(|_| Vec::with_capacity(rounds)).collect();
        for _ in 0..rounds {
            for plan in &mut plans {
                plan.push(self.next_request());
            }
        }
        plans
    }

    /// Runs the plans of `writers` writers of `rounds` updates each; returns the time from the
    /// first send to the last acknowledgement.
    fn run(&mut self, writers: usize, rounds: u64) -> Duration {
        let plans = self.plans(writers, rounds);
        let engine = self.fleet.engine.clone();
        let cpu_before = CpuTime::now();
        let mut tally = self.fleet.runtime.block_on(async move {
            let start = Instant::now();
            let mut running = JoinSet::new();
            for plan in plans {
                running.spawn(write_in_turn(engine.clone(), plan));
            }
            let mut tally = Tally::default();
            while let Some(done) = running.join_next().await {
                tally.add(done.expect("writer task"));
            }
            tally.timed = start.elapsed();
            tally
        });
        tally.cpu = CpuTime::between(cpu_before, CpuTime::now());
        self.tally.add(tally);
        tally.timed
    }
}

/// Benchmarks `writers` concurrent writers as `name`, then prints what the engine did for it.
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    fixture: &mut Fixture,
    name: &str,
    writers: usize,
) -> Option<Throughputs> {
    let before = fixture.fleet.engine.stats();
    fixture.tally = Tally::default();
    group.throughput(Throughput::Elements(writers as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|rounds| fixture.run(writers, rounds))
    });
    let (after, tally) = (fixture.fleet.engine.stats(), fixture.tally);
    if tally.applied + tally.stale == 0 {
        return None; // filtered out
    }
    let commits = after.commits - before.commits;
    let writes = after.writes - before.writes;
    let seconds = tally.timed.as_secs_f64();
    println!(
        "{name}: {writes} durable writes in {commits} commits ({:.1} writes per commit, {:.0} commits/s), {} failed; \
         {:.0} updates/s over all runs; CPU {:.2} of {WORKER_THREADS} cores ({:.0}% in the kernel), {:.1} us CPU per update; \
         writers saw {} applied, {} stale, {} with a non-empty delta",
        writes as f64 / commits.max(1) as f64,
        commits as f64 / seconds,
        after.failed_commits - before.failed_commits,
        (tally.applied + tally.stale) as f64 / seconds,
        tally.cpu.total().as_secs_f64() / seconds,
        tally.cpu.system_percent(),
        tally.cpu.total().as_secs_f64() * 1e6 / (tally.applied + tally.stale) as f64,
        tally.applied,
        tally.stale,
        tally.with_delta
    );
    Some(Throughputs {
        writes_per_commit: writes as f64 / commits.max(1) as f64,
        updates_per_second: (tally.applied + tally.stale) as f64 / seconds,
    })
}

/// What a throughput measurement found.
#[derive(Clone, Copy, Debug)]
struct Throughputs {
    writes_per_commit: f64,
    updates_per_second: f64,
}

/// Distinct commits the baseline cycles through: enough that consecutive commits write other
/// twins, few enough to build before timing.
const STORE_ALONE_COMMITS: usize = 64;

/// The baseline: commits of `batch` writes straight to the engine's store, with no engine in the
/// way; prints its rate beside `engine`'s.
fn measure_store_alone(
    group: &mut BenchmarkGroup<'_, WallTime>,
    fixture: &mut Fixture,
    engine: Throughputs,
) {
    let batch = (engine.writes_per_commit.round() as usize).max(1);
    let now = SystemClock.now();
    let commits: Vec<Vec<TwinWrite>> = (0..STORE_ALONE_COMMITS)
        .map(|_| {
            (0..batch)
                .map(|_| {
                    let index = fixture.rng.below(fixture.fleet.keys.len() as u64) as usize;
                    initial_write(&fixture.fleet.keys[index], now, &mut fixture.rng)
                })
                .collect()
        })
        .collect();
    let store = fixture.fleet.store.clone();
    let mut timed = Duration::ZERO;
    let mut written = 0u64;
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("store_alone", |b| {
        b.iter_custom(|rounds| {
            let start = Instant::now();
            for round in 0..rounds {
                let writes = &commits[round as usize % STORE_ALONE_COMMITS];
                store.commit_group(writes, &[]).expect("a durable commit");
            }
            let elapsed = start.elapsed();
            timed += elapsed;
            written += rounds * batch as u64;
            elapsed
        })
    });
    if written == 0 {
        return; // filtered out
    }
    let rate = written as f64 / timed.as_secs_f64();
    println!(
        "store_alone: {batch} writes per commit, {rate:.0} writes/s; the engine's {:.0} updates/s is {:.2} of it",
        engine.updates_per_second,
        engine.updates_per_second / rate
    );
}

fn update_path(c: &mut Criterion) {
    let fleet = Fleet::start(
        "update_path",
        twins_wanted(TEST_MODE_TWINS),
        EngineConfig::default(),
        initial_write,
    );
    let mut fixture = Fixture {
        fleet,
        rng: SplitMix(42),
        next_device_version: 1,
        tally: Tally::default(),
    };
    let mut group = c.benchmark_group("update_path");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20));
    let in_flight = measure(
        &mut group,
        &mut fixture,
        &format!("in_flight_{IN_FLIGHT}"),
        IN_FLIGHT,
    );
    if let Some(engine) = in_flight {
        measure_store_alone(&mut group, &mut fixture, engine);
    }
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    measure(&mut group, &mut fixture, "single_writer", 1);
    group.finish();

    fixture.fleet.stop("update_path");
}

criterion_group!(benches, update_path);
criterion_main!(benches);
