//! `doppel bench http`: a closed-loop load generator for the twin routes of the HTTP API, for
//! `scripts/bench-http` (docs/BENCHMARKS.md, "HTTP API").
//!
//! `--concurrency` workers each send one request, wait for the whole answer, and send the next,
//! until the run ends. Each request goes to a twin picked at random among
//! `{prefix}-{0..twins:07}`, the names `doppel bench seed` gives, so the hub must hold them:
//! a check before the run fails with one line when it does not. Two modes:
//! - `get`: `GET /v1/tenants/{tenant}/twins/{device}`, the whole twin (1.9 KB of JSON for
//!   a seeded one).
//! - `patch`: `PATCH /v1/tenants/{tenant}/twins/{device}/desired` with a 27-byte merge patch of
//!   `target_temperature`, which the hub answers (with the whole twin) once the change is durable.
//!
//! Only requests that complete between the end of the warm-up and the end of the run count, as
//! in `crates/doppel/examples/mqtt_load.rs`; failed requests (a transport error or an answer
//! other than 2xx) are counted apart, over the whole run. Latencies go into a fixed-size
//! log-linear histogram per worker. It prints progress on standard error and one `result` line
//! of `key=value` fields on standard output (rate in completed requests per second, latencies
//! in milliseconds), and exits non-zero when any request failed.

use super::cpu::cpu_time;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use doppel_model::{DeviceId, TenantId};
use reqwest::{StatusCode, Url};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest a request may take. Far above any answer of a working hub (an in-memory read or one
/// group commit), so it only ends a run that a stuck hub would otherwise keep open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often progress goes to standard error.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Failure messages kept to print after the run: enough to see whether they differ.
const MAX_KEPT_ERRORS: usize = 5;

/// Options of `doppel bench http`.
#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Base URL of the hub's HTTP API (plain http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Which request every worker sends.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Twins to pick from, `{prefix}-0000000` upwards; the hub must hold all of them (seed
    /// them with `doppel bench seed --twins N`).
    #[arg(long, default_value_t = 1_000_000)]
    twins: u64,
    /// Workers, each with one request in flight (and its own pooled connection).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long the workers send, warm-up included.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The first part of the run, whose requests are not counted (connections open here).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// The twins' tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Device ids are `{prefix}-{n:07}`.
    #[arg(long, default_value = "sensor")]
    prefix: String,
    /// Threads of the generator's runtime. One keeps the generator to at most one core of a
    /// machine it shares with the hub; its CPU use is in the result line either way.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the twin picks: runs with the same seed and concurrency pick the same twins in
    /// each worker.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A process (the hub) whose CPU time to report for the measured part of the run.
    #[arg(long)]
    server_pid: Option<u32>,
    /// API token with the role app-write (PATCH) or app-read (GET); the hub's admin.token will do.
    #[arg(long, env = "DOPPEL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// The request a worker sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Read the whole twin.
    Get,
    /// Merge-patch the desired state; durable before the answer.
    Patch,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Get => "get",
            Mode::Patch => "patch",
        }
    }
}

