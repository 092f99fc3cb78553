//! Ingest: MQTT messages in, readings spooled and acked.
//!
//! - [`decode`]: the pure decoder, `(topic, payload, received_at) -> readings`;
//! - [`mqtt`]: connection options (persistent session, manual acks, TLS);
//! - [`pipeline`]: the event loop and the worker that spools and acks.
pub mod decode;
mod mapping;
pub mod mqtt;
pub mod pipeline;

pub use decode::{DecodeError, Decoder};
pub use pipeline::Ingest;
