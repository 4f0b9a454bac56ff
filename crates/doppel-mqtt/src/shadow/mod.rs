//! The AWS IoT Device Shadow protocol: topics and documents (pure), and the service that answers
//! requests with the engine.

pub mod document;
pub(crate) mod service;
pub mod topic;
