//! Notifications out: messages per channel, the durable outbox and its workers.
pub mod message;
pub mod sign;
