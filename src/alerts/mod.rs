//! The alert manager: engine transitions become alerts with a lifecycle —
//! pending → firing ⇄ escalated/de-escalated → acked → disposed → resolved —
//! kept in SQLite, followed up until acknowledged, told to the right teams.
//!
//! - [`model`]: alerts, timelines, silences, intents, notifications;
//! - [`decide`]: the pure decisions (table-tested);
//! - [`route`]: which teams and members are told;
//! - [`store`]: SQLite persistence and migrations;
//! - [`records`]: issues and returns of flood materials, drills — kept
//!   beside the alerts in `state.db`;
//! - [`prune`]: the daily pruning of what is older than `state.retention`;
//! - [`manager`]: applies transitions, ticks and operators' acts;
//! - [`shadow`]: what a standby judged and did not record, reconciled at takeover;
//! - [`stage`]: the alert stage's thread — batches, retries, follow-ups.
pub mod decide;
pub mod manager;
pub mod model;
pub mod prune;
pub mod records;
pub mod route;
mod schema;
pub mod shadow;
pub mod stage;
pub mod store;

/// How many migrations `state.db` has (PostgreSQL must have as many).
pub fn schema_versions() -> usize {
    schema::MIGRATIONS.len()
}

pub use manager::{AlertManager, LogNotifier, NewMovement, Notifier, OpError, Places, PointsOut, Supplies};