/// Runs the load and prints its result line; fails when the flags are unusable, the hub lacks
/// the twins, or any request failed.
pub fn run(args: &HttpArgs) -> anyhow::Result<()> {
    let plan = Plan::new(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(load(Arc::new(plan)))?;
    println!("result {}", outcome.fields(args).join(" "));
    for error in &outcome.tally.kept_errors {
        eprintln!("doppel bench http: error: {error}");
    }
    if outcome.tally.errors > 0 {
        bail!(
            "{} requests failed; the first: {}",
            outcome.tally.errors,
            outcome
                .tally
                .kept_errors
                .first()
                .map_or("(none kept)", String::as_str)
        );
    }
    if outcome.tally.latencies.count() == 0 {
        bail!("no request completed within the measured part of the run");
    }
    Ok(())
}

/// The checked flags and the client every worker shares.
struct Plan {
    mode: Mode,
    twins: u64,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    seed: u64,
    server_pid: Option<u32>,
    /// `{server}/v1/tenants/{tenant}/twins/{prefix}-`: a device's URL is this and its number.
    twin_url_prefix: String,
    /// One pool of keep-alive connections for all workers.
    client: reqwest::Client,
    /// Completions and failures so far (warm-up included), for the progress lines only.
    progress: Progress,
}

/// Counters the workers bump and the progress task reads.
#[derive(Default)]
struct Progress {
    completed: AtomicU64,
    failed: AtomicU64,
}

impl Plan {
    fn new(args: &HttpArgs) -> anyhow::Result<Plan> {
        if args.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if args.twins == 0 {
            bail!("--twins must be at least 1");
        }
        if args.threads == 0 {
            bail!("--threads must be at least 1");
        }
        if args.warmup >= args.duration {
            bail!(
                "--warmup ({}) must be shorter than --duration ({})",
                humantime::format_duration(args.warmup),
                humantime::format_duration(args.duration)
            );
        }
        let server = args.server.trim_end_matches('/');
        let url = Url::parse(server).with_context(|| format!("--server {server:?}"))?;
        if url.scheme() != "http" {
            bail!("--server {server:?}: plain http:// only");
        }
        // The ids' alphabet needs no escaping in a URL, so checking them here keeps every
        // request's URL well formed.
        TenantId::new(args.tenant.as_str()).context("--tenant")?;
        DeviceId::new(device_name(&args.prefix, args.twins - 1)).context("--prefix")?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &args.token {
            let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("--token holds characters a header cannot")?;
            headers.insert(reqwest::header::AUTHORIZATION, bearer);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(args.concurrency)
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Plan {
            mode: args.mode,
            twins: args.twins,
            concurrency: args.concurrency,
            duration: args.duration,
            warmup: args.warmup,
            seed: args.seed,
            server_pid: args.server_pid,
            twin_url_prefix: format!("{server}/v1/tenants/{}/twins/{}-", args.tenant, args.prefix),
            client,
            progress: Progress::default(),
        })
    }

    fn twin_url(&self, index: u64) -> String {
        format!("{}{index:07}", self.twin_url_prefix)
    }
}

/// The device id of twin `index`, as `doppel bench seed` names it.
fn device_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:07}")
}

/// Checks that the hub answers and holds the first and the last twin, so a run against the
/// wrong hub or a smaller store fails at once with one line instead of with a million errors
/// (or, in `patch` mode, by quietly creating twins).
async fn check_twins(plan: &Plan) -> anyhow::Result<()> {
    for index in [0, plan.twins - 1] {
        let url = plan.twin_url(index);
        let response = plan
            .client
            .get(&url)
            .send()
            .await
            .map_err(|err| anyhow::anyhow!("cannot reach the hub: {}", error_chain(&err)))?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::NOT_FOUND => bail!(
                "the hub has no twin at {url}; seed the twins with `doppel bench seed --twins {}` \
                 (and the same --tenant and --prefix)",
                plan.twins
            ),
            status => bail!("GET {url} answered HTTP {status}"),
        }
    }
    Ok(())
}

/// What the run measured.
struct Outcome {
    tally: Tally,
    /// The measured part of the run.
    window: Duration,
    /// CPU time of this process over the window.
    client_cpu: Option<Duration>,
    /// CPU time of `--server-pid` over the window.
    server_cpu: Option<Duration>,
}

