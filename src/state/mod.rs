//! Where the alert state lives: `data_dir/state.db` (SQLite, one node, the
//! default) or a PostgreSQL database shared by the nodes of a cluster
//! (`[state] backend = "postgres"`, DESIGN.md "State and cluster").
//!
//! - [`pg`]: connections to PostgreSQL (tokio-postgres on a runtime thread
//!   of its own, waited for on the stages' own threads).

pub mod pg;
