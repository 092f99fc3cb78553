//! The alert manager's side of a cluster (`crate::cluster`): whose work a
//! transaction is — the leader's, fenced by its epoch, or an operator's act
//! on any node — the memory re-read when another node acted, and the
//! takeover that applies what this node judged as a standby and the old
//! leader had not recorded (`alerts::shadow`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

/// Whose work a transaction is: the leader's (fenced by its epoch) or an
/// operator's act (any node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Whose {
    Leader,
    Operator,
}

impl AlertManager {
    /// This node in a cluster on a shared state: it records the engine's
    /// changes only while it leads, under its epoch; its engine cursor is
    /// its own (`state::engine_cursor`).
    pub fn in_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        if cluster.is_shared() {
            self.cursor_name = crate::state::engine_cursor(cluster.node());
        }
        self.cluster = cluster;
        self
    }

    pub fn cluster(&self) -> &Arc<crate::cluster::Cluster> {
        &self.cluster
    }

    /// Runs `f` over the state in one transaction; on an error the
    /// in-memory state is put back as it was and nothing is sent.
    ///
    /// The leader's work carries its epoch: the database refuses it once
    /// another node leads (`OpError::Fenced`). In a shared state the leader
    /// first reads the operators' acts counter and, when another node acted
    /// since, re-reads its memory of the alerts (an ack on the standby
    /// stops the leader's repeats); an operator's act counts itself.
    pub(super) fn with_as<T>(
        &self,
        whose: Whose,
        f: impl FnOnce(&mut Work<'_>) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        let fence = match whose {
            Whose::Leader => match self.cluster.term() {
                Some(epoch) => crate::state::db::Fence::Leader(epoch),
                None => return Err(OpError::Fenced("this node does not lead".into())),
            },
            Whose::Operator => crate::state::db::Fence::Open,
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.stale {
            inner.reload_memory()?;
        }
        let shared = inner.store.is_shared();
        let mut out = Out::default();
        let told = inner.last_told.clone();
        let spooled = self.points.as_ref().map_or(0, |p| p.spooled.load(Ordering::Relaxed));
        let deleted = inner.points_deleted;
        let seen = inner.seen_changes;
        let mut seen_now = seen;
        let result = inner.store.transaction_as(fence, |tx| {
            if shared {
                let seq = tx.changes_seq()?;
                if whose == Whose::Operator || seq != seen {
                    Inner::reload_in(
                        tx,
                        &mut inner.active,
                        &mut inner.offline,
                        &mut inner.pending,
                        &mut inner.supplies,
                    )?;
                }
                seen_now = seq;
            }
            if whose == Whose::Leader && spooled > deleted {
                tx.delete_points_upto(spooled)?;
            }
            let mut w = Work {
                tx,
                teams: &inner.teams,
                silences: &inner.config_silences,
                places: &inner.places,
                active: &mut inner.active,
                offline: &mut inner.offline,
                pending: &mut inner.pending,
                out: &mut out,
                db_silences: None,
                dirty: HashMap::new(),
                pending_changed: HashSet::new(),
                last_told: &mut inner.last_told,
                supplies: &mut inner.supplies,
            };
            let v = f(&mut w)?;
            w.write_pending()?;
            w.write_dirty()?;
            if !w.out.lines.is_empty() && self.points.is_some() {
                w.out.points_row = Some(tx.insert_points(&w.out.lines)?);
            }
            if shared && whose == Whose::Operator {
                seen_now = tx.bump_changes()?;
            }
            Ok(v)
        });
        match result {
            Ok(v) => {
                if whose == Whose::Leader {
                    inner.points_deleted = inner.points_deleted.max(spooled);
                }
                inner.seen_changes = seen_now;
                drop(guard);
                self.finish(out);
                Ok(v)
            }
            Err(e) => {
                inner.last_told = told;
                // Rolled back: the memory follows what is on record.
                // (Cheaper than copying it before every transaction: a
                // storm keeps thousands of alerts and intents.)
                if let Err(re) = inner.reload_memory() {
                    tracing::error!(error = %re, "cannot re-read the alerts after a failed transaction; trying again before the next");
                    inner.stale = true;
                }
                Err(e)
            }
        }
    }

    /// This node has just taken the lead: its memory is read from the
    /// record, and what its engine judged as a standby and the record lacks
    /// (the old leader died before recording it) is applied, with the times
    /// it was judged at (`shadow`). How many changes that took.
    pub fn take_over(
        &self,
        shadow: &crate::alerts::shadow::Shadow,
        now: TimestampNs,
    ) -> Result<usize, OpError> {
        {
            let mut inner = self.lock();
            // Whatever this node's memory held is from before: re-read it in
            // the transaction below.
            inner.seen_changes = Some(i64::MIN);
            inner.last_told.clear();
        }
        let fold = self.lock().teams.alerting.fold_sites_into_street;
        let n = self.with_as(Whose::Leader, |w| {
            let last = w.tx.last_level_changes()?;
            let todo = shadow.reconcile(w.active.values(), &last);
            let area = |t: &&Transition| matches!(t.change, Change::Street { .. } | Change::District { .. });
            let ordered: Vec<&Transition> = if fold {
                todo.iter().filter(area).chain(todo.iter().filter(|t| !area(t))).collect()
            } else {
                todo.iter().collect()
            };
            // Each change as the leader would have told it then: the groups
            // due by its time go out before the next change is applied (a
            // Ⅰ judged a second before a fall to Ⅱ is told as Ⅰ, not folded
            // into the Ⅱ; changes within a group's wait are grouped as they
            // would have been).
            for t in &ordered {
                w.transition(t)?;
                w.flush_due(t.at)?;
            }
            w.flush_due(now)?;
            Ok(todo.len())
        })?;
        if let Err(e) = self.resend_points() {
            tracing::warn!(error = %e, "cannot hand the points on record to the spool; they go at the next start");
        }
        Ok(n)
    }

    /// Records how far this node's engine judged, without recording its
    /// changes (a standby: the leader records them).
    pub fn record_cursor(&self, upto: Progress) -> Result<(), OpError> {
        let mut inner = self.lock();
        Ok(inner.store.put_cursor(&self.cursor_name, upto.segment, upto.offset)?)
    }
}
