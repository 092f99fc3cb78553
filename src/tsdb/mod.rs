//! Storage in InfluxDB: line protocol, the HTTP client for the v1 and v2 write
//! APIs, the retry decision, and the writer that drains the spool.
pub mod client;
pub mod line_parse;
pub mod line_protocol;
pub mod retry;
pub mod writer;

pub use client::InfluxClient;
pub use writer::{Writer, WriterOptions};
