//! Connections to PostgreSQL for the state backend and the cluster's lease.
//!
//! tokio-postgres is the client. Its connections (the sockets and the
//! protocol) run on a small runtime of their own, thread `fg-postgres`;
//! a [`Conn`] is called from a stage's own thread (the alert stage, the
//! outbox's senders, the lease keeper, HTTP handlers through
//! `spawn_blocking`) and waits there for the answer with the futures
//! executor's `block_on`, which — unlike a tokio runtime's — works on a
//! thread that is itself inside a small runtime (the outbox's senders).
//! No database call ever waits on an async worker of the daemon.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::db::{Backend, Dialect, Fence, Row as DbRow, Value};
use crate::config::{Secret, StateSection};

pub use tokio_postgres::Error;

/// The runtime that drives every PostgreSQL connection of the process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fg-postgres")
            .enable_all()
            .build()
            .expect("cannot start the PostgreSQL runtime")
    })
}

/// Waits for `f` on this thread (a stage's own, never an async worker).
pub fn block<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// Where the state lives: the URL's settings with the password from
/// `state.password`.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    /// The URL as configured (it holds no password), for messages.
    pub url: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("url", &self.url).finish()
    }
}

impl Target {
    pub fn new(url: &str, password: Option<&Secret>) -> Result<Target, String> {
        let mut config: tokio_postgres::Config =
            url.trim().parse().map_err(|e| format!("state.url: not a PostgreSQL URL: {e}"))?;
        if let Some(p) = password {
            config.password(p.expose());
        }
        if config.get_application_name().is_none() {
            config.application_name("floodguard");
        }
        // A database host that vanishes without a reset (a partition, a
        // failed-over address) is noticed in seconds, not at the kernel's
        // two hours.
        config.connect_timeout(Duration::from_secs(5));
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        config.keepalives_interval(Duration::from_secs(2));
        config.keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(10));
        Ok(Target { config, url: url.trim().to_string() })
    }

    pub fn from_section(s: &StateSection) -> Result<Target, String> {
        Target::new(&s.url, s.password.as_ref())
    }
}

/// One connection, its prepared statements, and the settings it was
/// opened with.
pub struct Conn {
    client: Arc<Client>,
    /// Prepared statements by their SQLite-dialect text (see `state::db`).
    statements: RefCell<HashMap<String, Statement>>,
}

impl Conn {
    /// Connects and runs `setup` (`SET …` statements) on the new session.
    pub fn connect(target: &Target, setup: &str) -> Result<Conn, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let config = target.config.clone();
        let setup = setup.to_string();
        runtime().spawn(async move {
            let result = match config.connect(NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    match setup.is_empty() {
                        true => Ok(client),
                        false => client.batch_execute(&setup).await.map(|()| client),
                    }
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(result);
        });
        let client = rx.recv().expect("the PostgreSQL runtime answers")?;
        Ok(Conn { client: Arc::new(client), statements: RefCell::new(HashMap::new()) })
    }

    /// The connection has ended (the server went away or closed it).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The statement of `sql` (written as for SQLite: `?1`), prepared once
    /// per connection.
    fn statement(&self, sql: &str) -> Result<Statement, Error> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = block(self.client.prepare(&super::db::to_postgres(sql)))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= 512 {
            cache.clear();
        }
        cache.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Runs a statement with tokio-postgres' own parameters; rows changed.
    pub fn execute_pg(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let s = self.statement(sql)?;
        block(self.client.execute(&s, params))
    }

    pub fn query_pg(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let s = self.statement(sql)?;
        block(self.client.query(&s, params))
    }

    pub fn query_opt_pg(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
        let s = self.statement(sql)?;
        block(self.client.query_opt(&s, params))
    }

    /// Runs statements as one simple query (no parameters), e.g.
    /// `BEGIN; SET LOCAL …` in one round trip.
    pub fn batch(&self, sql: &str) -> Result<(), Error> {
        block(self.client.batch_execute(sql))
    }

