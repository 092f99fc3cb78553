//! The part of intake every source shares (MQTT today; SL 651, Modbus and
//! HTTP push next): decoded messages go to the outlet with the source's
//! [`Confirm`] — an MQTT ack, an SL 651 confirmation frame, an HTTP 204 —
//! which the outlet calls once they are in the spool. A source never waits
//! for anything but room in the outlet's queue, and confirming never waits
//! at all, so backpressure reaches the sender as "not yet confirmed" and
//! nothing downstream of the spool can stop a source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::outlet::{self, Confirm, Submission};
use crate::reading::Reading;
use crate::sources::Sources;

/// A source's way to the outlet.
#[derive(Clone)]
pub struct Intake {
    outlet: outlet::Handle,
    metrics: Arc<Metrics>,
    /// Where each site's last input is noted, and under which protocol.
    sources: Option<(Arc<Sources>, &'static str)>,
}

impl Intake {
    pub fn new(outlet: outlet::Handle, metrics: Arc<Metrics>) -> Intake {
        Intake { outlet, metrics, sources: None }
    }

    /// Notes each site's last input in `sources`, as `protocol`.
    pub fn recording(mut self, sources: Arc<Sources>, protocol: &'static str) -> Intake {
        self.sources = Some((sources, protocol));
        self
    }

    /// A message of `site` came from `from` (a topic, a station, a device).
    pub fn seen(&self, site: &Arc<str>, from: &str, at_ms: i64) {
        if let Some((s, protocol)) = &self.sources {
            s.record(site, protocol, from, at_ms);
        }
    }

    /// Hands decoded messages (one group of readings per message) to the
    /// outlet; `confirm` is called once they are spooled. Waits only while
    /// the outlet's queue is full.
    pub async fn submit(
        &self,
        catalog: Arc<Catalog>,
        messages: Vec<Vec<Reading>>,
        confirm: Box<dyn Confirm>,
        received_ms: i64,
    ) -> Result<(), outlet::Stopped> {
        let n: usize = messages.iter().map(Vec::len).sum();
        self.outlet.submit(Submission { catalog, messages, confirm, received_ms }).await?;
        self.metrics.readings.inc_by(n as u64);
        Ok(())
    }

    /// Submissions waiting for the outlet.
    pub fn outlet_queued(&self) -> usize {
        self.outlet.queued()
    }
}

/// Logs dropped input once per cause and interval, with the count of the
/// ones it kept quiet about: a broken device sending 10 msgs/s must not
/// flood the log.
#[derive(Default)]
pub struct DropLog {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl DropLog {
    const INTERVAL: Duration = Duration::from_secs(10);

    /// `from`: where it came from (a topic, a station, a peer address).
    pub fn log(&mut self, cause: &'static str, from: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let entry = self.last.entry(cause).or_insert((now - Self::INTERVAL * 2, 0));
        if now.duration_since(entry.0) >= Self::INTERVAL {
            tracing::warn!(cause, from, error = %error, suppressed = entry.1, "input dropped");
            *entry = (now, 0);
        } else {
            entry.1 += 1;
        }
    }
}
