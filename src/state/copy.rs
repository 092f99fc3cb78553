//! `floodguard state migrate --to postgres`: copies `data_dir/state.db`
//! into the PostgreSQL state, whole, in one transaction — every table of
//! the same schema version, row for row with their ids, parents before the
//! rows that refer to them; the identity counters moved past the copied
//! ids; the node's engine cursor renamed to its cluster name
//! (`engine:<node>`), so this node resumes its spool where it stopped.
//!
//! It refuses a PostgreSQL state that already holds alerts, notifications
//! or messages (two histories would mix), and a `state.db` of another
//! schema version than the binary's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::db::{Backend, Fence, Value};
use super::pg::{Conn, Target};

/// Rows copied per table.
pub type Copied = BTreeMap<String, u64>;

/// Rows per INSERT.
const CHUNK: usize = 200;

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tables of `state.db`, parents first (by their foreign keys).
fn tables(db: &rusqlite::Connection) -> Result<Vec<String>, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut s = db
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .map_err(e)?;
    let names: Vec<String> =
        s.query_map([], |r| r.get(0)).map_err(e)?.collect::<Result<_, _>>().map_err(e)?;
    let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &names {
        let mut s = db
            .prepare(&format!("SELECT \"table\" FROM pragma_foreign_key_list({})", quote_lit(n)))
            .map_err(e)?;
        let p: Vec<String> =
            s.query_map([], |r| r.get(0)).map_err(e)?.collect::<Result<_, _>>().map_err(e)?;
        parents.insert(n.clone(), p);
    }
    let mut ordered: Vec<String> = Vec::new();
    while ordered.len() < names.len() {
        let before = ordered.len();
        for n in &names {
            if !ordered.contains(n)
                && parents[n].iter().all(|p| p == n || ordered.contains(p) || !names.contains(p))
            {
                ordered.push(n.clone());
            }
        }
        if ordered.len() == before {
            return Err("state.db's tables refer to each other in a circle".into());
        }
    }
    Ok(ordered)
}

fn quote_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn columns(db: &rusqlite::Connection, table: &str) -> Result<Vec<String>, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut s = db
        .prepare(&format!("SELECT name FROM pragma_table_info({}) ORDER BY cid", quote_lit(table)))
        .map_err(e)?;
    let v = s.query_map([], |r| r.get(0)).map_err(e)?.collect::<Result<Vec<String>, _>>().map_err(e)?;
    Ok(v)
}

/// Copies `state.db` at `path` into the PostgreSQL state at `target`;
/// `node` names this node's engine cursor there.
pub fn to_postgres(path: &Path, target: &Target, node: &str, lease: Duration) -> Result<Copied, String> {
    if !path.is_file() {
        return Err(format!("{}: no such file (nothing to migrate)", path.display()));
    }
    // Brings state.db to this binary's schema first.
    drop(crate::alerts::store::Store::open(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let src = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let pg = super::open_postgres(target, lease).map_err(|e| format!("{}: {e}", target.url))?;
    let version: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    let pg_version = super::postgres_version(&pg).map_err(|e| e.to_string())?;
    if version as usize != pg_version {
        return Err(format!(
            "state.db is at schema version {version}, PostgreSQL at {pg_version}: use the same floodguard for both"
        ));
    }
    let busy = pg
        .query_one(
            "SELECT (SELECT COUNT(*) FROM alerts) + (SELECT COUNT(*) FROM notifications) + (SELECT COUNT(*) FROM outbox)",
            &[],
        )
        .and_then(|r| r.i64(0))
        .map_err(|e| e.to_string())?;
    if busy > 0 {
        return Err(format!(
            "the PostgreSQL state at {} already holds {busy} alerts, notifications or messages: \
             refusing to mix two histories (migrate into an empty database or schema)",
            target.url
        ));
    }
    let order = tables(&src)?;
    pg.begin(Fence::Open).map_err(|e| e.to_string())?;
    let result = copy_tables(&src, &pg, &order, node);
    match result {
        Ok(c) => {
            pg.commit().map_err(|e| e.to_string())?;
            Ok(c)
        }
        Err(e) => {
            let _ = pg.rollback();
            Err(e)
        }
    }
}

/// The order rows are copied in: the primary key's, or the rowid where
/// the table has no declared key (a `WITHOUT ROWID` table always has one).
fn order_by(db: &rusqlite::Connection, table: &str) -> Result<String, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut s = db
        .prepare(&format!(
            "SELECT name FROM pragma_table_info({}) WHERE pk > 0 ORDER BY pk",
            quote_lit(table)
        ))
        .map_err(e)?;
    let keys =
        s.query_map([], |r| r.get::<_, String>(0)).map_err(e)?.collect::<Result<Vec<_>, _>>().map_err(e)?;
    Ok(if keys.is_empty() {
        "rowid".into()
    } else {
        keys.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ")
    })
}

fn copy_tables(
    src: &rusqlite::Connection,
    pg: &Conn,
    order: &[String],
    node: &str,
) -> Result<Copied, String> {
    let mut copied = Copied::new();
    for table in order {
        let cols = columns(src, table)?;
        let list = cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let rows = src
            .query(&format!("SELECT {list} FROM {} ORDER BY {}", quote(table), order_by(src, table)?), &[])
            .map_err(|e| format!("reading {table}: {e}"))?;
        for chunk in rows.chunks(CHUNK) {
            let mut sql = format!("INSERT INTO {} ({list}) VALUES ", quote(table));
            let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * cols.len());
            for (r, row) in chunk.iter().enumerate() {
                if r > 0 {
                    sql.push_str(", ");
                }
                let marks: Vec<String> =
                    (0..cols.len()).map(|c| format!("?{}", r * cols.len() + c + 1)).collect();
                sql.push_str(&format!("({})", marks.join(", ")));
                params.extend(row.0.iter().cloned());
            }
            pg.execute(&sql, &params).map_err(|e| format!("writing {table}: {e}"))?;
        }
        copied.insert(table.clone(), rows.len() as u64);
        if cols.iter().any(|c| c == "id") {
            // Identity columns go on after the copied ids.
            let has_identity = pg
                .query_opt(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                        AND table_name = ?1 AND column_name = 'id' AND is_identity = 'YES'",
                    &crate::vals![table.as_str()],
                )
                .map_err(|e| e.to_string())?
                .is_some();
            if has_identity {
                pg.query(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence({}, 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {}",
                        quote_lit(table),
                        quote(table)
                    ),
                    &[],
                )
                .map_err(|e| format!("{table}: {e}"))?;
            }
        }
    }
    pg.execute(
        "UPDATE cursors SET name = ?1 WHERE name = ?2",
        &crate::vals![super::engine_cursor(node), crate::alerts::manager::ENGINE_CURSOR],
    )
    .map_err(|e| e.to_string())?;
    Ok(copied)
}