    /// Runs `f` on the PostgreSQL runtime with the client, waiting at most
    /// `limit` (the lease keeper's calls: a renewal that hangs must not
    /// outlive the lease). `None` when the time ran out.
    pub fn timed<T, F, Fut>(&self, limit: Duration, f: F) -> Option<Result<T, Error>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let client = self.client.clone();
        runtime().spawn(async move {
            let r = tokio::time::timeout(limit, f(client)).await;
            let _ = tx.send(r.ok());
        });
        rx.recv().ok().flatten()
    }
}

/// The SQLSTATE of a fenced write: the database refused it because a newer
/// leader's epoch exists (`cluster::sql::FENCE`).
pub const FENCED: &str = "FG001";

/// Whether `e` is the database refusing a deposed leader's write.
pub fn is_fenced(e: &Error) -> bool {
    e.code().is_some_and(|c| c.code() == FENCED)
}

/// Whether `e` says the connection is gone (reconnect and try again).
pub fn is_connection(e: &Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::CONNECTION_FAILURE
                || *c == SqlState::CONNECTION_EXCEPTION
                || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        })
        || e.code().is_none()
}

/// A [`Value`] as PostgreSQL wants it for the parameter's type.
#[derive(Debug)]
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let bad = || format!("{:?} cannot be a {ty}", self.0);
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(bad().into()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(bad().into()),
            },
            Value::Text(t) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    t.as_str().to_sql(ty, out)
                }
                _ => Err(bad().into()),
            },
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::BOOL
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
        )
    }

    tokio_postgres::types::to_sql_checked!();
}

fn value(row: &Row, i: usize) -> Result<Value, super::db::Error> {
    let ty = row.columns()[i].type_().clone();
    let bad = |e: Error| super::db::Error::Postgres(e);
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(bad)?.map_or(Value::Null, Value::Int),
        Type::INT4 => {
            row.try_get::<_, Option<i32>>(i).map_err(bad)?.map_or(Value::Null, |v| Value::Int(v.into()))
        }
        Type::INT2 => {
            row.try_get::<_, Option<i16>>(i).map_err(bad)?.map_or(Value::Null, |v| Value::Int(v.into()))
        }
        Type::OID => {
            row.try_get::<_, Option<u32>>(i).map_err(bad)?.map_or(Value::Null, |v| Value::Int(v.into()))
        }
        Type::BOOL => {
            row.try_get::<_, Option<bool>>(i).map_err(bad)?.map_or(Value::Null, |v| Value::Int(v.into()))
        }
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(bad)?.map_or(Value::Null, Value::Real),
        Type::FLOAT4 => {
            row.try_get::<_, Option<f32>>(i).map_err(bad)?.map_or(Value::Null, |v| Value::Real(v.into()))
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            row.try_get::<_, Option<String>>(i).map_err(bad)?.map_or(Value::Null, Value::Text)
        }
        other => {
            return Err(super::db::Error::Decode(format!(
                "column {} has type {other}, which the state does not use",
                row.columns()[i].name()
            )))
        }
    })
}

impl Backend for Conn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, params: &[Value]) -> super::db::Result<u64> {
        let p: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = p.iter().map(|x| x as &(dyn ToSql + Sync)).collect();
        Ok(self.execute_pg(sql, &refs)?)
    }

    fn query(&self, sql: &str, params: &[Value]) -> super::db::Result<Vec<DbRow>> {
        let p: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = p.iter().map(|x| x as &(dyn ToSql + Sync)).collect();
        let rows = self.query_pg(sql, &refs)?;
        rows.iter()
            .map(|r| (0..r.len()).map(|i| value(r, i)).collect::<super::db::Result<Vec<_>>>().map(DbRow))
            .collect()
    }

    fn batch(&self, sql: &str) -> super::db::Result<()> {
        Ok(Conn::batch(self, sql)?)
    }

    fn begin(&self, fence: Fence) -> super::db::Result<()> {
        match fence {
            Fence::Leader(epoch) => Conn::batch(self, &crate::cluster::sql::begin_fenced(epoch))?,
            Fence::Open => Conn::batch(self, "BEGIN")?,
        }
        Ok(())
    }

    fn commit(&self) -> super::db::Result<()> {
        Ok(Conn::batch(self, "COMMIT")?)
    }

    fn rollback(&self) -> super::db::Result<()> {
        Ok(Conn::batch(self, "ROLLBACK")?)
    }

    fn is_broken(&self) -> bool {
        self.is_closed()
    }
}
