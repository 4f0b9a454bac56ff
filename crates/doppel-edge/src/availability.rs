//! The agent's own account of its availability: how long the hub was out of reach, how many
//! local requests were served meanwhile (the goal is all of them), and each link's state, with
//! why it last failed and since when the hub refuses it.

use doppel_model::Millis;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Links to the hub that are up now.
const LINKS_UP: &str = "doppel_edge_links_up";
/// Local requests, by whether the hub was out of reach and whether they were served.
const REQUESTS: &str = "doppel_edge_requests_total";

/// Describes the agent's own metrics and creates them at zero. Call once the process's
/// recorder is installed.
pub fn describe_metrics() {
    metrics::describe_gauge!(LINKS_UP, "Links to the hub that are up now.");
    metrics::describe_counter!(
        REQUESTS,
        "Local API requests, by whether the hub was out of reach and whether they were served."
    );
    metrics::gauge!(LINKS_UP).increment(0.0);
    for during_partition in ["true", "false"] {
        for served in ["true", "false"] {
            metrics::counter!(REQUESTS, "during_partition" => during_partition, "served" => served)
                .increment(0);
        }
    }
}

/// Link and request counters, shared by the links and the HTTP layer.
#[derive(Debug)]
pub struct Availability {
    links: usize,
    book: Mutex<LinkBook>,
    started: Instant,
    requests: AtomicU64,
    failed: AtomicU64,
    partition_requests: AtomicU64,
    partition_failed: AtomicU64,
}

#[derive(Debug)]
struct LinkBook {
    /// Links to the hub that are up now.
    up: usize,
    /// When the current partition began; `None` while every link is up.
    partition_since: Option<Instant>,
    /// Time spent partitioned before the current partition.
    partitioned: Duration,
    partitions: u64,
    /// Each device's link, by device id.
    states: BTreeMap<String, LinkState>,
}

/// One link as `GET /v1/edge/status` shows it.
#[derive(Debug, Default)]
struct LinkState {
    up: bool,
    /// Why the last attempt to reach the hub failed; cleared when the link comes up.
    last_error: Option<String>,
    /// When the hub began refusing the link (credentials, certificate): something only the
    /// operator can fix, unlike a partition. Cleared when the link comes up.
    refused_since: Option<Millis>,
    /// Refused attempts since `refused_since`.
    refusals: u64,
}

