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
//!
//! The requests are built before the timer starts, so the figures are the engine's own work (and
//! the delta the caller computes from the acknowledged twin), not JSON building in the client.
//!
//! `DOPPEL_BENCH_TWINS` sets N (for example 10000 for a quick run). Without `--bench` (as under
//! `cargo test --all-targets`) criterion runs each benchmark once and N defaults to
//! [`TEST_MODE_TWINS`], so a test run stays quick.

#[path = "fixtures/sensor.rs"]
mod sensor;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use doppel_engine::{Clock, Engine, EngineConfig, EngineTasks, Outcome, SystemClock};
use doppel_model::codec::{EncodedHistory, EncodedTwin};
use doppel_model::{
    Applied, Change, DeviceId, Limits, Millis, TenantId, Twin, TwinKey, UpdateRequest, apply,
};
use doppel_store::{FjallStore, HistoryBuckets, TwinStore, TwinWrite};
use serde_json::Value;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Twins in the store when `DOPPEL_BENCH_TWINS` is not set: the fleet size the issue names.
const DEFAULT_TWINS: usize = 1_000_000;
/// Twins when criterion runs the benchmark as a test (no `--bench`): enough to exercise the path.
const TEST_MODE_TWINS: usize = 1_000;
/// Updates kept in flight by the throughput benchmark: the engine's default queue depth, enough
/// to fill the largest commit group every shard may make.
const IN_FLIGHT: usize = 4096;
/// Twins per store commit while pre-populating: large batches make setup fast.
const PREPOPULATE_BATCH: usize = 10_000;
/// Runtime worker threads: one per core of the 2-core machine the target is set for.
const WORKER_THREADS: usize = 2;
const TENANT: &str = "bench";
/// The benchmark stops itself when the machine's available memory falls below this many MiB
/// (`DOPPEL_BENCH_MIN_AVAILABLE_MIB` overrides), so that a fleet too large for memory ends this
/// process with a message instead of letting the kernel's OOM killer pick a victim, which may
/// be another process on a shared machine.
const DEFAULT_MIN_AVAILABLE_MIB: u64 = 2048;
/// How often the memory watchdog looks; loading grew memory by under 1 GiB per second here, so
/// memory cannot fall far below the floor between two looks.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(100);

/// A small deterministic generator (SplitMix64), so the benchmark needs no extra dependency and
/// every run sends the same sequence of twins and values.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A report whose values `sequence` and the generator vary as a real device's would.
fn report(sequence: u64, rng: &mut SplitMix) -> Value {
    sensor::report(&sensor::Readings {
        temperature: 18.0 + rng.below(100) as f64 / 10.0,
        humidity: 30.0 + rng.below(400) as f64 / 10.0,
        pressure: 990.0 + rng.below(400) as f64 / 10.0,
        co2_ppm: 400 + rng.below(800),
        battery_level: rng.below(101),
        voltage: 3.3 + rng.below(90) as f64 / 100.0,
        charging: rng.below(2) == 1,
        light_level: rng.below(10),
        rssi: -40 - rng.below(50) as i64,
        uptime_s: sequence * 60,
    })
}

fn twin_key(index: usize) -> TwinKey {
    let tenant = TenantId::new(TENANT).expect("valid tenant id");
    TwinKey::new(
        tenant,
        DeviceId::new(format!("sensor-{index:07}")).expect("valid device id"),
    )
}

fn reported_update(patch: Value, device_version: u64) -> UpdateRequest {
    UpdateRequest {
        change: Change::Reported {
            patch,
            device_version: Some(device_version),
        },
        expected_version: None,
        changed_by: "bench-device".into(),
        change_reason: None,
        client_token: None,
    }
}

fn changed(
    result: Result<Applied, doppel_model::ModelError>,
) -> (Twin, doppel_model::HistoryEntry) {
    match result.expect("setup change is valid") {
        Applied::Changed { twin, entry } => (twin, entry),
        Applied::Stale { .. } => panic!("setup change was stale"),
    }
}

