//! Doppel's device protocol as data, shared by the hub (`doppel-mqtt`), the edge agent, the
//! simulator and the tests, so that a topic, a message shape or a limit is written once and
//! both sides of the wire break together at compile time when it changes.
//!
//! - [`topic`]: every topic the hub serves or publishes, as one [`Topic`] with
//!   [`Topic::parse`] and a builder per topic;
//! - [`shadow`]: the AWS IoT Device Shadow requests and answers and the twin a shadow names;
//! - [`sync`]: the replica sync messages and [`sync::MAX_SYNC_CHANGES`];
//! - [`command`]: the command delivery and acknowledgement messages;
//! - [`filter`]: MQTT topic-filter matching (the ACL's and the hub's subscriber checks).
//!
//! Pure: no broker, no runtime, no I/O.

pub mod command;
pub mod filter;
mod levels;
pub mod shadow;
pub mod sync;
pub mod topic;

pub use topic::{Topic, Verdict};
