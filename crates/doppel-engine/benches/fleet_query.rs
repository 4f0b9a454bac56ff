//! Fleet queries over N twins (1M by default) held by the engine: found by index, counted, and
//! found by reading every twin.
//!
//! Setup writes N twins straight to a fjall store in a temporary directory (`TMPDIR` decides
//! where), each with the sensor's ~300-byte report, tags `site` (one of [`SITES`]) and `row`,
//! a device type (one of [`DEVICE_TYPES`]), a connection status (CONNECTED for 7 in 10, else
//! DISCONNECTED) and a desired state that differs from the report for 1 twin in 10. It then
//! starts the engine, with `reported.temperature` indexed besides the fixed paths, and waits
//! until the index the engine builds in the background is complete; the build time and the
//! memory the index takes are printed.
//!
//! Each measurement is one call of the engine's API, throughput in queries:
//! - `fleet_query/indexed_equality`: the first page of 100 twins of one site (1 % of the fleet)
//!   that are warmer than 20 °C; candidates come from the `tags.site` index.
//! - `fleet_query/indexed_count`: how many twins one site has; candidates from the index.
//! - `fleet_query/unindexed_scan`: the first page of twins with humidity above 90 %: no index
//!   covers it, so every twin of the tenant is read, and none matches (reports stay below 70 %),
//!   so the scan never stops early.
//! - `fleet_query/count_group_by_status`: the twins of one device type (10 % of the fleet),
//!   counted per connection status; candidates from the `device_type` index.
//!
//! Before measuring, each query runs once: its plan must be the one named above, and what it
//! found and how long it took are printed. That time decides the sampling: a query slower than
//! [`SLOW_QUERY`] is sampled flat, [`SLOW_SAMPLES`] times, about once per sample, so a 1M run
//! takes a few minutes.
//!
//! `DOPPEL_BENCH_TWINS` sets N (for example 10000 for a quick run). Without `--bench` (as under
//! `cargo test --all-targets`) criterion runs each benchmark once and N defaults to
//! [`TEST_MODE_TWINS`], so a test run stays quick; the plans are checked all the same.

#[path = "fixtures/harness.rs"]
mod harness;
#[path = "fixtures/sensor.rs"]
mod sensor;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use doppel_engine::{Engine, EngineConfig, IndexedPaths, Plan};
use doppel_model::codec::EncodedTwin;
use doppel_model::{ConnectionStatus, Millis, TenantId, TwinKey};
use doppel_query::{Path, Query, parse, parse_path};
use doppel_store::TwinWrite;
use harness::{
    CpuTime, Fleet, SplitMix, TENANT, memory, print_memory_growth, reported_then_desired, twin_key,
    twin_write, twins_wanted,
};
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Twins when criterion runs the benchmark as a test (no `--bench`): about 20 per site.
const TEST_MODE_TWINS: usize = 2_000;
/// Sites a twin may be tagged with: a query for one site finds 1 % of the fleet.
const SITES: u64 = 100;
/// Rows per site (`tags.row`): a second tag, so each twin is indexed under two.
const ROWS: u64 = 20;
/// Device types: a query for one type finds 10 % of the fleet.
const DEVICE_TYPES: u64 = 10;
/// Page size of the page queries: the HTTP API's default page.
const PAGE: usize = 100;
/// A query that took longer than this once is sampled flat, [`SLOW_SAMPLES`] times.
const SLOW_QUERY: Duration = Duration::from_millis(20);
/// Samples of a slow query: criterion's least.
const SLOW_SAMPLES: usize = 10;
/// Samples of a fast query, and how long they may take.
const FAST_SAMPLES: usize = 50;
const FAST_MEASUREMENT: Duration = Duration::from_secs(5);
/// How often the index is asked whether it is complete. Each look before then scans the keys
/// (not the twins) of every shard, so looking more often would take more from the build it
/// times.
const INDEX_POLL: Duration = Duration::from_millis(50);
/// How long the index may take before the benchmark gives up.
const INDEX_TIMEOUT: Duration = Duration::from_secs(600);
/// Records decoded to time one decode, the work every candidate costs a query.
const DECODE_SAMPLE: usize = 1_000;

