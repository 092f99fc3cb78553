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

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

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
    statements: HashMap<String, Statement>,
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
        Ok(Conn { client: Arc::new(client), statements: HashMap::new() })
    }

    /// The connection has ended (the server went away or closed it).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = block(self.client.prepare(sql))?;
        if self.statements.len() >= 256 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Runs a statement (prepared once per connection); rows changed.
    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let s = self.statement(sql)?;
        block(self.client.execute(&s, params))
    }

    pub fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let s = self.statement(sql)?;
        block(self.client.query(&s, params))
    }

    pub fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, Error> {
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
