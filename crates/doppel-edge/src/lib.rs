//! The edge agent: a durable local replica of a gateway's twins, next to the devices.
//!
//! It is the available half of Doppel. The device application talks to the agent's local HTTP
//! API (the hub's twin routes without the tenant segment), which answers from the agent's own
//! engine and store whether or not the hub is reachable. Each device behind the agent has its
//! own MQTT link to the hub; over it the agent sends the changes made locally (in order, each
//! with its vector clock) and merges the hub's replicated state back, by the same conflict
//! rules the hub applies ([`doppel_model::replica`]). Commands the hub delivers are queued
//! locally for the application and their acknowledgements go back to the hub.

mod agent;
mod availability;
pub mod config;
mod http;
mod link;
#[cfg(unix)]
mod local_socket;
mod watermark;

pub use agent::{Edge, Listening};
pub use availability::{Availability, describe_metrics};
pub use config::{DeviceCredential, EdgeConfig, EdgeError, HubAddress, LocalApi};
pub use http::EDGE_ROUTES;
