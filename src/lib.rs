//! floodguard — monitoring and alerting for a district flood-control command center.
#[macro_use]
mod macros;

pub mod catalog;
pub mod config;
pub mod ingest;
pub mod level;
pub mod reading;
pub mod spool;
pub mod tsdb;