/// The record of one twin: a report (device version 1), a desired state, tags, type and
/// connection. Desired differs from reported (`mode`) for 1 twin in 10 and agrees otherwise.
/// Tags, type and connection are set on the twin directly, not as further changes: queries only
/// read them, and each change applied costs setup time.
fn fleet_write(key: &TwinKey, now: Millis, rng: &mut SplitMix) -> TwinWrite {
    let (mut twin, entry) = reported_then_desired(now, rng, |rng| {
        if rng.below(10) == 0 {
            sensor::desired()
        } else {
            json!({"mode": "eco"})
        }
    });
    twin.meta.tags = [
        ("site".to_owned(), format!("site-{}", rng.below(SITES))),
        ("row".to_owned(), format!("row-{}", rng.below(ROWS))),
    ]
    .into();
    twin.meta.device_type = Some(format!("type-{}", rng.below(DEVICE_TYPES)));
    if rng.below(10) < 7 {
        twin.connection.status = ConnectionStatus::Connected;
        twin.connection.last_connected_at = Some(now);
    } else {
        twin.connection.status = ConnectionStatus::Disconnected;
        twin.connection.last_disconnected_at = Some(now);
    }
    twin_write(key, &twin, &entry)
}

fn query(text: &str) -> Query {
    parse(text).expect("a valid query")
}

fn path(text: &str) -> Path {
    parse_path(text).expect("a valid path")
}

/// One measured call of the engine.
enum Call {
    /// A first page of `query`.
    Page(Query),
    /// A count of `query`, per value of the path when there is one.
    Count(Query, Option<Path>),
}

impl Call {
    /// Runs the call once; returns what it found, for a line of output, and the plan of its
    /// query (a count's plan is that of the same query as a page, since both pick candidates
    /// alike).
    fn run(&self, runtime: &Runtime, engine: &Engine, tenant: &TenantId) -> (String, Plan) {
        runtime.block_on(async {
            match self {
                Call::Page(query) => {
                    let (page, plan) = engine
                        .query(tenant, query.clone(), None, PAGE, None)
                        .await
                        .expect("query");
                    let more = if page.next_cursor.is_some() {
                        "more follow"
                    } else {
                        "no more"
                    };
                    (
                        format!("a page of {} twins, {more}", page.twins.len()),
                        plan,
                    )
                }
                Call::Count(query, group_by) => {
                    let (total, groups) = engine
                        .count(tenant, query.clone(), group_by.clone())
                        .await
                        .expect("count");
                    let (_, plan) = engine
                        .query(tenant, query.clone(), None, 0, None)
                        .await
                        .expect("query");
                    let groups: Vec<String> = groups
                        .iter()
                        .map(|(value, count)| format!(", {value}: {count}"))
                        .collect();
                    (format!("{total} twins{}", groups.concat()), plan)
                }
            }
        })
    }

    /// The call as measured: nothing but the engine's answer.
    fn measured(&self, runtime: &Runtime, engine: &Engine, tenant: &TenantId) {
        runtime.block_on(async {
            match self {
                Call::Page(query) => {
                    black_box(engine.query(tenant, query.clone(), None, PAGE, None).await)
                        .expect("query");
                }
                Call::Count(query, group_by) => {
                    black_box(engine.count(tenant, query.clone(), group_by.clone()).await)
                        .expect("count");
                }
            }
        });
    }
}

/// Runs `call` once, checks it has the plan `expected`, then measures it as `name`.
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    fleet: &Fleet,
    tenant: &TenantId,
    name: &str,
    call: Call,
    expected: Plan,
) {
    let began = Instant::now();
    let (found, plan) = call.run(&fleet.runtime, &fleet.engine, tenant);
    let once = began.elapsed();
    println!("fleet_query: {name}: {found}, plan {plan:?}; once in {once:.2?}");
    assert_eq!(plan, expected, "{name} found its candidates another way");

    if once >= SLOW_QUERY {
        // About one call per sample: criterion's flat sampling divides the measurement time
        // evenly among the samples.
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(SLOW_SAMPLES)
            .warm_up_time(once)
            .measurement_time(once * SLOW_SAMPLES as u32);
    } else {
        group
            .sampling_mode(SamplingMode::Auto)
            .sample_size(FAST_SAMPLES)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(FAST_MEASUREMENT);
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| call.measured(&fleet.runtime, &fleet.engine, tenant))
    });
}

