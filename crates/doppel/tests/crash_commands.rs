//! Crash test for command queues: writers queue commands (each with its own idempotency key) and
//! acknowledge half of them over HTTP while the real server is killed with SIGKILL at a random
//! moment and restarted on the same data folder, cycle after cycle. After every restart each
//! acknowledged queueing and each acknowledged acknowledgement must still be there; a request
//! cut off by the kill is retried with its idempotency key and must never queue a second command.
//!
//! `DOPPEL_CRASH_SEED=<n>` replays a seed's plan; `DOPPEL_CRASH_CYCLES=<n>` sets the cycles.

mod common;

use common::crash::{env_u64, http_client, start};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

const DEFAULT_CYCLES: u64 = 6;
/// Concurrent writers, each with a device of its own.
const WRITERS: usize = 4;
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds one writer's burst even if the kill never stopped it.
const MAX_REQUESTS_PER_BURST: u64 = 50_000;
/// How long the load runs before the kill, in milliseconds.
const LOAD_MS: std::ops::RangeInclusive<u64> = 50..=400;
const BASE: &str = "/v1/tenants/crash/twins";
/// Lifts the per-device limit on open commands: the writers queue far more than 100.
const START_ARGS: &[&str] = &["--commands-max-open", "1000000"];

/// What one writer knows about its device's commands.
#[derive(Default)]
struct DeviceLog {
    device: String,
    /// Next idempotency key number.
    next: u64,
    /// Queued and answered: idempotency key to command id.
    queued: HashMap<String, String>,
    /// Acknowledged and answered: command id to the response sent.
    acknowledged: HashMap<String, u64>,
    /// Keys whose queueing was cut off by the kill.
    unknown: Vec<String>,
}

#[derive(Default)]
struct Signals {
    stop: AtomicBool,
    acked: Notify,
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Option<(u16, Value)> {
    let response = client.post(url).json(body).send().await.ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.ok()?;
    Some((status, body))
}

async fn write_until_killed(
    client: reqwest::Client,
    base: String,
    mut log: DeviceLog,
    signals: Arc<Signals>,
) -> DeviceLog {
    let commands = format!("{base}{BASE}/{}/commands", log.device);
    for _ in 0..MAX_REQUESTS_PER_BURST {
        if signals.stop.load(Ordering::Acquire) {
            break;
        }
        let key = format!("{}-{}", log.device, log.next);
        log.next += 1;
        let body = json!({"type": "op", "idempotency_key": key, "payload": {"key": key}});
        match post(&client, &commands, &body).await {
            Some((201, command)) => {
                let id = command["id"].as_str().expect("an id").to_owned();
                log.queued.insert(key, id.clone());
                signals.acked.notify_one();
                if log.next.is_multiple_of(2) {
                    let ack = json!({"status": "SUCCEEDED", "response": {"n": log.next}});
                    match post(&client, &format!("{commands}/{id}/ack"), &ack).await {
                        Some((200, _)) => {
                            log.acknowledged.insert(id, log.next);
                        }
                        Some((status, body)) => panic!("acknowledging {id}: {status} {body}"),
                        None => break,
                    }
                }
            }
            Some((status, body)) => panic!("queueing {key}: {status} {body}"),
            None => {
                log.unknown.push(key);
                break;
            }
        }
    }
    log
}

async fn verify(client: &reqwest::Client, base: &str, log: &mut DeviceLog, context: &str) {
    let commands = format!("{base}{BASE}/{}/commands", log.device);
    for (key, id) in &log.queued {
        let response = client
            .get(format!("{commands}/{id}"))
            .send()
            .await
            .expect("GET command");
        assert_eq!(
            response.status(),
            200,
            "{context}: queued command {id} lost"
        );
        let command: Value = response.json().await.expect("JSON");
        assert_eq!(command["idempotency_key"], key.as_str(), "{context}");
        if let Some(n) = log.acknowledged.get(id) {
            assert_eq!(command["status"], "ACKNOWLEDGED", "{context}: {command}");
            assert_eq!(command["response"], json!({"n": n}), "{context}");
        }
    }
    // Retried with their keys, cut-off requests queue at most one command each.
    for key in std::mem::take(&mut log.unknown) {
        let body = json!({"type": "op", "idempotency_key": key, "payload": {"key": key}});
        let (status, command) = post(client, &commands, &body)
            .await
            .expect("the restarted server answers");
        assert!(
            status == 200 || status == 201,
            "{context}: retry {status} {command}"
        );
        log.queued
            .insert(key, command["id"].as_str().expect("an id").to_owned());
    }
    let mut keys = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{commands}?limit=1000");
        if let Some(after) = &after {
            url.push_str(&format!("&cursor={after}"));
        }
        let page: Value = client
            .get(url)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("JSON");
        for command in page["items"].as_array().expect("items") {
            let key = command["idempotency_key"].as_str().expect("a key");
            assert!(
                keys.insert(key.to_owned()),
                "{context}: two commands for key {key}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        keys.len(),
        log.queued.len(),
        "{context}: commands nobody queued"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_command_changes_survive_sigkill() {
    let seed = env_u64("DOPPEL_CRASH_SEED").unwrap_or_else(rand::random);
    let cycles = env_u64("DOPPEL_CRASH_CYCLES").unwrap_or(DEFAULT_CYCLES);
    println!(
        "command crash test: seed {seed} (replay with DOPPEL_CRASH_SEED={seed}), {cycles} cycles"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let data_dir = tempfile::tempdir().expect("temporary data folder");
    let mut logs: Vec<DeviceLog> = (0..WRITERS)
        .map(|w| DeviceLog {
            device: format!("dev-{w}"),
            ..DeviceLog::default()
        })
        .collect();
    let mut server = start(data_dir.path(), START_ARGS).await;
    let mut client = http_client(REQUEST_TIMEOUT);
    for cycle in 1..=cycles {
        let signals = Arc::new(Signals::default());
        let writers: Vec<_> = logs
            .drain(..)
            .map(|log| {
                tokio::spawn(write_until_killed(
                    client.clone(),
                    server.base.clone(),
                    log,
                    signals.clone(),
                ))
            })
            .collect();
        tokio::time::timeout(FIRST_ACK_TIMEOUT, signals.acked.notified())
            .await
            .unwrap_or_else(|_| panic!("seed {seed}, cycle {cycle}: nothing was queued"));
        // The kill lands at a random moment of the load: that moment is what the test varies.
        tokio::time::sleep(Duration::from_millis(rng.random_range(LOAD_MS))).await;
        server.kill();
        signals.stop.store(true, Ordering::Release);
        for writer in writers {
            logs.push(writer.await.expect("writer task"));
        }
        server = start(data_dir.path(), START_ARGS).await;
        client = http_client(REQUEST_TIMEOUT);
        let context = format!("seed {seed}, cycle {cycle}");
        for log in &mut logs {
            verify(&client, &server.base, log, &context).await;
        }
    }
    let queued: usize = logs.iter().map(|log| log.queued.len()).sum();
    let acknowledged: usize = logs.iter().map(|log| log.acknowledged.len()).sum();
    println!(
        "command crash test passed: {cycles} cycles, {queued} commands and {acknowledged} acknowledgements kept, seed {seed}"
    );
}
