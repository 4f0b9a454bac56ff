//! Crash test: concurrent writers load the real server, which is killed with SIGKILL at a random
//! moment and restarted on the same data folder, cycle after cycle. After every restart each
//! acknowledged write must still be there, in the twin and in its history, and nothing read after
//! an earlier restart may have gone backwards or changed.
//!
//! A write whose response never arrived (the kill cut it off) is unknown: it may or may not have
//! been applied, and the checks allow both. Counters are never reused, so an unknown write cannot
//! be mistaken for a later acknowledged one.
//!
//! `DOPPEL_CRASH_SEED=<n>` replays a seed: the same twins, kinds of writes and kill delays. The
//! interleaving still depends on timing, so a replay repeats the plan, not the exact run.
//! `DOPPEL_CRASH_CYCLES=<n>` runs more (or fewer) cycles than the default.

mod common;

use common::crash::{env_u64, http_client, start};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Crash cycles without `DOPPEL_CRASH_CYCLES`: enough to crash in many different moments of a
/// group commit while keeping the run to seconds.
const DEFAULT_CYCLES: u64 = 20;
/// Concurrent writers. Each owns its twins, so writes to one twin are sequential and the order of
/// its counters is known.
const WRITERS: usize = 8;
const TWINS_PER_WRITER: usize = 3;
/// How long a restarted server may take to acknowledge its first write; only a hang takes this long.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the load runs after the first acknowledgement before the kill, in milliseconds: long
/// enough for many group commits.
const LOAD_MS: RangeInclusive<u64> = 50..=400;
/// One write in this many is a device report; the others patch desired state.
const REPORT_ONE_IN: u32 = 4;
/// Bounds one writer's loop in one burst even if the kill never stopped it.
const MAX_WRITES_PER_BURST: u64 = 100_000;
/// Bounds one request: a request to a killed server fails at once, so this only catches a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Small enough that a twin's history spans several pages, so the cursor is exercised.
const HISTORY_PAGE: u64 = 100;
const TENANT: &str = "crash";

/// The two sections the writers change, each with its own per-twin counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    /// `PATCH .../desired` with `{"seq": n, "w": writer}`.
    Desired,
    /// `PATCH .../reported` with `{"state": {"rseq": n, "w": writer}, "version": n}`.
    Reported,
}

impl Section {
    const ALL: [Section; 2] = [Section::Desired, Section::Reported];

    fn index(self) -> usize {
        self as usize
    }

