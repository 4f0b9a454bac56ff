//! Crash test over MQTT: devices send AWS shadow updates and wait for `/update/accepted`; the
//! real server is killed with SIGKILL at a random moment and restarted on the same data folder.
//! Every update that was accepted must survive: `/update/accepted` is published only after the
//! change is durable.
//!
//! `DOPPEL_CRASH_CYCLES=<n>` runs more (or fewer) cycles; `DOPPEL_CRASH_SEED=<n>` replays the
//! kill delays of a seed.

mod common;

use common::Server;
use common::crash::env_u64;
use common::mqtt::connect;
use common::topic::{self, ShadowOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Barrier;

/// Cycles without `DOPPEL_CRASH_CYCLES`: each kills a server in the middle of group commits.
const DEFAULT_CYCLES: u64 = 8;
/// Devices updating at once, each its own thing, one update in flight each.
const DEVICES: usize = 8;
/// How long the load runs before the kill, in milliseconds.
const LOAD_MS: RangeInclusive<u64> = 50..=300;
/// How long a device waits for an answer; after the kill none comes.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// Bounds one device's loop in one cycle, whatever happens.
const MAX_UPDATES_PER_CYCLE: u64 = 50_000;

/// One device: its thing, its next counter and the last counter the hub accepted. Counters
/// never repeat, across cycles too, so an update that was sent but not answered (it may or may
/// not be durable) can never be taken for an accepted one.
#[derive(Clone)]
struct Device {
    thing: String,
    next: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl Device {
    /// Updates with increasing counters until the server dies. Connects and subscribes before
    /// `ready` lets the kill timer start.
    async fn run(self, addr: SocketAddr, ready: Arc<Barrier>) {
        let mut client = connect(addr, &self.thing).await;
        let answers = topic::accepted(&self.thing, ShadowOp::Update);
        let requests = topic::request(&self.thing, ShadowOp::Update);
        client.subscribe(&answers).await;
        ready.wait().await;
        for _ in 0..MAX_UPDATES_PER_CYCLE {
            let counter = self.next.fetch_add(1, Ordering::SeqCst);
            let token = format!("c{counter}");
            let update = json!({"state": {"reported": {"n": counter}}, "clientToken": token});
            if !client.try_publish_json(&requests, &update).await {
                return;
            }
            let Some(answer) = client.try_recv_on(&answers, ANSWER_WAIT).await else {
                return;
            };
            let answer: Value = answer.json();
            assert_eq!(
                answer["clientToken"],
                token.as_str(),
                "answers come in order"
            );
            self.accepted.store(counter, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_shadow_updates_survive_sigkill() {
    let cycles = env_u64("DOPPEL_CRASH_CYCLES").unwrap_or(DEFAULT_CYCLES);
    let seed = env_u64("DOPPEL_CRASH_SEED").unwrap_or_else(rand::random);
    eprintln!("MQTT crash test: {cycles} cycles, DOPPEL_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| Device {
            thing: format!("crash-{i}"),
            next: Arc::new(AtomicU64::new(1)),
            accepted: Arc::new(AtomicU64::new(0)),
        })
        .collect();
    let http = common::http_client();
    // One more start than kills: the last start only checks.
    for cycle in 0..=cycles {
        let mut server = Server::start_in(dir.path(), &["--mqtt-allow-anonymous", "true"]);
        // Everything accepted before this start must be there.
        for device in &devices {
            let floor = device.accepted.load(Ordering::SeqCst);
            if floor == 0 {
                continue;
            }
            let path = format!("/v1/tenants/default/twins/{}", device.thing);
            let twin: Value = http
                .get(server.url(&path))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let stored = twin["reported"]["state"]["n"].as_u64().unwrap_or(0);
            assert!(
                stored >= floor,
                "cycle {cycle}, seed {seed}: {} was accepted at n={floor} but holds n={stored}",
                device.thing
            );
        }
        if cycle == cycles {
            break;
        }
        let ready = Arc::new(Barrier::new(DEVICES + 1));
        let running: Vec<_> = devices
            .iter()
            .map(|device| tokio::spawn(device.clone().run(server.mqtt, ready.clone())))
            .collect();
        ready.wait().await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(LOAD_MS))).await;
        server.kill();
        for device in running {
            device.await.unwrap();
        }
    }
    let accepted: u64 = devices
        .iter()
        .map(|device| device.accepted.load(Ordering::SeqCst))
        .sum();
    // The counters of all devices, summed: how many updates the run sent, roughly.
    eprintln!("MQTT crash test: the last accepted counters sum to {accepted}");
    assert!(
        accepted > 0,
        "the load accepted nothing: the test checked nothing"
    );
}