/// The record of one pre-populated twin: first reported (device version 1), then desired. Only
/// the last change's history entry is written: one entry per twin is enough for the benchmark's
/// history appends to land among existing entries.
fn initial_write(key: &TwinKey, now: Millis, rng: &mut SplitMix) -> TwinWrite {
    let limits = Limits::default();
    let (twin, _) = changed(apply(
        None,
        &reported_update(report(1, rng), 1),
        now,
        &limits,
    ));
    let desire = UpdateRequest {
        change: Change::DesiredPatch(sensor::desired()),
        expected_version: None,
        changed_by: "bench-app".into(),
        change_reason: None,
        client_token: None,
    };
    let (twin, entry) = changed(apply(Some(twin), &desire, now, &limits));
    TwinWrite {
        key: key.clone(),
        twin: EncodedTwin::encode(&twin),
        version: entry.version,
        recorded_at: entry.recorded_at,
        history: EncodedHistory::encode(&entry),
    }
}

/// Writes every twin of `keys` to `store`, in batches, on every core.
fn prepopulate(store: &FjallStore, keys: &[TwinKey], now: Millis) {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let per_thread = keys.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (thread, part) in keys.chunks(per_thread).enumerate() {
            scope.spawn(move || {
                let mut rng = SplitMix(thread as u64);
                for batch in part.chunks(PREPOPULATE_BATCH) {
                    let writes: Vec<TwinWrite> = batch
                        .iter()
                        .map(|key| initial_write(key, now, &mut rng))
                        .collect();
                    store.commit(&writes).expect("pre-populate commit");
                }
            });
        }
    });
}

/// The machine's available memory in bytes, when Linux tells.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Watches available memory from a thread of its own; below the floor it removes the data
/// directory (exiting skips destructors) and exits.
fn watch_memory(data: std::path::PathBuf) {
    let floor_mib = std::env::var("DOPPEL_BENCH_MIN_AVAILABLE_MIB")
        .map(|text| {
            text.trim()
                .parse()
                .expect("DOPPEL_BENCH_MIN_AVAILABLE_MIB is a number of MiB")
        })
        .unwrap_or(DEFAULT_MIN_AVAILABLE_MIB);
    let floor = floor_mib * 1024 * 1024;
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(WATCHDOG_INTERVAL);
            let Some(available) = available_memory() else {
                return;
            };
            if available < floor {
                let resident = memory().map_or(0.0, |(rss, _)| mib(rss));
                eprintln!(
                    "update_path: stopping: the machine has {:.0} MiB available, below the floor of {floor_mib} MiB, \
                     with this process at {resident:.0} MiB resident; use fewer twins (DOPPEL_BENCH_TWINS)",
                    mib(available)
                );
                let _ = std::fs::remove_dir_all(&data);
                std::process::exit(2);
            }
        }
    });
}

/// This process's resident memory now and at its peak, in bytes, when Linux tells.
fn memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU time of this whole process (all threads), split into user and kernel time.
#[derive(Clone, Copy, Debug, Default)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

impl CpuTime {
    /// CPU time used so far, when Linux tells (in ticks of 10 ms: Linux's USER_HZ is 100).
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which ends at the last ')': state is field 3, utime 14,
        // stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
        Some(Self {
            user: Duration::from_millis(ticks(11)? * 10),
            system: Duration::from_millis(ticks(12)? * 10),
        })
    }

    /// The CPU time used between `earlier` and `later`, when both are known.
    fn between(earlier: Option<Self>, later: Option<Self>) -> Self {
        match (earlier, later) {
            (Some(earlier), Some(later)) => Self {
                user: later.user.saturating_sub(earlier.user),
                system: later.system.saturating_sub(earlier.system),
            },
            _ => Self::default(),
        }
    }

    fn add(&mut self, other: Self) {
        self.user += other.user;
        self.system += other.system;
    }

    fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The share of the time spent in the kernel, in percent.
    fn system_percent(&self) -> f64 {
        100.0 * self.system.as_secs_f64() / self.total().as_secs_f64().max(f64::MIN_POSITIVE)
    }
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
            Outcome::Applied(twin) => {
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
    runtime: Runtime,
    engine: Engine,
    keys: Vec<TwinKey>,
    rng: SplitMix,
    /// Device versions only grow, across both benchmarks, so a report is stale only when a later
    /// report for the same twin, sent by another writer, overtook it.
    next_device_version: u64,
    tally: Tally,
}

