//! Storage in InfluxDB: line protocol, the HTTP client for the v1 and v2 write
//! APIs, the retry decision, and the writer that drains the spool.
pub mod line_protocol;
