//! Stages and their supervision: what every stage of the daemon reports, how
//! a stall is judged, and how a stage that ends tells the daemon.
//!
//! The daemon runs intake → outlet → engine → alerts → outbox, each with its
//! own execution (DESIGN.md, "Stages"). Each stage holds a [`Probe`] and
//! reports into it: how much waits for it, since when its oldest item waits,
//! and a heartbeat whenever it finished an item or waited idle. A stage that
//! has work and no heartbeat for `STALL_AFTER` is stalled: `/readyz` fails
//! and names it, with the problem it last reported ("state.db: database is
//! locked"). Nothing here blocks: probes are atomics read by `/readyz` and
//! `/metrics` at request time; the judgement is the pure [`judge`].
//!
//! A stage that ends — returns, or panics — while the daemon runs drops its
//! [`ExitGuard`], which tells the daemon; the daemon then stops the others
//! and exits non-zero, so systemd restarts it instead of leaving it half
//! alive.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// A stage with work and no heartbeat for this long is stalled. `/readyz`
/// must name a stalled stage within 10 s; this leaves room for the scrape.
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// Milliseconds since the epoch, the probes' clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What one stage reports.
pub struct Probe {
    pub name: &'static str,
    /// Items waiting for the stage (messages, batches, rows).
    queued: AtomicI64,
    /// When the oldest item waiting or in hand was handed over, ms; 0: none.
    oldest_ms: AtomicI64,
    /// The last time the stage finished an item or waited idle, ms.
    beat_ms: AtomicI64,
    /// Items finished since start.
    handled: AtomicU64,
    /// What is going wrong, while it is (a failing write being retried).
    problem: Mutex<Option<String>>,
    /// Reads the stage's queue from outside (its channel's length), so a
    /// stage that is stuck still shows the work piling up behind it.
    depth: Mutex<Option<Box<dyn Fn() -> usize + Send>>>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("name", &self.name).field("handled", &self.handled()).finish()
    }
}

impl Probe {
    pub fn new(name: &'static str) -> Arc<Probe> {
        Arc::new(Probe {
            name,
            queued: AtomicI64::new(0),
            oldest_ms: AtomicI64::new(0),
            beat_ms: AtomicI64::new(now_ms()),
            handled: AtomicU64::new(0),
            problem: Mutex::new(None),
            depth: Mutex::new(None),
        })
    }

    /// Reads the queue depth with `f` (a channel's `len`) from now on.
    pub fn set_depth(&self, f: impl Fn() -> usize + Send + 'static) {
        *self.depth.lock().expect("probe lock") = Some(Box::new(f));
    }

    /// The stage is fine: idle, or between items.
    pub fn beat(&self) {
        self.beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// `n` items finished: a heartbeat, and the count.
    pub fn done(&self, n: u64) {
        self.handled.fetch_add(n, Ordering::Relaxed);
        self.beat();
    }

    pub fn set_queued(&self, n: usize) {
        self.queued.store(n as i64, Ordering::Relaxed);
    }

    /// When the oldest item waiting or in hand was handed over (ms); `None`
    /// when nothing waits.
    pub fn set_oldest(&self, ms: Option<i64>) {
        self.oldest_ms.store(ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// Says what is going wrong (logged by the caller), or that it stopped.
    pub fn set_problem(&self, p: Option<String>) {
        *self.problem.lock().expect("probe lock") = p;
    }

    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        let depth = self.depth.lock().expect("probe lock").as_ref().map(|f| f() as i64);
        Snapshot {
            name: self.name,
            queued: depth.unwrap_or_else(|| self.queued.load(Ordering::Relaxed)).max(0),
            oldest_ms: self.oldest_ms.load(Ordering::Relaxed),
            beat_ms: self.beat_ms.load(Ordering::Relaxed),
            handled: self.handled(),
            problem: self.problem.lock().expect("probe lock").clone(),
        }
    }
}

/// A probe read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub name: &'static str,
    pub queued: i64,
    pub oldest_ms: i64,
    pub beat_ms: i64,
    pub handled: u64,
    pub problem: Option<String>,
}

/// A stage as `/readyz` shows it (`stages.{name}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub ok: bool,
    pub queued: i64,
    /// Age of the oldest item waiting or in hand, seconds (0 when none).
    pub oldest_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Whether the stage of `s` is stalled at `now_ms`, and why.
pub fn judge(s: &Snapshot, now_ms: i64, stall_after: Duration) -> Status {
    let has_work = s.queued > 0 || s.oldest_ms != 0;
    let silent_ms = (now_ms - s.beat_ms).max(0);
    let stalled = has_work && silent_ms as u128 > stall_after.as_millis();
    let oldest_s = if s.oldest_ms == 0 { 0.0 } else { (now_ms - s.oldest_ms).max(0) as f64 / 1000.0 };
    let problem = if stalled {
        let why = s.problem.as_deref().map_or(String::new(), |p| format!(": {p}"));
        Some(format!(
            "stage {} stalled: no progress for {:.0} s with {} waiting{why}",
            s.name,
            silent_ms as f64 / 1000.0,
            s.queued.max(1)
        ))
    } else {
        s.problem.clone()
    };
    Status { ok: !stalled, queued: s.queued, oldest_s, problem }
}

/// Every stage's probe, in pipeline order.
#[derive(Debug, Default, Clone)]
pub struct Stages {
    probes: Vec<Arc<Probe>>,
}

impl Stages {
    pub fn add(&mut self, name: &'static str) -> Arc<Probe> {
        let p = Probe::new(name);
        self.probes.push(p.clone());
        p
    }

    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.probes.iter().map(|p| p.snapshot()).collect()
    }
}

