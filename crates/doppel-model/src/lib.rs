//! The pure twin model of Doppel.
//!
//! Everything here takes values and returns values: no clocks (time is passed in), no I/O, no
//! concurrency. The engine owns those. Keeping the rules here makes them testable by property
//! tests and reusable by the hub and, later, the edge agent, which must reach the same results.

pub mod codec;
pub mod command;
pub mod crdt;
pub mod delta;
pub mod error;
pub mod history;
pub mod hlc;
pub mod id;
pub mod limits;
pub mod meta;
pub mod patch;
pub mod policy;
pub mod principal;
pub mod replica;
pub mod replica_state;
pub mod time;
pub mod trace;
pub mod twin;
pub mod update;
pub mod vclock;
pub mod write;

pub use error::{ModelError, Subject};
pub use history::{HistoryEntry, HistoryKind};
pub use id::{DeviceId, TenantId, TwinKey};
pub use limits::Limits;
pub use meta::Meta;
pub use principal::{AppName, Principal, PrincipalKind};
pub use time::Millis;
pub use trace::{InvalidTraceParent, TraceId, TraceParent};
pub use twin::{Connection, ConnectionStatus, Section, Twin};
pub use update::{Applied, Change, MetaPatch, SectionChange, UpdateRequest};
pub use write::{Context, apply};
