//! A closed-loop MQTT load generator: N devices, one connection and one thing each, each keeping
//! a fixed number of requests in flight for a set time. Reports completed requests per second and
//! their latency percentiles. `scripts/bench-mqtt` runs it; see docs/BENCHMARKS.md.
//!
//! Two modes, with the same ~300-byte report as payload:
//! - `shadow`: AWS Device Shadow updates. Each device publishes
//!   `$aws/things/{thing}/shadow/update` at QoS 1 with its reported state and a `clientToken`,
//!   and a request is complete when its `/update/accepted` arrives, which the hub sends only once
//!   the update is durable. Devices connect anonymously with their thing as client id, so the
//!   hub must run with `--mqtt-allow-anonymous true`.
//! - `echo`: the baseline with no twin work. Each device subscribes to an ordinary topic of its
//!   own at QoS 1 and publishes there; a request is complete when the broker delivers it back.
//!   This runs against any broker (Doppel's or mosquitto), so the cost of the shadow path shows
//!   as a ratio.
//!
//! Requests are matched to answers by their `clientToken`, so out-of-order answers count
//! correctly. Only answers that arrive between the end of the warm-up and the end of the run
//! count; after the run each device waits up to [`DRAIN`] for its outstanding answers and counts
//! the rest as lost.
//!
//! ```text
//! cargo run --release -p doppel --example mqtt_load -- --addr 127.0.0.1:1883 --mode shadow \
//!     --devices 64 --in-flight 1 --duration 20s
//! ```
//!
//! It prints one `result` line of `key=value` fields on standard output (rates in completed
//! requests per second, latencies in milliseconds), and progress and the per-second timeline on
//! standard error.

#[path = "../src/bench/cpu.rs"]
mod cpu;

use clap::{Parser, ValueEnum};
use cpu::cpu_time;
use doppel_wire::Verdict;
use doppel_wire::shadow::{self, ShadowAnswer, ShadowOp};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How long a device waits for its connection, subscription, or an answer after the run.
const DRAIN: Duration = Duration::from_secs(10);
/// Most requests in flight per device: as many as the hub keeps in flight per connection before
/// it stops reading from it (`doppel-mqtt`'s pipeline). A streaming client such as
/// `mosquitto_pub -l` keeps 20 (its default `--max-inflight`).
const MAX_IN_FLIGHT: usize = 128;
/// Largest packet either side may send: far above the hub's answers to a 350-byte update
/// (`/update/accepted` is about 1 KB).
const MAX_PACKET_BYTES: usize = 1024 * 1024;
/// Keep-alive of every device; the runs are shorter, so it only has to be valid.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Where the token sits in every answer: both the hub's documents and an echoed payload are
/// compact JSON.
const TOKEN_KEY: &[u8] = b"\"clientToken\":\"";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// AWS shadow updates, complete on `/update/accepted`.
    Shadow,
    /// QoS 1 publish to an ordinary topic the device subscribes to, complete on delivery.
    Echo,
}

#[derive(Debug, Parser)]
#[command(about = "Closed-loop MQTT load: AWS shadow updates or plain QoS 1 round trips")]
struct Args {
    /// The broker's MQTT listener.
    #[arg(long, default_value = "127.0.0.1:1883")]
    addr: SocketAddr,
    #[arg(long, value_enum, default_value = "shadow")]
    mode: Mode,
    /// Devices, each with its own connection and thing.
    #[arg(long, default_value_t = 64)]
    devices: usize,
    /// Requests each device keeps in flight (1 to 10).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// How long the devices send, warm-up included.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The first part of the run, whose answers are not counted.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Things are named `{prefix}-{index}`; client ids are the thing names.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// A process (the broker) whose CPU time to report for the measured part of the run.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Disable Nagle's algorithm on the devices' sockets (TCP_NODELAY).
    #[arg(long)]
    tcp_nodelay: bool,
    /// A name for this run in the result line, such as the broker's.
    #[arg(long, default_value = "-")]
    label: String,
    /// Open loop: this many requests per second across all devices, each device sending its
    /// share evenly spaced, instead of a new request per answer. `--in-flight` caps each
    /// device's unanswered requests; a send the cap stops counts as `skipped` (the broker is
    /// not keeping up). For latency at a set load, such as half the closed-loop peak.
    #[arg(long)]
    rate: Option<f64>,
}

