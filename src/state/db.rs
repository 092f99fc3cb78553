//! The state backend: one trait, [`Backend`], over a SQLite connection
//! (`data_dir/state.db`) and a PostgreSQL connection ([`super::pg::Conn`]).
//!
//! The stores above it (alerts, the outbox and its delivery log, ack-link
//! nonces, records, pruning, the migration) write their SQL once, in the
//! subset both databases speak: numbered parameters `?1`, `INSERT … ON
//! CONFLICT … DO NOTHING/UPDATE`, `RETURNING id`, `CAST(?1 AS BIGINT)` where
//! PostgreSQL must be told a parameter's type. For PostgreSQL the text is
//! rewritten once per statement (`$1`; SQLite's `INDEXED BY` hints
//! dropped). Values travel as [`Value`] and rows come back as [`Row`]s of
//! values, so neither store sees which database it talks to.
//!
//! Transactions: [`Backend::begin`] with a [`Fence`]: a leader's work
//! carries its epoch and PostgreSQL refuses it once a newer epoch exists
//! (`cluster::sql`); an operator's act carries none. SQLite has one node
//! and no fence; its writers take this process's fair write turn
//! ([`Backend::write_turn`]).

use std::fmt;

use rusqlite::types::ValueRef;

use super::pg;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Int(v as i64)
            }
        }
    )*};
}
from_int!(i64, i32, u32, u16, u8, usize, u64);

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Parameters: `vals![a, b, c]`.
#[macro_export]
macro_rules! vals {
    () => { [] as [$crate::state::db::Value; 0] };
    ($($v:expr),+ $(,)?) => { [$($crate::state::db::Value::from($v)),+] };
}

/// One row, its columns as values.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0.get(i).ok_or_else(|| Error::Decode(format!("no column {i}")))
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Real(v) => Ok(Some(*v as i64)),
            Value::Text(t) => {
                t.parse().map(Some).map_err(|_| Error::Decode(format!("column {i}: {t:?} is not an integer")))
            }
        }
    }

    pub fn i64(&self, i: usize) -> Result<i64> {
        self.opt_i64(i)?.ok_or_else(|| Error::Decode(format!("column {i} is NULL")))
    }

    pub fn opt_f64(&self, i: usize) -> Result<Option<f64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v as f64)),
            Value::Real(v) => Ok(Some(*v)),
            Value::Text(t) => Err(Error::Decode(format!("column {i}: {t:?} is not a number"))),
        }
    }

    pub fn f64(&self, i: usize) -> Result<f64> {
        self.opt_f64(i)?.ok_or_else(|| Error::Decode(format!("column {i} is NULL")))
    }

    pub fn opt_string(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Int(v) => Ok(Some(v.to_string())),
            Value::Real(v) => Ok(Some(v.to_string())),
        }
    }

    pub fn string(&self, i: usize) -> Result<String> {
        self.opt_string(i)?.ok_or_else(|| Error::Decode(format!("column {i} is NULL")))
    }

    pub fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.i64(i)? != 0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A backend's error.
#[derive(Debug)]
pub enum Error {
    Sqlite(rusqlite::Error),
    Postgres(pg::Error),
    /// A value of the wrong type, a missing column, an unreadable JSON body.
    Decode(String),
    /// A leader's write asked of a node that does not lead (by its own
    /// clock: its lease may lapse before the write would end).
    NotLeader,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sqlite(e) => write!(f, "{e}"),
            Error::Postgres(e) => match e.as_db_error() {
                Some(d) => write!(f, "{}: {}", d.code().code(), d.message()),
                None => write!(f, "{e}"),
            },
            Error::Decode(e) => write!(f, "{e}"),
            Error::NotLeader => write!(f, "this node does not lead: the leader writes this"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

impl From<pg::Error> for Error {
    fn from(e: pg::Error) -> Self {
        Error::Postgres(e)
    }
}

impl Error {
    /// The database refused a deposed leader's write (a newer epoch leads).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Error::NotLeader) || matches!(self, Error::Postgres(e) if pg::is_fenced(e))
    }

    /// The connection is gone: open a new one and try again.
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Postgres(e) if pg::is_connection(e))
    }

    /// A unique key exists already.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            Error::Postgres(e) => e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Whose work a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// The leader's, at its epoch: refused once a newer epoch leads.
    Leader(i64),
    /// An operator's act (ack, dispose, silences, materials), a node's own
    /// engine cursor, a command: allowed on any node.
    Open,
}

/// A connection to the state: SQLite or PostgreSQL.
pub trait Backend: Send {
    fn dialect(&self) -> Dialect;
    /// Runs one statement; rows changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs one statement; its rows.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Runs statements without parameters (schema changes).
    fn batch(&self, sql: &str) -> Result<()>;
    fn begin(&self, fence: Fence) -> Result<()>;
    fn commit(&self) -> Result<()>;
    fn rollback(&self) -> Result<()>;
    /// The connection is gone for good (PostgreSQL restarted): make a new one.
    fn is_broken(&self) -> bool {
        false
    }

