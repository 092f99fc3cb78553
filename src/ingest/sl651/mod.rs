//! SL 651-2014 (水文监测数据通信规约), the hydrological telemetry protocol:
//! remote stations (RTUs) dial out to the central station over TCP (or UDP,
//! SMS, Beidou) and send reports — rainfall, levels, supply voltage, status —
//! in HEX/BCD or ASCII frames, confirmed by the centre in work modes M2/M4.
//!
//! - [`frame`]: the pure codec — frames from a byte stream, CRC, and the
//!   builders for confirmations (and for tests and the simulator);
//! - [`element`]: message bodies — serial, send time, station, observation
//!   groups and their elements.
//! - [`map`]: reports into readings (station → site, element → metric,
//!   observation time in the configured zone, 5-minute blocks);
//! - [`transfer`]: M3 multi-packet transfers reassembled, the missing
//!   packet asked for;
//! - [`server`]: the TCP and UDP central station, confirming each frame
//!   once its readings are spooled.
pub mod element;
pub mod frame;
pub mod map;
pub mod server;
pub mod transfer;

pub use server::Sl651;

/// Every cause the SL 651 error counter may carry, for pre-registering.
pub fn causes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = frame::FrameError::CAUSES.to_vec();
    v.extend([
        frame::UNKNOWN_ELEMENT,
        "unknown_station",
        "bad_time",
        "wrong_centre",
        "downlink",
        "m3_missing",
        "idle_timeout",
        "too_many_connections",
        "future_timestamp",
        "bad_timestamp",
        "wrong_type",
        "non_finite",
    ]);
    v
}

#[cfg(test)]
mod frame_tests;
