//! Intake: what the field sends, decoded into readings and handed to the
//! outlet, confirmed to the sender once spooled.
//!
//! - [`intake`]: the protocol-independent part every source uses — hand
//!   decoded messages to the outlet with their confirmation, count readings,
//!   log bad input once per cause;
//! - [`mqtt`]: the MQTT source — the pure decoder and topic mappings,
//!   connection options, and the client whose acks always drain;
//! - [`push`]: HTTP push, the pure part — line protocol and JSON bodies
//!   into readings, each bad line named (the handlers are `http::push`);
//! - [`sl651`]: the SL 651-2014 central station — the frame codec, reports
//!   into readings, the TCP server;
//! - [`modbus`]: Modbus TCP polling of pump-station PLCs — the register
//!   map and the pollers.
pub mod intake;
pub mod modbus;
pub mod mqtt;
pub mod push;
pub mod sl651;

pub use intake::Intake;
pub use mqtt::{DecodeError, Decoder, Mqtt};
