//! The lease keeper: thread `fg-lease`, one per node of a PostgreSQL
//! cluster. As a standby it reads the lease and takes it once it has
//! lapsed (just after, by the database's clock); as the leader it renews it
//! every third of the lease. Each call is bounded: a renewal that has not
//! come back within a third of the lease is given up, and a leader that
//! cannot renew stops acting by its own clock ([`super::Cluster::term`]).
//! At a clean stop the leader gives the lease up, so a standby takes over
//! at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{sql, Cluster};
use crate::state::pg::{Conn, Target};

/// What the lease looked like to a standby.
enum Look {
    /// This node took it: its epoch and since when (ns).
    Took(i64, i64),
    /// Another node holds it (or held it: `left_ms` ≤ 0 means lapsed).
    Held { node: String, epoch: i64, since: i64, left_ms: i64 },
    /// Never taken (a table with no row yet and the insert lost a race).
    Nobody,
}

/// Connects and makes the lease table and the fence function.
pub fn connect(target: &Target, lease: Duration) -> Result<Conn, String> {
    let conn = Conn::connect(target, &sql::session_setup(lease)).map_err(|e| e.to_string())?;
    conn.batch(&sql::setup("")).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn look(conn: &Conn, node: &str, lease: Duration, limit: Duration) -> Result<Look, String> {
    let node = node.to_string();
    let ms = lease.as_millis() as i64;
    let r = conn.timed(limit, move |c| async move {
        if let Some(row) = c.query_opt(sql::ACQUIRE, &[&node, &ms]).await? {
            return Ok(Look::Took(row.get(0), row.get(1)));
        }
        Ok(match c.query_opt(sql::READ, &[]).await? {
            Some(row) => {
                Look::Held { node: row.get(0), epoch: row.get(1), since: row.get(2), left_ms: row.get(3) }
            }
            None => Look::Nobody,
        })
    });
    match r {
        None => Err("the database did not answer in time".into()),
        Some(r) => r.map_err(|e| e.to_string()),
    }
}

fn renew(conn: &Conn, node: &str, epoch: i64, lease: Duration, limit: Duration) -> Result<bool, String> {
    let node = node.to_string();
    let ms = lease.as_millis() as i64;
    match conn.timed(limit, move |c| async move { c.query_opt(sql::RENEW, &[&node, &epoch, &ms]).await }) {
        None => Err("the renewal did not come back in time".into()),
        Some(r) => r.map(|row| row.is_some()).map_err(|e| e.to_string()),
    }
}

fn release(conn: &Conn, node: &str, epoch: i64, limit: Duration) {
    let node = node.to_string();
    match conn.timed(limit, move |c| async move { c.execute(sql::RELEASE, &[&node, &epoch]).await }) {
        Some(Ok(1)) => tracing::info!(epoch, "lease given up: a standby takes over at once"),
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot give the lease up; a standby takes over once it lapses")
        }
        None => tracing::warn!("giving the lease up timed out; a standby takes over once it lapses"),
    }
}

/// Keeps or seeks the lease until `stop`; then gives it up if held.
pub fn run(cluster: Arc<Cluster>, target: Target, stop: CancellationToken) {
    let timing = cluster.timing();
    let node = cluster.node().to_string();
    let mut conn: Option<Conn> = None;
    let mut failing_since: Option<Instant> = None;
    let sleep = |d: Duration| {
        let end = Instant::now() + d;
        while !stop.is_cancelled() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    };
    let fail = |failing_since: &mut Option<Instant>,
                cluster: &Cluster,
                conn: &mut Option<Conn>,
                e: String| {
        if failing_since.is_none() {
            tracing::error!(error = %e, url = %target.url, "cluster lease: cannot reach PostgreSQL; retrying");
            *failing_since = Some(Instant::now());
        }
        cluster.failing(format!("PostgreSQL state ({}): {e}", target.url));
        *conn = None;
    };
    while !stop.is_cancelled() {
        // A lease that ran out by this node's clock is over, renewed or not.
        let leading = cluster.inner.lock().expect("cluster lock").leading.map(|(e, _)| e);
        if let Some(epoch) = leading {
            if cluster.term().is_none() {
                cluster.lost(&format!("epoch {epoch}: the lease ran out before it could be renewed"));
                continue;
            }
        }
        if conn.as_ref().is_none_or(Conn::is_closed) {
            match connect(&target, timing.lease) {
                Ok(c) => {
                    if failing_since.take().is_some() {
                        tracing::info!("cluster lease: PostgreSQL reached again");
                    }
                    conn = Some(c);
                }
                Err(e) => {
                    fail(&mut failing_since, &cluster, &mut conn, e);
                    sleep(timing.retry());
                    continue;
                }
            }
        }
        let c = conn.as_ref().expect("connected above");
        let sent = Instant::now();
        match cluster.term() {
            Some(epoch) => match renew(c, &node, epoch, timing.lease, timing.call_limit()) {
                Ok(true) => {
                    cluster.renewed(epoch, sent);
                    sleep(timing.renew_every().saturating_sub(sent.elapsed()));
                }
                Ok(false) => cluster.lost(&format!("epoch {epoch}: the lease is no longer this node's")),
                Err(e) => {
                    fail(&mut failing_since, &cluster, &mut conn, e);
                    sleep(timing.retry());
                }
            },
            None => match look(c, &node, timing.lease, timing.call_limit()) {
                Ok(Look::Took(epoch, since)) => cluster.took(epoch, since, sent),
                Ok(Look::Held { node: holder, epoch, since, left_ms }) => {
                    cluster.seen(Some(holder), epoch, Some(since));
                    sleep(timing.standby_wait(left_ms));
                }
                Ok(Look::Nobody) => sleep(timing.retry()),
                Err(e) => {
                    fail(&mut failing_since, &cluster, &mut conn, e);
                    sleep(timing.retry());
                }
            },
        }
    }
    if let (Some(epoch), Some(c)) = (cluster.term(), conn.as_ref()) {
        // Stop acting first, then let the others in.
        cluster.lost("stopping");
        release(c, &node, epoch, timing.call_limit());
    }
}

/// Starts the keeper on thread `fg-lease`.
pub fn spawn(
    cluster: Arc<Cluster>,
    target: Target,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("fg-lease".into()).spawn(move || run(cluster, target, stop))
}