    /// The section's name in the twin JSON and in the route.
    fn name(self) -> &'static str {
        match self {
            Section::Desired => "desired",
            Section::Reported => "reported",
        }
    }

    /// The `kind` of its history entries.
    fn history_kind(self) -> &'static str {
        match self {
            Section::Desired => "DESIRED",
            Section::Reported => "REPORTED",
        }
    }

    /// The state field holding the counter.
    fn counter_field(self) -> &'static str {
        match self {
            Section::Desired => "seq",
            Section::Reported => "rseq",
        }
    }

    /// The counter in a section's state object; 0 when the section was never written.
    fn counter_in(self, state: &Value) -> u64 {
        state
            .get(self.counter_field())
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

/// A write the server acknowledged with 200: it must survive every later crash.
#[derive(Clone, Copy, Debug)]
struct Ack {
    section: Section,
    counter: u64,
    /// The twin's document version in the response.
    version: u64,
}

/// Everything the test knows about one twin, across all cycles.
struct TwinLog {
    device: String,
    writer: String,
    /// Highest counter ever sent per section, acknowledged or not. The next write sends one more,
    /// so a write lost in a crash is never confused with a later one.
    sent: [u64; 2],
    /// Writes ever sent: each history entry must come from one of them.
    writes_sent: u64,
    acks: Vec<Ack>,
    /// The version read after the previous restart; it is on disk, so it may never go backwards.
    verified_version: u64,
    /// The history read after the previous restart; its entries may never be lost or rewritten.
    verified_history: Vec<Value>,
}

impl TwinLog {
    fn new(writer: usize, twin: usize) -> Self {
        Self {
            device: format!("w{writer}-t{twin}"),
            writer: format!("w{writer}"),
            sent: [0; 2],
            writes_sent: 0,
            acks: Vec::new(),
            verified_version: 0,
            verified_history: Vec::new(),
        }
    }

    fn url(&self, base: &str, suffix: &str) -> String {
        format!("{base}/v1/tenants/{TENANT}/twins/{}{suffix}", self.device)
    }

    /// The acknowledged write with the highest counter in `section`.
    fn highest_ack(&self, section: Section) -> Option<Ack> {
        self.acks
            .iter()
            .filter(|ack| ack.section == section)
            .max_by_key(|ack| ack.counter)
            .copied()
    }
}

/// How one write ended.
enum Sent {
    Acked(Ack),
    /// No complete response: the write may or may not have been applied. `refused` when the
    /// connection was refused (the server was already dead), which the checks treat the same.
    Unknown {
        refused: bool,
    },
    /// The server answered, but not with what a correct server answers.
    Wrong(String),
}

/// What one writer did in one burst; it hands its twins back for the checks.
struct Burst {
    twins: Vec<TwinLog>,
    acked: u64,
    /// Writes cut off by the kill.
    unknown: u64,
    /// Writes refused because the server was already dead.
    refused: u64,
    wrong: Vec<String>,
}

/// Sends the next write of `section` to `twin` and records it as sent before the answer comes.
async fn write(client: &reqwest::Client, base: &str, twin: &mut TwinLog, section: Section) -> Sent {
    let counter = twin.sent[section.index()] + 1;
    twin.sent[section.index()] = counter;
    twin.writes_sent += 1;
    let (field, writer) = (section.counter_field(), twin.writer.as_str());
    let body = match section {
        Section::Desired => json!({ field: counter, "w": writer }),
        Section::Reported => {
            json!({ "state": { field: counter, "w": writer }, "version": counter })
        }
    };
    let url = twin.url(base, &format!("/{}", section.name()));
    let response = match client.patch(url).json(&body).send().await {
        Ok(response) => response,
        Err(err) => {
            return Sent::Unknown {
                refused: err.is_connect(),
            };
        }
    };
    let status = response.status();
    let etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let what = format!("twin {} {} {field} {counter}", twin.device, section.name());
    if status != reqwest::StatusCode::OK {
        let text = response.text().await.unwrap_or_default();
        return Sent::Wrong(format!("{what}: status {status}, body {text}"));
    }
    // Only a complete body counts as an acknowledgement; a cut-off one is unknown.
    let Ok(body) = response.json::<Value>().await else {
        return Sent::Unknown { refused: false };
    };
    let document = match section {
        Section::Desired => &body,
        Section::Reported if body["applied"] == json!(true) => &body["twin"],
        Section::Reported => {
            return Sent::Wrong(format!(
                "{what}: a report with a new device version was not applied: {body}"
            ));
        }
    };
    let Some(version) = document["version"].as_u64() else {
        return Sent::Wrong(format!("{what}: no version in the response {body}"));
    };
    if etag.as_deref() != Some(format!("\"{version}\"").as_str()) {
        return Sent::Wrong(format!(
            "{what}: ETag {etag:?} does not match version {version}"
        ));
    }
    let echoed = section.counter_in(&document[section.name()]["state"]);
    if echoed != counter {
        return Sent::Wrong(format!(
            "{what}: the response's {field} is {echoed} at version {version}"
        ));
    }
    Sent::Acked(Ack {
        section,
        counter,
        version,
    })
}

/// What the writers of one burst and the test share.
#[derive(Default)]
struct Signals {
    /// Set once the server is killed: writers stop instead of writing to a dead server.
    stop: AtomicBool,
    /// Told on every acknowledgement (a notice given before anyone waits is kept), so the kill
    /// delay counts from the moment writes flow rather than from the restart: a slow start would
    /// otherwise leave nothing to kill.
    acked: Notify,
}

/// Writes to its own twins one request at a time until the server dies or `stop` is set.
async fn write_until_killed(
    client: reqwest::Client,
    base: String,
    mut twins: Vec<TwinLog>,
    signals: Arc<Signals>,
    mut rng: StdRng,
) -> Burst {
    let (mut acked, mut unknown, mut refused, mut wrong) = (0, 0, 0, Vec::new());
    for _ in 0..MAX_WRITES_PER_BURST {
        if signals.stop.load(Ordering::Acquire) {
            break;
        }
        let twin = &mut twins[rng.random_range(0..TWINS_PER_WRITER)];
        let section = if rng.random_ratio(1, REPORT_ONE_IN) {
            Section::Reported
        } else {
            Section::Desired
        };
        match write(&client, &base, twin, section).await {
            Sent::Acked(ack) => {
                twin.acks.push(ack);
                acked += 1;
                signals.acked.notify_one();
            }
            Sent::Unknown { refused: true } => {
                refused += 1;
                break;
            }
            Sent::Unknown { refused: false } => {
                unknown += 1;
                break;
            }
            Sent::Wrong(why) => {
                wrong.push(why);
                break;
            }
        }
    }
    Burst {
        twins,
        acked,
        unknown,
        refused,
        wrong,
    }
}

async fn get_json(client: &reqwest::Client, url: &str, ctx: &str) -> (reqwest::StatusCode, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{ctx}: GET {url} failed: {err}"));
    let status = response.status();
    let body = response
        .json()
        .await
        .unwrap_or_else(|err| panic!("{ctx}: GET {url} returned a body that is not JSON: {err}"));
    (status, body)
}

/// The twin's whole history, following `next_cursor` page by page.
async fn read_history(
    client: &reqwest::Client,
    base: &str,
    twin: &TwinLog,
    ctx: &str,
) -> Vec<Value> {
    // Every entry comes from a write that was sent, so more pages than this means a runaway cursor.
    let max_pages = twin.writes_sent / HISTORY_PAGE + 2;
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..max_pages {
        let mut url = twin.url(base, &format!("/history?limit={HISTORY_PAGE}"));
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = get_json(client, &url, ctx).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{ctx}: GET {url}: {page}");
        let items = page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{ctx}: history page without items: {page}"));
        entries.extend(items.iter().cloned());
        match &page["next_cursor"] {
            Value::Null => return entries,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("{ctx}: next_cursor is neither null nor a string: {other}"),
        }
    }
    panic!(
        "{ctx}: history did not end within {max_pages} pages of {HISTORY_PAGE}, yet only {} writes were ever sent",
        twin.writes_sent
    )
}

/// Checks one twin after a restart; returns how many acknowledged writes it checked.
async fn verify(
    client: &reqwest::Client,
    base: &str,
    twin: &mut TwinLog,
    seed: u64,
    cycle: u64,
) -> usize {
    let ctx = format!("seed {seed}, cycle {cycle}, twin {}", twin.device);
    let highest_acked_version = twin.acks.iter().map(|ack| ack.version).max().unwrap_or(0);
    let (status, current) = get_json(client, &twin.url(base, ""), &ctx).await;
    if status == reqwest::StatusCode::NOT_FOUND {
        assert!(
            twin.acks.is_empty() && twin.verified_version == 0,
            "{ctx}: the twin is gone after the restart, yet {} writes up to version {highest_acked_version} were acknowledged and version {} was read after the previous restart",
            twin.acks.len(),
            twin.verified_version,
        );
        return 0;
    }
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "{ctx}: GET twin: {current}"
    );

    let version = current["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("{ctx}: twin without a version: {current}"));
    assert!(
        version >= highest_acked_version,
        "{ctx}: the twin is at version {version}, but version {highest_acked_version} was acknowledged: an acknowledged write was lost"
    );
    assert!(
        version >= twin.verified_version,
        "{ctx}: the version went backwards across a restart: {} after the previous restart, {version} now",
        twin.verified_version
    );
    assert!(
        version <= twin.writes_sent,
        "{ctx}: the twin is at version {version}, but only {} writes were ever sent to it",
        twin.writes_sent
    );
    for section in Section::ALL {
        let (name, field) = (section.name(), section.counter_field());
        let now = section.counter_in(&current[name]["state"]);
        if let Some(ack) = twin.highest_ack(section) {
            assert!(
                now >= ack.counter,
                "{ctx}: {name}.{field} is {now} at version {version}, but {field} {} was acknowledged at version {}: an acknowledged write was lost",
                ack.counter,
                ack.version
            );
        }
        let sent = twin.sent[section.index()];
        assert!(
            now <= sent,
            "{ctx}: {name}.{field} is {now} at version {version}, but the highest {field} ever sent is {sent}"
        );
    }

    let history = read_history(client, base, twin, &ctx).await;
    let versions: Vec<u64> = history
        .iter()
        .map(|entry| {
            entry["version"]
                .as_u64()
                .unwrap_or_else(|| panic!("{ctx}: history entry without a version: {entry}"))
        })
        .collect();
    for pair in versions.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{ctx}: history versions are not strictly increasing: {} then {}",
            pair[0],
            pair[1]
        );
    }
    // Every change makes exactly one version and one entry, and nothing expires within the test.
    assert!(
        versions.len() as u64 == version && versions.last().copied() == Some(version),
        "{ctx}: the twin is at version {version}, but its history holds {} entries ending at version {:?}: twin and history disagree after the crash",
        versions.len(),
        versions.last(),
    );
    for section in Section::ALL {
        let (name, field) = (section.name(), section.counter_field());
        let counters: Vec<(u64, u64)> = history
            .iter()
            .filter(|entry| entry["kind"] == section.history_kind())
            .map(|entry| {
                (
                    entry["version"].as_u64().unwrap_or(0),
                    section.counter_in(&entry["state"]),
                )
            })
            .collect();
        for pair in counters.windows(2) {
            assert!(
                pair[0].1 < pair[1].1,
                "{ctx}: {name}.{field} goes from {} at version {} to {} at version {} in history; one writer sends increasing values",
                pair[0].1,
                pair[0].0,
                pair[1].1,
                pair[1].0
            );
        }
        let now = section.counter_in(&current[name]["state"]);
        let last = counters.last().map_or(0, |&(_, counter)| counter);
        assert_eq!(
            last,
            now,
            "{ctx}: the newest {} history entry has {field} {last}, the twin has {now} at version {version}",
            section.history_kind()
        );
    }
    // Versions are exactly 1..=version (checked above), so the entry for version v is at v - 1.
    for ack in &twin.acks {
        let (kind, field) = (ack.section.history_kind(), ack.section.counter_field());
        let entry = &history[(ack.version - 1) as usize];
        assert!(
            entry["kind"] == kind && ack.section.counter_in(&entry["state"]) == ack.counter,
            "{ctx}: acknowledged version {} ({kind} with {field} {}) is not in history; the entry at that version is {entry}",
            ack.version,
            ack.counter,
        );
    }
    for (before, now) in twin.verified_history.iter().zip(&history) {
        assert_eq!(
            before, now,
            "{ctx}: history entry version {} changed across a restart",
            before["version"]
        );
    }
    twin.verified_version = version;
    twin.verified_history = history;
    twin.acks.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_sigkill() {
    let seed = env_u64("DOPPEL_CRASH_SEED").unwrap_or_else(rand::random);
    let cycles = env_u64("DOPPEL_CRASH_CYCLES").unwrap_or(DEFAULT_CYCLES);
    println!("crash test: seed {seed} (replay with DOPPEL_CRASH_SEED={seed}), {cycles} cycles");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let data_dir = tempfile::tempdir().expect("temporary data folder");
    let mut owners: Vec<Vec<TwinLog>> = (0..WRITERS)
        .map(|w| (0..TWINS_PER_WRITER).map(|t| TwinLog::new(w, t)).collect())
        .collect();
    let (mut acked, mut unknown, mut refused, mut checked) = (0, 0, 0, 0);
    let mut server = start(data_dir.path(), &[]).await;
    // A client per server: connections pooled to a killed server are useless.
    let mut client = http_client(REQUEST_TIMEOUT);
    for cycle in 1..=cycles {
        let signals = Arc::new(Signals::default());
        let writers: Vec<_> = owners
            .drain(..)
            .map(|twins| {
                tokio::spawn(write_until_killed(
                    client.clone(),
                    server.base.clone(),
                    twins,
                    signals.clone(),
                    StdRng::seed_from_u64(rng.random()),
                ))
            })
            .collect();
        let load_ms = rng.random_range(LOAD_MS);
        tokio::time::timeout(FIRST_ACK_TIMEOUT, signals.acked.notified())
            .await
            .unwrap_or_else(|_| panic!("seed {seed}, cycle {cycle}: no write was acknowledged within {FIRST_ACK_TIMEOUT:?}"));
        tokio::time::sleep(Duration::from_millis(load_ms)).await;
        server.kill();
        signals.stop.store(true, Ordering::Release);
        for writer in writers {
            let burst = writer.await.expect("writer task");
            assert!(
                burst.wrong.is_empty(),
                "seed {seed}, cycle {cycle}: wrong answers under load: {:?}",
                burst.wrong
            );
            acked += burst.acked;
            unknown += burst.unknown;
            refused += burst.refused;
            owners.push(burst.twins);
        }

        server = start(data_dir.path(), &[]).await;
        client = http_client(REQUEST_TIMEOUT);
        for twin in owners.iter_mut().flatten() {
            checked += verify(&client, &server.base, twin, seed, cycle).await;
        }
    }
    // Every version beyond the acknowledged writes came from a write whose answer never arrived.
    let landed: u64 = owners
        .iter()
        .flatten()
        .map(|twin| twin.verified_version - twin.acks.len() as u64)
        .sum();
    println!(
        "crash test passed: {cycles} cycles, {acked} acknowledged writes checked ({checked} checks across restarts), \
         {unknown} cut off by a kill ({landed} of them applied), {refused} refused after one, seed {seed}, {:.1?}",
        started.elapsed()
    );
}