    /// SQLite: this process's turn to write (`alerts::store::write_turn`);
    /// PostgreSQL needs none.
    fn write_turn(&self) -> Option<parking_lot::FairMutexGuard<'static, ()>> {
        None
    }

    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params)?.ok_or_else(|| Error::Decode("no row".into()))
    }

    /// An `INSERT … RETURNING id`: the new row's id.
    fn insert(&self, sql: &str, params: &[Value]) -> Result<i64> {
        self.query_one(sql, params)?.i64(0)
    }
}

/// The process's fair write turn on `state.db` (see `alerts::store::write_turn`).
static WRITES: parking_lot::FairMutex<()> = parking_lot::const_fair_mutex(());

/// Waits for this process's turn to write `state.db`.
pub fn sqlite_write_turn() -> parking_lot::FairMutexGuard<'static, ()> {
    WRITES.lock()
}

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(f) => rusqlite::types::Value::Real(*f),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

fn from_sqlite(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
    }
}

impl Backend for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let p: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
        Ok(self.prepare_cached(sql)?.execute(rusqlite::params_from_iter(p))? as u64)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let p: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
        let mut s = self.prepare_cached(sql)?;
        let n = s.column_count();
        let rows = s.query_map(rusqlite::params_from_iter(p), |r| {
            (0..n).map(|i| r.get_ref(i).map(from_sqlite)).collect::<rusqlite::Result<Vec<_>>>().map(Row)
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn batch(&self, sql: &str) -> Result<()> {
        Ok(self.execute_batch(sql)?)
    }

    fn begin(&self, _fence: Fence) -> Result<()> {
        Ok(self.execute_batch("BEGIN")?)
    }

    fn commit(&self) -> Result<()> {
        Ok(self.execute_batch("COMMIT")?)
    }

    fn rollback(&self) -> Result<()> {
        Ok(self.execute_batch("ROLLBACK")?)
    }

    fn write_turn(&self) -> Option<parking_lot::FairMutexGuard<'static, ()>> {
        Some(sqlite_write_turn())
    }
}

/// SQLite's text as PostgreSQL's: `?N` → `$N`, `INDEXED BY name` dropped.
/// Quoted strings are left as they are.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c == '\'' {
            quoted = !quoted;
            out.push(c);
            i += 1;
            continue;
        }
        if !quoted && c == '?' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
            out.push('$');
            i += 1;
            continue;
        }
        if !quoted && sql[i..].starts_with("INDEXED BY ") {
            i += "INDEXED BY ".len();
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            continue;
        }
        let ch = sql[i..].chars().next().expect("a char at a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_rewritten_for_postgres_outside_quotes_only() {
        assert_eq!(
            to_postgres(
                "SELECT id FROM outbox INDEXED BY outbox_open WHERE a = ?1 AND b IN ('?2', ?12) -- 中文"
            ),
            "SELECT id FROM outbox  WHERE a = $1 AND b IN ('?2', $12) -- 中文"
        );
    }

    #[test]
    fn values_round_trip_through_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let c: &dyn Backend = &conn;
        c.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT)").unwrap();
        let id = c
            .insert("INSERT INTO t (n, x, s) VALUES (?1, ?2, ?3) RETURNING id", &vals![7i64, 2.5, "水位"])
            .unwrap();
        c.insert(
            "INSERT INTO t (n, x, s) VALUES (?1, ?2, ?3) RETURNING id",
            &vals![None::<i64>, None::<f64>, None::<String>],
        )
        .unwrap();
        let r = c.query_one("SELECT n, x, s FROM t WHERE id = ?1", &vals![id]).unwrap();
        assert_eq!((r.i64(0).unwrap(), r.f64(1).unwrap(), r.string(2).unwrap()), (7, 2.5, "水位".into()));
        let rows = c
            .query(
                "SELECT n, x, s FROM t WHERE CAST(?1 AS BIGINT) IS NULL OR id > ?1 ORDER BY id",
                &vals![id],
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].opt_i64(0).unwrap(), rows[0].opt_f64(1).unwrap(), rows[0].opt_string(2).unwrap()),
            (None, None, None)
        );
        assert_eq!(c.execute("UPDATE t SET n = ?1 WHERE n IS NULL", &vals![true]).unwrap(), 1);
        assert!(c.query_one("SELECT n FROM t WHERE id = ?1", &vals![id + 1]).unwrap().bool(0).unwrap());
        c.begin(Fence::Leader(3)).unwrap();
        c.execute("DELETE FROM t", &[]).unwrap();
        c.rollback().unwrap();
        assert_eq!(c.query_one("SELECT COUNT(*) FROM t", &[]).unwrap().i64(0).unwrap(), 2);
        assert!(c.write_turn().is_some());
    }
}