impl Fixture {
    fn next_request(&mut self) -> (TwinKey, UpdateRequest) {
        let index = self.rng.below(self.keys.len() as u64) as usize;
        self.next_device_version += 1;
        let patch = report(self.next_device_version, &mut self.rng);
        (
            self.keys[index].clone(),
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
        let engine = self.engine.clone();
        let cpu_before = CpuTime::now();
        let mut tally = self.runtime.block_on(async move {
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
) {
    let before = fixture.engine.stats();
    fixture.tally = Tally::default();
    group.throughput(Throughput::Elements(writers as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|rounds| fixture.run(writers, rounds))
    });
    let (after, tally) = (fixture.engine.stats(), fixture.tally);
    if tally.applied + tally.stale == 0 {
        return; // filtered out
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
}

fn twins_wanted() -> usize {
    match std::env::var("DOPPEL_BENCH_TWINS") {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .expect("DOPPEL_BENCH_TWINS is a number of twins"),
        Err(_) if std::env::args().any(|arg| arg == "--bench") => DEFAULT_TWINS,
        Err(_) => TEST_MODE_TWINS,
    }
}

fn start(twins: usize) -> (Fixture, EngineTasks, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    watch_memory(dir.path().to_path_buf());
    let clock = Arc::new(SystemClock);
    let store = FjallStore::open(dir.path(), HistoryBuckets::new(24 * 3600 * 1000))
        .expect("open the store");
    let keys: Vec<TwinKey> = (0..twins).map(twin_key).collect();
    let mut sample_rng = SplitMix(u64::MAX);
    let sample = serde_json::to_vec(&report(1, &mut sample_rng)).expect("serialize a report");
    let record = initial_write(&twin_key(0), clock.now(), &mut sample_rng);
    println!(
        "update_path: {twins} twins, reports of {} bytes, twin records of {} bytes, history entries of {} bytes, data in {}",
        sample.len(),
        record.twin.0.len(),
        record.history.0.len(),
        dir.path().display()
    );

    let began = Instant::now();
    prepopulate(&store, &keys, clock.now());
    println!(
        "update_path: wrote {twins} twins to the store in {:.2?}",
        began.elapsed()
    );
    let before_load = memory();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (began, cpu_before) = (Instant::now(), CpuTime::now());
    let (engine, tasks) = runtime
        .block_on(Engine::start(
            Arc::new(store),
            clock,
            EngineConfig::default(),
        ))
        .expect("engine start");
    let (loaded, cpu) = (
        began.elapsed(),
        CpuTime::between(cpu_before, CpuTime::now()),
    );
    println!(
        "update_path: Engine::start loaded {} twins in {loaded:.2?} ({:.2?} CPU, {:.0}% in the kernel)",
        engine.stats().twins,
        cpu.total(),
        cpu.system_percent()
    );
    if let (Some((rss_before, _)), Some((rss_after, peak))) = (before_load, memory()) {
        let grown = rss_after.saturating_sub(rss_before);
        println!(
            "update_path: resident memory {:.0} MiB before start, {:.0} MiB after (+{:.0} bytes per twin), peak so far {:.0} MiB",
            mib(rss_before),
            mib(rss_after),
            grown as f64 / twins.max(1) as f64,
            mib(peak)
        );
    }
    let fixture = Fixture {
        runtime,
        engine,
        keys,
        rng: SplitMix(42),
        next_device_version: 1,
        tally: Tally::default(),
    };
    (fixture, tasks, dir)
}

fn update_path(c: &mut Criterion) {
    let (mut fixture, tasks, dir) = start(twins_wanted());
    let mut group = c.benchmark_group("update_path");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20));
    measure(
        &mut group,
        &mut fixture,
        &format!("in_flight_{IN_FLIGHT}"),
        IN_FLIGHT,
    );
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    measure(&mut group, &mut fixture, "single_writer", 1);
    group.finish();

    if let Some((_, peak)) = memory() {
        println!("update_path: peak resident memory {:.0} MiB", mib(peak));
    }
    let Fixture {
        runtime, engine, ..
    } = fixture;
    drop(engine);
    runtime.block_on(tasks.join());
    drop(runtime);
    drop(dir);
}

criterion_group!(benches, update_path);
criterion_main!(benches);
