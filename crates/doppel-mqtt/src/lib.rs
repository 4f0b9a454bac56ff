//! Devices over MQTT: the embedded broker (rmqtt), AWS IoT Device Shadow topics, presence,
//! device authentication and topic ACLs.

pub mod acl;
mod admission;
mod broker;
pub mod commands;
pub mod config;
mod connections;
mod hub;
pub mod identity;
mod metric;
pub mod mount;
pub mod presence;
pub mod rejection;
mod retain;
pub mod shadow;
pub mod sync;
mod trace;

pub use broker::{ANONYMOUS_TENANT, HANDSHAKE_SOCKETS, Listening, MqttError, MqttServer};
pub use config::{MqttConfig, TlsConfig};
pub use metric::describe_metrics;
