//! Ingest: MQTT messages in, readings out.
pub mod decode;

pub use decode::{DecodeError, Decoder};
