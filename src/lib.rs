//! floodguard — monitoring and alerting for a district flood-control command center.
#[macro_use]
mod macros;

pub mod config;
pub mod level;
pub mod reading;
