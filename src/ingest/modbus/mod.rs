//! Modbus TCP polling of pump-station PLCs (`[[modbus.devices]]`): floodguard
//! is the client, each PLC a server it asks every `interval`.
//!
//! ```text
//! PLC ◀──read holding/input registers, coils, discrete inputs (fn 3, 4, 1, 2)── poller (one task per device)
//!  └──words, bits, exceptions──▶ map::Block::values → one message at the poll time → Intake::submit
//!                                                                   │
//!                                  next poll once spooled (Confirm) ◀┘
//! ```
//! - [`map`]: the register map, pure — which reads to send (nearby
//!   addresses in one request), how words and bits become values (u16, i16,
//!   u32, i32, f32 in ABCD or CDAB word order, scale and offset; coils,
//!   discrete inputs and bits of a status word as flags);
//! - [`poller`]: the tasks — connection, timeouts, reconnection with
//!   backoff, errors counted per device and cause. A device that does not
//!   answer gives no readings, so its site goes stale by the plan's rules.
pub mod map;
pub mod poller;

pub use poller::{Modbus, CAUSES};
