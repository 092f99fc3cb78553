//! floodguard — monitoring and alerting for a district flood-control command center.
#[macro_use]
mod macros;

pub mod backoff;
pub mod catalog;
pub mod check;
pub mod config;
pub mod daemon;
pub mod health;
pub mod http;
pub mod ingest;
pub mod level;
pub mod logging;
pub mod metrics;
pub mod reading;
pub mod spool;
pub mod tsdb;
