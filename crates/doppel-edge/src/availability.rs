//! The agent's own account of its availability: how long the hub was out of reach and how many
//! local requests were served meanwhile (the goal is all of them).

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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
}

impl Availability {
    /// Counters for `links` links, all down until they connect: until the agent has reached
    /// the hub, it is partitioned from it.
    pub fn new(links: usize) -> Self {
        let now = Instant::now();
        Self {
            links,
            book: Mutex::new(LinkBook {
                up: 0,
                partition_since: (links > 0).then_some(now),
                partitioned: Duration::ZERO,
                partitions: u64::from(links > 0),
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

    pub(crate) fn link_up(&self) {
        let mut book = self.book();
        book.up = (book.up + 1).min(self.links);
        if book.up == self.links
            && let Some(since) = book.partition_since.take()
        {
            book.partitioned += since.elapsed();
        }
        metrics::gauge!("doppel_edge_links_up").set(book.up as f64);
    }

    pub(crate) fn link_down(&self) {
        let mut book = self.book();
        book.up = book.up.saturating_sub(1);
        if book.partition_since.is_none() {
            book.partition_since = Some(Instant::now());
            book.partitions += 1;
        }
        metrics::gauge!("doppel_edge_links_up").set(book.up as f64);
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
            "doppel_edge_requests_total",
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
        let (up, partitions, partitioned_now) = {
            let book = self.book();
            (book.up, book.partitions, book.partition_since.is_some())
        };
        let uptime = self.started.elapsed();
        let partitioned = self.time_partitioned();
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