impl Outcome {
    /// The result line's `key=value` fields: the ones scripts read first, then the context.
    fn fields(&self, args: &HttpArgs) -> Vec<String> {
        let seconds = self.window.as_secs_f64();
        let requests = self.tally.latencies.count();
        let millis = |fraction: f64| {
            self.tally
                .latencies
                .percentile(fraction)
                .map_or("nan".to_owned(), |latency| {
                    format!("{:.3}", latency.as_secs_f64() * 1000.0)
                })
        };
        let cores = |cpu: Option<Duration>| {
            cpu.map_or("nan".to_owned(), |cpu| {
                format!("{:.2}", cpu.as_secs_f64() / seconds)
            })
        };
        let server_us = self.server_cpu.map_or("nan".to_owned(), |cpu| {
            format!("{:.1}", cpu.as_secs_f64() * 1e6 / requests.max(1) as f64)
        });
        [
            ("mode", args.mode.name().to_owned()),
            ("concurrency", args.concurrency.to_string()),
            ("requests", requests.to_string()),
            ("rate", format!("{:.0}", requests as f64 / seconds)),
            ("p50_ms", millis(0.50)),
            ("p99_ms", millis(0.99)),
            ("p999_ms", millis(0.999)),
            ("errors", self.tally.errors.to_string()),
            ("max_ms", millis(1.0)),
            ("seconds", format!("{seconds:.1}")),
            ("twins", args.twins.to_string()),
            ("threads", args.threads.to_string()),
            ("client_cores", cores(self.client_cpu)),
            ("server_cores", cores(self.server_cpu)),
            ("server_us_per_request", server_us),
        ]
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect()
    }
}

/// Checks the hub, runs the workers for the whole duration, and gathers their tallies.
async fn load(plan: Arc<Plan>) -> anyhow::Result<Outcome> {
    check_twins(&plan).await?;
    eprintln!(
        "doppel bench http: {} mode, {} workers, {} twins, {} ({} warm-up), generator threads: {}",
        plan.mode.name(),
        plan.concurrency,
        plan.twins,
        humantime::format_duration(plan.duration),
        humantime::format_duration(plan.warmup),
        tokio::runtime::Handle::current().metrics().num_workers(),
    );
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let stop = start + plan.duration;
    let cpu = tokio::spawn(cpu_over_window(plan.clone(), measure_from, stop));
    let progress = tokio::spawn(report_progress(plan.clone(), start, stop));
    let mut workers = tokio::task::JoinSet::new();
    // Each worker's generator starts from an output of the run's: starting them at `seed + i`
    // would make them replay each other's picks a step apart, as SplitMix64 advances its state
    // by a constant.
    let mut seeds = SplitMix64::new(plan.seed);
    for _ in 0..plan.concurrency {
        workers.spawn(worker(plan.clone(), seeds.next_u64(), measure_from, stop));
    }
    let mut tally = Tally::default();
    while let Some(done) = workers.join_next().await {
        tally.add(done.context("a worker panicked")?);
    }
    progress.abort();
    let (client_cpu, server_cpu) = cpu.await.context("the CPU sampler panicked")?;
    Ok(Outcome {
        tally,
        window: stop - measure_from,
        client_cpu,
        server_cpu,
    })
}

/// One closed-loop worker: a request, its whole answer, the next request, until `stop`.
async fn worker(plan: Arc<Plan>, seed: u64, measure_from: Instant, stop: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut picks = SplitMix64::new(seed);
    let mut sequence = 0u64;
    loop {
        let sent = Instant::now();
        if sent >= stop {
            break;
        }
        let twin = picks.below(plan.twins);
        let url = plan.twin_url(twin);
        let request = match plan.mode {
            Mode::Get => plan.client.get(url),
            Mode::Patch => {
                sequence += 1;
                plan.client
                    .patch(format!("{url}/desired"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(desired_patch(sequence))
            }
        };
        let failure = match request.send().await {
            // Reading the whole body is part of the request, and lets the connection be reused.
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(_) if status.is_success() => None,
                    Ok(_) => Some(format!("HTTP {status}")),
                    Err(err) => Some(error_chain(&err)),
                }
            }
            Err(err) => Some(error_chain(&err)),
        };
        let done = Instant::now();
        match failure {
            None => {
                plan.progress.completed.fetch_add(1, Ordering::Relaxed);
                if done >= measure_from && done < stop {
                    tally.latencies.record(done - sent);
                }
            }
            Some(message) => {
                plan.progress.failed.fetch_add(1, Ordering::Relaxed);
                tally.errors += 1;
                if tally.kept_errors.len() < MAX_KEPT_ERRORS {
                    tally.kept_errors.push(format!(
                        "{} {}: {message}",
                        plan.mode.name(),
                        plan.twin_url(twin)
                    ));
                }
            }
        }
    }
    tally
}