/// Waits until every shard's index covers the twins loaded at start, and prints how long that
/// took since `since` (the engine's start) and the memory the index took. Asks with a query of
/// a tenant without twins: until the index is complete its plan is a scan of the keys.
fn wait_for_index(fleet: &Fleet, since: (Instant, Option<CpuTime>), twins: usize) {
    let before = memory();
    let empty = TenantId::new("probe").expect("valid tenant id");
    let probe = query("tags.site = 'site-0'");
    let mut looks = 0_u32;
    loop {
        looks += 1;
        let (_, plan) = fleet
            .runtime
            .block_on(fleet.engine.query(&empty, probe.clone(), None, 1, None))
            .expect("probe query");
        if matches!(plan, Plan::Index(_)) {
            break;
        }
        assert!(
            since.0.elapsed() < INDEX_TIMEOUT,
            "the index was not complete after {INDEX_TIMEOUT:?}"
        );
        std::thread::sleep(INDEX_POLL);
    }
    let cpu = CpuTime::between(since.1, CpuTime::now());
    println!(
        "fleet_query: index complete {:.2?} after Engine::start returned ({:.2?} CPU, {:.0}% in the kernel; {looks} looks)",
        since.0.elapsed(),
        cpu.total(),
        cpu.system_percent()
    );
    print_memory_growth("fleet_query", "the index was complete", before, twins);
}

/// Prints how long decoding one twin record takes: the work a query does per candidate. The
/// records are made as the stored ones were.
fn time_decode() {
    let now = Millis(0);
    let records: Vec<TwinWrite> = (0..DECODE_SAMPLE)
        .map(|index| fleet_write(&twin_key(index), now, &mut SplitMix(index as u64)))
        .collect();
    let began = Instant::now();
    for record in &records {
        black_box(EncodedTwin::decode(&record.twin.0).expect("decode"));
    }
    println!(
        "fleet_query: decoding one {}-byte twin record takes {:.2?}",
        records.first().map_or(0, |record| record.twin.0.len()),
        began.elapsed() / DECODE_SAMPLE as u32
    );
}

fn fleet_query(c: &mut Criterion) {
    let twins = twins_wanted(TEST_MODE_TWINS);
    let config = EngineConfig {
        indexed_paths: IndexedPaths {
            state: vec![path("reported.temperature")],
        },
        ..EngineConfig::default()
    };
    let fleet = Fleet::start("fleet_query", twins, config, fleet_write);
    let started = (Instant::now(), CpuTime::now());
    wait_for_index(&fleet, started, twins);
    time_decode();

    let tenant = TenantId::new(TENANT).expect("valid tenant id");
    let site = || Plan::Index(path("tags.site"));
    let mut group = c.benchmark_group("fleet_query");
    measure(
        &mut group,
        &fleet,
        &tenant,
        "indexed_equality",
        Call::Page(query("tags.site = 'site-42' AND reported.temperature > 20")),
        site(),
    );
    measure(
        &mut group,
        &fleet,
        &tenant,
        "indexed_count",
        Call::Count(query("tags.site = 'site-42'"), None),
        site(),
    );
    measure(
        &mut group,
        &fleet,
        &tenant,
        "unindexed_scan",
        Call::Page(query("reported.humidity > 90")),
        Plan::Scan,
    );
    measure(
        &mut group,
        &fleet,
        &tenant,
        "count_group_by_status",
        Call::Count(
            query("device_type = 'type-3'"),
            Some(path("connection.status")),
        ),
        Plan::Index(path("device_type")),
    );
    group.finish();

    fleet.stop("fleet_query");
}

criterion_group!(benches, fleet_query);
criterion_main!(benches);