/// What every device needs to know about the run.
struct Plan {
    args: Args,
    /// Set once every device is connected and subscribed: the instant sending begins.
    start: watch::Receiver<Option<Instant>>,
}

/// What one device saw during the measured window, and after it.
#[derive(Default)]
struct Tally {
    /// Answers that completed a request inside the window.
    completed: u64,
    /// Latency of each of them, in microseconds.
    latencies_us: Vec<u32>,
    /// Completions per second of the window, to find stalls.
    per_second: Vec<u64>,
    /// `/rejected` answers (any time).
    rejected: u64,
    /// Answers whose token matches no outstanding request (duplicates).
    unexpected: u64,
    /// Requests still unanswered when the drain time ran out.
    lost: u64,
    /// Connection or protocol errors that ended the device early.
    errors: Vec<String>,
    /// Open loop only: sends skipped because the device had `in_flight` unanswered requests.
    skipped: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.completed += other.completed;
        self.latencies_us.extend(other.latencies_us);
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (total, count) in self.per_second.iter_mut().zip(other.per_second) {
            *total += count;
        }
        self.rejected += other.rejected;
        self.skipped += other.skipped;
        self.unexpected += other.unexpected;
        self.lost += other.lost;
        self.errors.extend(other.errors);
    }
}

/// A report of about 300 bytes (the engine benchmark's sensor) as a shadow update document;
/// `sequence` varies the values as a real device's would.
fn update_document(thing: &str, sequence: u64) -> Vec<u8> {
    let wobble = sequence % 97;
    format!(
        concat!(
            r#"{{"state":{{"reported":{{"temperature":{temperature:.1},"humidity":{humidity:.1},"#,
            r#""pressure":{pressure:.1},"co2_ppm":{co2},"battery":{{"level":{battery},"#,
            r#""voltage":{voltage:.2},"charging":false}},"light":{{"on":true,"level":{light}}},"#,
            r#""mode":"eco","rssi":{rssi},"uptime_s":{uptime},"firmware":"2.4.1","#,
            r#""location":{{"lat":52.52,"lon":13.405,"floor":3}},"errors":[],"sensor_status":"ok"}}}},"#,
            r#""clientToken":"{thing}-{sequence}"}}"#
        ),
        temperature = 18.0 + wobble as f64 / 10.0,
        humidity = 30.0 + (sequence % 400) as f64 / 10.0,
        pressure = 990.0 + (sequence % 400) as f64 / 10.0,
        co2 = 400 + sequence % 800,
        battery = 100 - sequence % 101,
        voltage = 3.3 + (sequence % 90) as f64 / 100.0,
        light = sequence % 10,
        rssi = -40 - (wobble % 50) as i64,
        uptime = sequence * 60,
        thing = thing,
        sequence = sequence,
    )
    .into_bytes()
}