/// The desired-state patch of a worker's `sequence`-th request: a new `target_temperature`
/// each time (20.5 to 21.4), as an application adjusting a setpoint would send. Built from
/// tenths so the value prints exactly.
fn desired_patch(sequence: u64) -> String {
    let tenths = 205 + sequence % 10;
    format!(r#"{{"target_temperature":{}}}"#, tenths as f64 / 10.0)
}

/// An error and its causes on one line: reqwest's own message names only the URL.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Prints completions and failures per interval on standard error until `stop`.
async fn report_progress(plan: Arc<Plan>, start: Instant, stop: Instant) {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + PROGRESS_EVERY),
        PROGRESS_EVERY,
    );
    let (mut completed, mut failed) = (0, 0);
    loop {
        let tick = ticks.tick().await.into_std();
        if tick > stop {
            break;
        }
        let now_completed = plan.progress.completed.load(Ordering::Relaxed);
        let now_failed = plan.progress.failed.load(Ordering::Relaxed);
        let phase = if tick <= start + plan.warmup {
            " (warm-up)"
        } else {
            ""
        };
        eprintln!(
            "doppel bench http: {:>4.0} s: {:.0} requests/s, {} failed{phase}",
            (tick - start).as_secs_f64(),
            (now_completed - completed) as f64 / PROGRESS_EVERY.as_secs_f64(),
            now_failed - failed,
        );
        (completed, failed) = (now_completed, now_failed);
    }
}

/// CPU time of this process and of `--server-pid` between `from` and `to`.
async fn cpu_over_window(
    plan: Arc<Plan>,
    from: Instant,
    to: Instant,
) -> (Option<Duration>, Option<Duration>) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(from)).await;
    let before = (
        cpu_time(None),
        plan.server_pid.and_then(|pid| cpu_time(Some(pid))),
    );
    tokio::time::sleep_until(tokio::time::Instant::from_std(to)).await;
    let after = (
        cpu_time(None),
        plan.server_pid.and_then(|pid| cpu_time(Some(pid))),
    );
    let used =
        |before: Option<Duration>, after: Option<Duration>| Some(after?.saturating_sub(before?));
    (used(before.0, after.0), used(before.1, after.1))
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    /// Latencies of the requests that completed inside the measured window.
    latencies: Histogram,
    /// Failed requests over the whole run.
    errors: u64,
    /// The first few failures, described.
    kept_errors: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies.merge(&other.latencies);
        self.errors += other.errors;
        let room = MAX_KEPT_ERRORS.saturating_sub(self.kept_errors.len());
        self.kept_errors
            .extend(other.kept_errors.into_iter().take(room));
    }
}

/// Bits of a value kept below its leading one: each power of two is split into
/// `2^SUB_BUCKET_BITS` equal buckets, so a recorded value is off by under 1/128 (0.8 %).
const SUB_BUCKET_BITS: u32 = 7;
/// Buckets per power of two.
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Buckets for every `u64`: values under `SUB_BUCKETS` exactly, then one row per exponent.
const BUCKETS: usize = (64 - SUB_BUCKET_BITS as usize + 1) * SUB_BUCKETS;

/// A latency histogram in nanoseconds with log-linear buckets (as HdrHistogram lays them out):
/// fixed memory whatever the run's length, and relative precision everywhere from 1 ns up.
struct Histogram {
    counts: Box<[u64]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }
}

impl Histogram {
    fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(nanos)] += 1;
        self.total += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (count, more) in self.counts.iter_mut().zip(other.counts.iter()) {
            *count += more;
        }
        self.total += other.total;
    }

    fn count(&self) -> u64 {
        self.total
    }

    /// The nearest-rank percentile (`fraction` 0.5 for the median, 1.0 for the largest), as
    /// the highest value of its bucket, so a latency is never reported lower than it was.
    /// `None` when nothing was recorded.
    fn percentile(&self, fraction: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * fraction).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        let bucket = self.counts.iter().position(|&count| {
            seen += count;
            seen >= rank
        })?;
        Some(Duration::from_nanos(bucket_high(bucket)))
    }
}

