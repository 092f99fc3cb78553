//! Notifications out: messages per channel, the durable outbox and its workers.
pub mod sign;