impl Availability {
    /// Counters for the links of `devices`, all down until they connect: until the agent has
    /// reached the hub, it is partitioned from it.
    pub fn new<'a>(devices: impl IntoIterator<Item = &'a str>) -> Self {
        let states: BTreeMap<String, LinkState> = devices
            .into_iter()
            .map(|device| (device.to_owned(), LinkState::default()))
            .collect();
        let links = states.len();
        let now = Instant::now();
        Self {
            links,
            book: Mutex::new(LinkBook {
                up: 0,
                partition_since: (links > 0).then_some(now),
                partitioned: Duration::ZERO,
                partitions: u64::from(links > 0),
                states,
            }),
            started: now,
            requests: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            partition_requests: AtomicU64::new(0),
            partition_failed: AtomicU64::new(0),
        }
    }

    /// The agent is partitioned while any of its links is down.
    pub fn partitioned(&self) -> bool {
        self.book().partition_since.is_some()
    }

    pub(crate) fn link_up(&self, device: &str) {
        let mut book = self.book();
        if let Some(state) = book.states.get_mut(device) {
            *state = LinkState {
                up: true,
                ..LinkState::default()
            };
        }
        book.up = (book.up + 1).min(self.links);
        if book.up == self.links
            && let Some(since) = book.partition_since.take()
        {
            book.partitioned += since.elapsed();
        }
        metrics::gauge!(LINKS_UP).set(book.up as f64);
    }

    pub(crate) fn link_down(&self, device: &str) {
        let mut book = self.book();
        if let Some(state) = book.states.get_mut(device) {
            state.up = false;
        }
        book.up = book.up.saturating_sub(1);
        if book.partition_since.is_none() {
            book.partition_since = Some(Instant::now());
            book.partitions += 1;
        }
        metrics::gauge!(LINKS_UP).set(book.up as f64);
    }

    /// Records why an attempt of `device`'s link to reach the hub failed; `refused` when the hub
    /// (or its certificate) refused it, at `now`.
    pub(crate) fn link_failed(&self, device: &str, error: String, refused: bool, now: Millis) {
        let mut book = self.book();
        if let Some(state) = book.states.get_mut(device) {
            state.last_error = Some(error);
            if refused {
                state.refused_since.get_or_insert(now);
                state.refusals += 1;
            }
        }
    }

    /// Counts one local request; `served` is false for a server error.
    pub(crate) fn record(&self, during_partition: bool, served: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !served {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if during_partition {
            self.partition_requests.fetch_add(1, Ordering::Relaxed);
            if !served {
                self.partition_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        metrics::counter!(
            REQUESTS,
            "during_partition" => if during_partition { "true" } else { "false" },
            "served" => if served { "true" } else { "false" },
        )
        .increment(1);
    }

    /// Time spent partitioned since start, the current partition included.
    pub fn time_partitioned(&self) -> Duration {
        let book = self.book();
        book.partitioned
            + book
                .partition_since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// The status document of `GET /v1/edge/status`.
    pub fn report(&self) -> Value {
        let (up, partitions, partitioned_now, links) = {
            let book = self.book();
            let links: Vec<Value> = book
                .states
                .iter()
                .map(|(device, state)| {
                    json!({
                        "device": device,
                        "up": state.up,
                        "last_error": state.last_error,
                        "refused_since": state.refused_since.map(Millis::to_rfc3339),
                        "refusals": state.refusals,
                    })
                })
                .collect();
            (
                book.up,
                book.partitions,
                book.partition_since.is_some(),
                links,
            )
        };
        // Uptime last: read first, it could come out shorter than the partition inside it.
        let partitioned = self.time_partitioned();
        let uptime = self.started.elapsed();
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (requests, failed) = (count(&self.requests), count(&self.failed));
        let (partition_requests, partition_failed) = (
            count(&self.partition_requests),
            count(&self.partition_failed),
        );
        let fraction = |served: u64, of: u64| {
            if of == 0 {
                1.0
            } else {
                served as f64 / of as f64
            }
        };
        json!({
            "hub": {
                "links": self.links,
                "links_up": up,
                "partitioned": partitioned_now,
                "partitions": partitions,
                "partitioned_seconds": partitioned.as_secs_f64(),
                "uptime_seconds": uptime.as_secs_f64(),
                "partitioned_fraction": partitioned.as_secs_f64() / uptime.as_secs_f64().max(f64::MIN_POSITIVE),
            },
            "links": links,
            "requests": {
                "total": requests,
                "served": requests - failed,
                "during_partition": partition_requests,
                "served_during_partition": partition_requests - partition_failed,
            },
            "availability": fraction(requests - failed, requests),
            "availability_during_partition": fraction(partition_requests - partition_failed, partition_requests),
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, LinkBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_link_shows_why_and_since_when_until_it_comes_up() {
        let availability = Availability::new(["pump-1", "pump-2"]);
        availability.link_failed("pump-1", "connection refused".into(), false, Millis(1));
        availability.link_failed("pump-1", "bad password".into(), true, Millis(2));
        availability.link_failed("pump-1", "bad password".into(), true, Millis(3));
        let report = availability.report();
        let link = &report["links"][0];
        assert_eq!(link["device"], "pump-1");
        assert_eq!(link["last_error"], "bad password");
        assert_eq!(
            link["refused_since"],
            Millis(2).to_rfc3339(),
            "the first refusal"
        );
        assert_eq!(link["refusals"], 2, "the network failure is no refusal");
        assert_eq!(report["links"][1]["last_error"], Value::Null);

        availability.link_up("pump-1");
        let report = availability.report();
        let link = &report["links"][0];
        assert_eq!(link["up"], true);
        assert_eq!(link["last_error"], Value::Null);
        assert_eq!(link["refused_since"], Value::Null);
        assert_eq!(link["refusals"], 0);
    }
}