/// How a stage ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    pub stage: &'static str,
    pub panicked: bool,
    /// The error it returned, if it returned one.
    pub error: Option<String>,
}

/// Where ended stages are reported.
pub type Exits = tokio::sync::mpsc::UnboundedSender<Exit>;

/// Held by a stage for as long as it runs; dropping it (a return, or the
/// unwinding of a panic) tells the daemon.
pub struct ExitGuard {
    stage: &'static str,
    exits: Exits,
    error: Option<String>,
}

impl ExitGuard {
    pub fn new(stage: &'static str, exits: &Exits) -> ExitGuard {
        ExitGuard { stage, exits: exits.clone(), error: None }
    }

    /// The stage ends with an error (reported when the guard drops).
    pub fn fail(&mut self, e: impl Into<String>) {
        self.error = Some(e.into());
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self.exits.send(Exit {
            stage: self.stage,
            panicked: std::thread::panicking(),
            error: self.error.take(),
        });
    }
}

/// Starts `body` on a thread of its own named `floodguard-{stage}`, guarded:
/// however it ends, the daemon hears of it.
pub fn spawn_thread(
    stage: &'static str,
    exits: &Exits,
    body: impl FnOnce(&mut ExitGuard) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut guard = ExitGuard::new(stage, exits);
    std::thread::Builder::new().name(format!("fg-{stage}")).spawn(move || body(&mut guard))
}

/// Starts `fut` as a tokio task, guarded like [`spawn_thread`].
pub fn spawn_task<F>(stage: &'static str, exits: &Exits, fut: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let mut guard = ExitGuard::new(stage, exits);
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            guard.fail(e);
        }
    })
}

/// A test hook: a stage whose name is a file in the directory named by
/// `FLOODGUARD_TEST_WEDGE_DIR` blocks before its next item, for as long as
/// the file exists, and ignores shutdown meanwhile — a wedged stage, as a
/// deadlock or a hung disk would leave it. Unset (always, in production),
/// it costs one `Option` check.
#[derive(Debug, Clone, Default)]
pub struct Wedge {
    file: Option<std::path::PathBuf>,
}

impl Wedge {
    pub fn from_env(stage: &str) -> Wedge {
        let file =
            std::env::var_os("FLOODGUARD_TEST_WEDGE_DIR").map(|d| std::path::Path::new(&d).join(stage));
        Wedge { file }
    }

    /// Whether the hook is on (the variable set).
    pub fn armed(&self) -> bool {
        self.file.is_some()
    }

    /// Blocks while the stage's wedge file exists.
    pub fn hold(&self) {
        let Some(f) = &self.file else { return };
        let mut told = false;
        while f.exists() {
            if !told {
                tracing::warn!(file = %f.display(), "test hook: stage wedged");
                told = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if told {
            tracing::warn!(file = %f.display(), "test hook: stage released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(queued: i64, oldest_ms: i64, beat_ms: i64) -> Snapshot {
        Snapshot { name: "alerts", queued, oldest_ms, beat_ms, handled: 0, problem: None }
    }

    #[test]
    fn idle_is_fine_however_long_it_was_quiet() {
        let s = judge(&snap(0, 0, 0), 3_600_000, STALL_AFTER);
        assert!(s.ok);
        assert_eq!(s.oldest_s, 0.0);
    }

    #[test]
    fn work_without_a_heartbeat_past_the_limit_is_a_stall_named_with_its_problem() {
        let mut sn = snap(12, 1_000, 2_000);
        sn.problem = Some("state.db: database is locked".into());
        let s = judge(&sn, 2_000 + 5_001, STALL_AFTER);
        assert!(!s.ok);
        let p = s.problem.unwrap();
        assert!(p.contains("stage alerts stalled"), "{p}");
        assert!(p.contains("12 waiting"), "{p}");
        assert!(p.ends_with("database is locked"), "{p}");
        assert_eq!(s.oldest_s, 6.001);
    }

    #[test]
    fn work_with_recent_progress_is_fine_and_reports_its_problem() {
        let mut sn = snap(500, 1_000, 9_000);
        sn.problem = Some("SMS provider refusing".into());
        let s = judge(&sn, 10_000, STALL_AFTER);
        assert!(s.ok);
        assert_eq!(s.problem.as_deref(), Some("SMS provider refusing"));
    }

    #[test]
    fn an_item_in_hand_counts_as_work() {
        // Nothing queued behind it, but the one in hand has not finished.
        assert!(!judge(&snap(0, 1_000, 1_000), 7_000, STALL_AFTER).ok);
        assert!(judge(&snap(0, 1_000, 1_000), 5_000, STALL_AFTER).ok);
    }

    #[test]
    fn a_guard_reports_returns_errors_and_panics() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        spawn_thread("ok", &tx, |_| {}).unwrap().join().unwrap();
        spawn_thread("err", &tx, |g| g.fail("broken")).unwrap().join().unwrap();
        let h = spawn_thread("boom", &tx, |_| panic!("on purpose")).unwrap();
        assert!(h.join().is_err());
        let a = rx.try_recv().unwrap();
        assert_eq!((a.stage, a.panicked, a.error), ("ok", false, None));
        let b = rx.try_recv().unwrap();
        assert_eq!((b.stage, b.panicked, b.error.as_deref()), ("err", false, Some("broken")));
        let c = rx.try_recv().unwrap();
        assert_eq!((c.stage, c.panicked), ("boom", true));
    }
}