/// The request number in an answer's `"clientToken":"{thing}-{n}"`.
fn token_sequence(payload: &[u8]) -> Option<u64> {
    let start = payload
        .windows(TOKEN_KEY.len())
        .position(|window| window == TOKEN_KEY)?
        + TOKEN_KEY.len();
    let token = &payload[start..];
    let token = &token[..token.iter().position(|&byte| byte == b'"')?];
    let digits = &token[token.iter().rposition(|&byte| byte == b'-')? + 1..];
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The topics a device publishes to and listens on.
struct Topics {
    request: String,
    answers: Vec<String>,
}

fn topics(mode: Mode, thing: &str) -> Topics {
    match mode {
        Mode::Shadow => Topics {
            // What an AWS device SDK subscribes to before it updates.
            answers: [
                ShadowAnswer::Reply(ShadowOp::Update, Verdict::Accepted),
                ShadowAnswer::Reply(ShadowOp::Update, Verdict::Rejected),
                ShadowAnswer::Delta,
            ]
            .into_iter()
            .map(|answer| shadow::answer(thing, None, answer))
            .collect(),
            request: shadow::request(thing, None, ShadowOp::Update),
        },
        Mode::Echo => {
            let topic = format!("load/{thing}");
            Topics {
                answers: vec![topic.clone()],
                request: topic,
            }
        }
    }
}

/// One device: connects, subscribes, reports ready, then runs its closed loop until the end of
/// the run and drains its outstanding requests.
async fn device(plan: Arc<Plan>, index: usize, ready: mpsc::Sender<Result<(), String>>) -> Tally {
    let mut tally = Tally::default();
    let args = &plan.args;
    let thing = format!("{}-{index:05}", args.prefix);
    let topics = topics(args.mode, &thing);
    let mut options = MqttOptions::new(&thing, args.addr.ip().to_string(), args.addr.port());
    options.set_keep_alive(KEEP_ALIVE);
    options.set_clean_session(true);
    options.set_inflight(MAX_IN_FLIGHT as u16);
    options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    let (client, mut events) = AsyncClient::new(options, 4 * MAX_IN_FLIGHT);
    let mut network = events.network_options();
    network.set_tcp_nodelay(args.tcp_nodelay);
    events.set_network_options(network);

    // Connect and subscribe.
    for filter in &topics.answers {
        if let Err(err) = client.try_subscribe(filter, QoS::AtLeastOnce) {
            let _ = ready.send(Err(format!("{thing}: subscribe: {err}"))).await;
            return tally;
        }
    }
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + DRAIN;
    while acked < topics.answers.len() {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, SubscribeReasonCode::Failure))
                {
                    let _ = ready
                        .send(Err(format!("{thing}: subscription refused")))
                        .await;
                    return tally;
                }
                acked += 1;
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                let _ = ready.send(Err(format!("{thing}: connect: {err}"))).await;
                return tally;
            }
            Err(_) => {
                let _ = ready
                    .send(Err(format!("{thing}: no SUBACK within {DRAIN:?}")))
                    .await;
                return tally;
            }
        }
    }
    let _ = ready.send(Ok(())).await;
    let mut start = plan.start.clone();
    let Ok(start) = start
        .wait_for(Option::is_some)
        .await
        .map(|start| (*start).unwrap_or_else(Instant::now))
    else {
        return tally;
    };
    let measure_from = start + args.warmup;
    let stop = start + args.duration;
    let drain_until = tokio::time::Instant::from_std(stop + DRAIN);
    let seconds = (args.duration.saturating_sub(args.warmup))
        .as_secs_f64()
        .ceil() as usize;
    tally.per_second = vec![0; seconds.max(1)];

    // The closed loop: every answer sends the next request until the run ends.
    let mut outstanding: HashMap<u64, Instant> = HashMap::with_capacity(args.in_flight);
    let mut sequence = 0u64;
    let mut send = |outstanding: &mut HashMap<u64, Instant>, tally: &mut Tally| {
        sequence += 1;
        let payload = update_document(&thing, sequence);
        match client.try_publish(&topics.request, QoS::AtLeastOnce, false, payload) {
            Ok(()) => {
                outstanding.insert(sequence, Instant::now());
            }
            Err(err) => tally.errors.push(format!("{thing}: publish: {err}")),
        }
    };
    // Open loop: this device's share of the rate, its first send offset by its index so the
    // devices' sends spread over the period instead of coming in bursts.
    let mut ticker = args.rate.map(|rate| {
        let period = Duration::from_secs_f64(args.devices as f64 / rate);
        let offset = period.mul_f64(index as f64 / args.devices as f64);
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::from_std(start + offset), period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticker
    });
    if ticker.is_none() {
        for _ in 0..args.in_flight {
            send(&mut outstanding, &mut tally);
        }
    }
    loop {
        let now = Instant::now();
        if now >= stop && outstanding.is_empty() {
            break;
        }
        let polled = tokio::select! {
            polled = tokio::time::timeout_at(drain_until, events.poll()) => polled,
            () = next_tick(&mut ticker), if now < stop => {
                if outstanding.len() < args.in_flight {
                    send(&mut outstanding, &mut tally);
                } else {
                    tally.skipped += 1;
                }
                continue;
            }
        };
        let event = match polled {
            Ok(Ok(event)) => event,
            Ok(Err(err)) => {
                tally.errors.push(format!("{thing}: connection: {err}"));
                break;
            }
            Err(_) => break,
        };
        let Event::Incoming(Packet::Publish(publish)) = event else {
            continue;
        };
        let received = Instant::now();
        if publish.topic.ends_with("/delta") {
            continue;
        }
        if publish.topic.ends_with("/rejected") {
            tally.rejected += 1;
        }
        let Some(sent) = token_sequence(&publish.payload).and_then(|seq| outstanding.remove(&seq))
        else {
            tally.unexpected += 1;
            continue;
        };
        if received >= measure_from && received < stop && !publish.topic.ends_with("/rejected") {
            tally.completed += 1;
            let latency = received.duration_since(sent);
            tally
                .latencies_us
                .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
            let second = received.duration_since(measure_from).as_secs() as usize;
            if let Some(count) = tally.per_second.get_mut(second) {
                *count += 1;
            }
        }
        if received < stop && args.rate.is_none() {
            send(&mut outstanding, &mut tally);
        }
    }
    tally.lost = outstanding.len() as u64;

    // Leave cleanly, so the hub records a client-initiated disconnect.
    if client.try_disconnect().is_ok() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.poll()).await {
            if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
    }
    tally
}

