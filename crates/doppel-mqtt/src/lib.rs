//! Devices over MQTT: the embedded broker (rmqtt), AWS IoT Device Shadow topics, presence,
//! device authentication and topic ACLs.

pub mod acl;
mod admission;
mod broker;
pub mod commands;
pub mod config;
mod connections;
mod context;
mod hooks;
pub mod identity;
mod metric;
pub mod mount;
mod pipeline;
pub mod presence;
pub mod rejection;
mod retain;
mod server;
pub mod shadow;
pub mod sync;
mod trace;

pub use config::{HANDSHAKE_SOCKETS, MqttConfig, TlsConfig};
pub use metric::describe_metrics;
pub use server::{ANONYMOUS_TENANT, Listening, MqttError, MqttServer};
