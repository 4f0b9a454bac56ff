//! Doppel's device simulator (`doppel sim`): many devices, each with its own MQTT connection,
//! against one hub.
//!
//! Each simulated device behaves like firmware written for the AWS IoT Device Shadow
//! (docs/MQTT.md): it connects as its thing (anonymously, or with a credential), subscribes to
//! its commands and its delta, reports a ~300-byte sensor document at once and then every
//! interval ± jitter, reports a delta's state when one arrives (that is how a device applies
//! desired state) and acknowledges every command with `SUCCEEDED`. Its link follows the
//! two-state model of [`doppel_netfault::LinkModel`] with its own seed: on Down it drops its
//! connection without a word, on Up it connects again.
//!
//! # Scale: how 100,000 devices fit in one process
//!
//! Measured on this project's machine (2 cores) against a release `doppel serve` on loopback,
//! resident memory (VmRSS) of the simulating process per connected device, reporting every
//! 10 s, above the same process with one device:
//!
//! | design | 1,000 devices | 5,000 devices | 19,000 devices |
//! | --- | --- | --- | --- |
//! | rumqttc `AsyncClient` + `EventLoop`, a task each | 32.4 KiB | 33.3 KiB | (not run) |
//! | this crate: rumqttc's codec only, shards of device futures | 2.0 KiB | 2.3 KiB | 2.2 KiB |
//!
//! With the first design 100,000 devices would need 3.3 GB; with this one about 220 MB. At
//! 19,000 devices (the most this machine's open-files limit of 20,000 allows, for the hub as
//! well) the simulator used 51 MB and about a fifth of a core, mostly system time in socket
//! calls, while the hub acknowledged 1,900 reports/s.
//!
//! So a device here is not a rumqttc client but one small future ([`device`]) over a plain
//! `TcpStream` and rumqttc's MQTT 3.1.1 packet codec ([`connection`]). It allocates a read
//! buffer only while bytes are waiting, keeps no channels, and is polled, with the other devices
//! of its shard, by one task on one thread (a shard): `tasks` threads, each a single-threaded
//! runtime with its own epoll and timer wheel. Per-device counters live in the shard, without
//! atomics; only the progress bar's few counters are shared.
//!
//! The operating system still limits one process ([`limits`]): one open file per connected
//! device (the simulator raises its soft limit to the hard one and refuses a run that cannot
//! fit) and ~28,000 ephemeral ports per source address (past 25,000 devices a loopback hub is
//! reached from 127.0.0.2, 127.0.0.3, ...). First connects are paced at `connect_rate` per second
//! so that the hub sees a steady stream, not a storm.
//!
//! # Glossary
//!
//! - **slot**: when device `i` first connects, `i / connect_rate` seconds after the start.
//! - **phase**: a stretch of a device's link schedule, Up or Down.
//! - **shard**: a thread with its share of the devices (every `tasks`-th one).
//! - **report**: a shadow update (`$aws/things/{thing}/shadow/update`), periodic or applying a
//!   delta; its latency is publish to PUBACK, which the hub sends once the update is durable.

pub mod config;
pub mod connection;
pub mod device;
pub mod histogram;
pub mod limits;
pub mod payload;
pub mod progress;
pub mod report;
mod shard;
mod shard_state;
mod simulation;
pub mod timing;

pub use config::{ConfigError, Credentials, SimConfig};
pub use progress::ProgressMode;
pub use report::{DeviceStats, SimReport};
pub use simulation::{SimError, run};
