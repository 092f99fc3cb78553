//! SL 651-2014 (水文监测数据通信规约), the hydrological telemetry protocol:
//! remote stations (RTUs) dial out to the central station over TCP (or UDP,
//! SMS, Beidou) and send reports — rainfall, levels, supply voltage, status —
//! in HEX/BCD or ASCII frames, confirmed by the centre in work modes M2/M4.
//!
//! - [`frame`]: the pure codec — frames from a byte stream, CRC, and the
//!   builders for confirmations (and for tests and the simulator);
//! - [`element`]: message bodies — serial, send time, station, observation
//!   groups and their elements.
//!
//! The central station that feeds the codec and sends the replies comes next.
pub mod element;
pub mod frame;

#[cfg(test)]
mod frame_tests;
