//! Where the alert state lives: `data_dir/state.db` (SQLite, one node, the
//! default) or a PostgreSQL database shared by the nodes of a cluster
//! (`[state] backend = "postgres"`, DESIGN.md "State and cluster").
//!
//! - [`db`]: the backend trait, [`db::Backend`], over a SQLite or a
//!   PostgreSQL connection, with the values and rows both speak;
//! - [`pg`]: connections to PostgreSQL (tokio-postgres on a runtime thread
//!   of its own, waited for on the stages' own threads);
//! - [`pg_schema`]: the same migrations as `state.db`'s, in PostgreSQL's
//!   types, with the cluster's fence on the leader's tables;
//! - [`copy`]: `floodguard state migrate --to postgres`.

pub mod copy;
pub mod db;
pub mod pg;
pub mod pg_schema;

use std::time::Duration;

use db::Backend;

/// The engine cursor's name for `node` in a shared state: every node
/// judges every reading from its own spool, so each has its own.
pub fn engine_cursor(node: &str) -> String {
    format!("engine:{node}")
}

/// Opens a connection to the PostgreSQL state: the district's schema made
/// when missing, the lease and the fence, the migrations applied.
pub fn open_postgres(target: &pg::Target, lease: Duration) -> Result<pg::Conn, db::Error> {
    let conn = pg::Conn::connect(target, &crate::cluster::sql::session_setup(lease))?;
    conn.batch(&crate::cluster::sql::setup(pg_schema::VERSION_TABLE))?;
    migrate_postgres(&conn)?;
    Ok(conn)
}

/// The PostgreSQL schema's version (0: none yet).
pub fn postgres_version(conn: &pg::Conn) -> Result<usize, db::Error> {
    conn.batch(pg_schema::VERSION_TABLE)?;
    let v = conn.query_opt("SELECT version FROM fg_schema", &[])?;
    Ok(match v {
        Some(r) => usize::try_from(r.i64(0)?).unwrap_or(0),
        None => 0,
    })
}

/// Applies the missing migrations, each in a transaction that locks the
/// version table first: two nodes starting at once take turns.
pub fn migrate_postgres(conn: &pg::Conn) -> Result<(), db::Error> {
    conn.batch(pg_schema::VERSION_TABLE)?;
    for (i, sql) in pg_schema::migrations().iter().enumerate() {
        if postgres_version(conn)? > i {
            continue;
        }
        conn.begin(db::Fence::Open)?;
        let step = (|| {
            conn.batch("LOCK TABLE fg_schema IN EXCLUSIVE MODE")?;
            if postgres_version(conn)? <= i {
                conn.batch(sql)?;
                conn.execute("DELETE FROM fg_schema", &[])?;
                conn.execute("INSERT INTO fg_schema (version) VALUES (?1)", &crate::vals![(i + 1) as i64])?;
            }
            Ok::<_, db::Error>(())
        })();
        match step {
            Ok(()) => conn.commit()?,
            Err(e) => {
                let _ = conn.rollback();
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_has_every_migration_of_state_db() {
        assert_eq!(
            super::pg_schema::migrations().len(),
            crate::alerts::schema_versions(),
            "a migration of state.db needs its PostgreSQL twin in state/pg_schema.rs"
        );
    }
}