/// The next tick of an open-loop device; never, for a closed-loop one.
async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.devices == 0 || !(1..=MAX_IN_FLIGHT).contains(&args.in_flight) {
        eprintln!("mqtt_load: --devices must be at least 1 and --in-flight 1 to {MAX_IN_FLIGHT}");
        std::process::exit(2);
    }
    if args
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        eprintln!("mqtt_load: --rate must be a positive number of requests per second");
        std::process::exit(2);
    }
    if args.warmup >= args.duration {
        eprintln!("mqtt_load: --warmup must be shorter than --duration");
        std::process::exit(2);
    }
    let (start_tx, start) = watch::channel(None);
    let plan = Arc::new(Plan { args, start });
    let args = &plan.args;
    let (ready_tx, mut ready) = mpsc::channel(args.devices);
    let mut devices = tokio::task::JoinSet::new();
    let connecting = Instant::now();
    for index in 0..args.devices {
        devices.spawn(device(plan.clone(), index, ready_tx.clone()));
    }
    drop(ready_tx);
    let mut failed = Vec::new();
    for _ in 0..args.devices {
        match ready.recv().await {
            Some(Ok(())) => {}
            Some(Err(err)) => failed.push(err),
            None => break,
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "mqtt_load: {} devices could not start, first: {}",
            failed.len(),
            failed[0]
        );
        std::process::exit(1);
    }
    eprintln!(
        "mqtt_load: {} devices connected and subscribed in {:.2?}; {:?} mode, {} in flight each, {:?} ({:?} warm-up)",
        args.devices,
        connecting.elapsed(),
        args.mode,
        args.in_flight,
        args.duration,
        args.warmup
    );

    let started = Instant::now();
    let _ = start_tx.send(Some(started));
    // CPU time of this process and of the server over the measured window.
    let window = args.duration - args.warmup;
    let server_pid = args.server_pid;
    let measure_from = tokio::time::Instant::from_std(started + args.warmup);
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        let before = (
            cpu_time(None),
            server_pid.and_then(|pid| cpu_time(Some(pid))),
        );
        tokio::time::sleep(window).await;
        let after = (
            cpu_time(None),
            server_pid.and_then(|pid| cpu_time(Some(pid))),
        );
        let used = |before: Option<Duration>, after: Option<Duration>| {
            Some(after?.saturating_sub(before?))
        };
        (used(before.0, after.0), used(before.1, after.1))
    });
    let mut tally = Tally::default();
    while let Some(done) = devices.join_next().await {
        match done {
            Ok(device) => tally.add(device),
            Err(err) => tally.errors.push(format!("device task: {err}")),
        }
    }
    let (client_cpu, server_cpu) = cpu.await.unwrap_or((None, None));

    tally.latencies_us.sort_unstable();
    let seconds = window.as_secs_f64();
    let rate = tally.completed as f64 / seconds;
    let (p50, p99, p999, max) = (
        percentile(&tally.latencies_us, 0.50),
        percentile(&tally.latencies_us, 0.99),
        percentile(&tally.latencies_us, 0.999),
        percentile(&tally.latencies_us, 1.0),
    );
    let whole_seconds = &tally.per_second[..(seconds.floor() as usize).min(tally.per_second.len())];
    let slowest = whole_seconds.iter().copied().min().unwrap_or(0);
    let fastest = whole_seconds.iter().copied().max().unwrap_or(0);
    let cores = |cpu: Option<Duration>| cpu.map_or(f64::NAN, |cpu| cpu.as_secs_f64() / seconds);
    let cpu_per_request = |cpu: Option<Duration>| {
        cpu.map_or(f64::NAN, |cpu| {
            cpu.as_secs_f64() * 1e6 / tally.completed.max(1) as f64
        })
    };
    // The run second by second, so a stall shows where it happened.
    let timeline: Vec<String> = whole_seconds.iter().map(u64::to_string).collect();
    eprintln!("mqtt_load: completed per second: {}", timeline.join(" "));
    for error in tally.errors.iter().take(5) {
        eprintln!("mqtt_load: error: {error}");
    }
    // One line of `key=value` fields, for people and scripts alike.
    let fields = [
        ("label", args.label.clone()),
        ("mode", format!("{:?}", args.mode)),
        ("devices", args.devices.to_string()),
        ("in_flight", args.in_flight.to_string()),
        ("seconds", format!("{seconds:.1}")),
        ("completed", tally.completed.to_string()),
        ("rate", format!("{rate:.0}")),
        ("p50_ms", format!("{p50:.2}")),
        ("p99_ms", format!("{p99:.2}")),
        ("p999_ms", format!("{p999:.2}")),
        ("max_ms", format!("{max:.2}")),
        ("slowest_second", slowest.to_string()),
        ("fastest_second", fastest.to_string()),
        (
            "target_rate",
            args.rate.map_or("-".into(), |rate| format!("{rate:.0}")),
        ),
        ("skipped", tally.skipped.to_string()),
        ("rejected", tally.rejected.to_string()),
        ("unexpected", tally.unexpected.to_string()),
        ("lost", tally.lost.to_string()),
        ("errors", tally.errors.len().to_string()),
        ("client_cores", format!("{:.2}", cores(client_cpu))),
        ("server_cores", format!("{:.2}", cores(server_cpu))),
        (
            "server_us_per_request",
            format!("{:.1}", cpu_per_request(server_cpu)),
        ),
    ];
    let fields: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    println!("result {}", fields.join(" "));
    let failed = tally.lost > 0 || !tally.errors.is_empty() || tally.rejected > 0;
    std::process::exit(i32::from(failed));
}
