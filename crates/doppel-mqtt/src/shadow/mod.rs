//! The AWS IoT Device Shadow protocol: documents (pure), and the service that answers requests
//! with the engine. Its topics are `doppel_wire::shadow`.

pub mod document;
pub(crate) mod service;