/// The bucket of `value`: exact below `SUB_BUCKETS`, then by exponent and the
/// `SUB_BUCKET_BITS` bits below the leading one.
fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let shift = 63 - value.leading_zeros() - SUB_BUCKET_BITS;
    let mantissa = (value >> shift) as usize;
    (shift as usize + 1) * SUB_BUCKETS + mantissa - SUB_BUCKETS
}

/// The highest value that falls into `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let shift = (bucket / SUB_BUCKETS - 1) as u32;
    let mantissa = (bucket % SUB_BUCKETS + SUB_BUCKETS) as u64;
    ((mantissa + 1) << shift).wrapping_sub(1)
}

/// SplitMix64 (Steele, Lea and Flood): a few instructions per pick and statistically fine for
/// spreading requests over twins. Not for anything secret.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0), by multiply-and-shift: its bias, under
    /// `bound / 2^64`, is far below anything a benchmark can see.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_hold_their_values() {
        let mut previous = 0;
        for value in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket < BUCKETS, "{value}");
            assert!(bucket >= previous, "buckets follow the values");
            assert!(
                bucket <= previous + 1 || value > 100_000,
                "no bucket skipped"
            );
            assert!(bucket_high(bucket) >= value, "{value} above its bucket");
            if bucket > 0 {
                assert!(bucket_high(bucket - 1) < value, "{value} below its bucket");
            }
            previous = bucket;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn recorded_values_lose_under_one_percent() {
        for nanos in [1_000u64, 54_321, 1_234_567, 987_654_321, 12_345_678_901] {
            let high = bucket_high(bucket_of(nanos));
            assert!(
                high >= nanos && (high - nanos) as f64 <= nanos as f64 / 128.0,
                "{nanos}"
            );
        }
    }

    #[test]
    fn percentiles_are_nearest_rank_and_merge_adds_up() {
        let mut low = Histogram::default();
        let mut high = Histogram::default();
        assert_eq!(low.percentile(0.5), None);
        // 1 to 100 µs in the first, 1,000 ms once in the second.
        for micros in 1..=100 {
            low.record(Duration::from_micros(micros));
        }
        high.record(Duration::from_secs(1));
        low.merge(&high);
        assert_eq!(low.count(), 101);
        let near = |fraction: f64, expected: Duration| {
            let found = low.percentile(fraction).expect("values recorded");
            assert!(
                found >= expected && found.as_secs_f64() <= expected.as_secs_f64() * 1.008,
                "{fraction}: {found:?}, expected {expected:?}"
            );
        };
        near(0.5, Duration::from_micros(51));
        near(0.99, Duration::from_micros(100));
        near(1.0, Duration::from_secs(1));
        near(0.0, Duration::from_micros(1));
    }

    #[test]
    fn picks_cover_the_range_and_follow_the_seed() {
        let mut picks = SplitMix64::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[picks.below(10) as usize] += 1;
        }
        assert!(
            seen.iter().all(|&count| (800..1200).contains(&count)),
            "{seen:?}"
        );
        let first: Vec<u64> = (0..5)
            .map(|_| SplitMix64::new(7).below(1_000_000))
            .collect();
        assert!(first.windows(2).all(|pair| pair[0] == pair[1]));
        assert_ne!(SplitMix64::new(7).next_u64(), SplitMix64::new(8).next_u64());
    }

    #[test]
    fn patches_change_the_setpoint_in_exact_tenths() {
        assert_eq!(desired_patch(1), r#"{"target_temperature":20.6}"#);
        assert_eq!(desired_patch(5), r#"{"target_temperature":21}"#);
        assert_eq!(desired_patch(10), r#"{"target_temperature":20.5}"#);
    }
}
