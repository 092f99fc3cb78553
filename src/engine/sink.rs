//! Where the engine's judgements go: the alert stage in the daemon, a log
//! or a vector in tests and replays.
//!
//! Each batch says how far into the spool the engine had judged when it
//! made these transitions (`upto`): the alert stage commits that mark with
//! the transitions, in one transaction, so after a crash the engine resumes
//! exactly after the last reading whose consequences are on record — every
//! reading judged once, none twice.

use super::{Change, Transition};
use crate::level::Level;

/// A place in the spool, as the engine's progress: segment and offset
/// (the spool's `Position`, which the pure engine does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Progress {
    pub segment: u64,
    pub offset: u64,
}

/// One batch of judgement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judged {
    pub transitions: Vec<Transition>,
    /// Everything in the spool before this was judged (None: transitions
    /// not made from readings, such as a reload's).
    pub upto: Option<Progress>,
}

/// The receiving stage has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the transition sink is closed")]
pub struct Closed;

/// Where judgements go. `deliver` may wait (for room in the alert stage's
/// queue); it is called from the engine's own thread.
pub trait TransitionSink: Send + Sync {
    fn deliver(&self, judged: Judged) -> Result<(), Closed>;
}

/// Logs transitions; stands in for the alert manager.
pub struct LogSink;

impl TransitionSink for LogSink {
    fn deliver(&self, judged: Judged) -> Result<(), Closed> {
        log(&judged.transitions);
        Ok(())
    }
}

/// Logs each transition (info; offline as a warning).
pub fn log(transitions: &[Transition]) {
    for t in transitions {
        match &t.change {
            Change::Site(c) => tracing::info!(
                site = %c.site, rule = %c.rule,
                from = level_str(c.from), to = level_str(c.to),
                value = ?c.value, threshold = ?c.threshold,
                "level change"
            ),
            Change::Offline { site, reason, .. } => tracing::warn!(%site, ?reason, "site offline"),
            Change::Online { site } => tracing::info!(%site, "site online"),
            Change::Street { street, from, to, .. } => {
                tracing::info!(%street, from = level_str(*from), to = level_str(*to), "street level")
            }
            Change::District { from, to } => {
                tracing::info!(from = level_str(*from), to = level_str(*to), "district level")
            }
            Change::Qc(f) => tracing::debug!(
                site = %f.site, metric = %f.metric, value = f.value, flag = %f.flag, test = %f.test,
                confirmed = f.confirmed, "quality flag"
            ),
            Change::SensorFault(f) => tracing::warn!(
                site = %f.site, metric = %f.metric, test = %f.test, open = f.open, "suspected sensor fault"
            ),
            Change::Upstream(u) => tracing::warn!(
                upstream = %u.id, kind = ?u.kind, down = u.down, sites = u.sites.len(), "collection link"
            ),
        }
    }
}

fn level_str(l: Option<Level>) -> &'static str {
    l.map_or("none", |l| l.as_str())
}
