//! The MQTT source.
//!
//! - [`decode`]: the pure decoder, `(topic, payload, received_at) -> readings`;
//! - `mapping`: topic mappings for existing devices;
//! - [`options`]: connection options (persistent session, manual acks, TLS;
//!   MQTT 5 with floodguard's Receive Maximum, or 3.1.1);
//! - [`link`]: either version's client and event loop behind one surface;
//! - [`client`]: the event loop, whose acks always drain, and the worker
//!   that decodes and hands messages to the intake.
pub mod client;
pub mod decode;
pub mod link;
mod mapping;
pub mod options;

pub use client::Mqtt;
pub use decode::{DecodeError, Decoder};
