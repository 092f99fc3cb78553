//! A full disk: the spool's limit (`spool.max_bytes`, by default as much as
//! leaves 10 % of its filesystem free) and the writers' reports of a full
//! or failing disk (the spool, `state.db`), for `/readyz`, the metrics and
//! the operator alert.
//!
//! When the spool reaches its limit, or a write fails with ENOSPC, the
//! outlet confirms nothing and retries: MQTT messages stay unacked with the
//! broker, SL 651 frames unconfirmed, HTTP pushes unanswered (503 after
//! `http.request_timeout`), so nothing already acknowledged is dropped and
//! nothing new is acknowledged until there is room again (the InfluxDB
//! writer frees segments as it catches up, or an operator frees space).
//! A `state.db` write failing with "database or disk is full" is retried
//! the same way (the alert stage holds its batch; the engine waits).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The share of a filesystem the spool leaves free when `spool.max_bytes`
/// is unset.
pub const KEEP_FREE: f64 = 0.10;

/// One writer's full disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Full {
    pub path: PathBuf,
    pub reason: String,
    /// When it was first reported, ms since the epoch.
    pub since_ms: i64,
}

/// What the writers report: who cannot write, where and why.
#[derive(Debug, Default)]
pub struct Disk {
    full: Mutex<BTreeMap<&'static str, Full>>,
}

impl Disk {
    /// `who` (spool, state.db) cannot write to `path`: the disk is full.
    pub fn report_full(&self, who: &'static str, path: &Path, reason: impl Into<String>) {
        let mut full = self.full.lock().expect("disk lock");
        let reason = reason.into();
        match full.get_mut(who) {
            Some(f) => f.reason = reason,
            None => {
                tracing::error!(writer = who, path = %path.display(), %reason, "disk full: nothing new is acknowledged until there is room");
                full.insert(who, Full { path: path.to_path_buf(), reason, since_ms: crate::stage::now_ms() });
            }
        }
    }

    /// `who` wrote again.
    pub fn clear(&self, who: &'static str) {
        if let Some(f) = self.full.lock().expect("disk lock").remove(who) {
            tracing::info!(writer = who, path = %f.path.display(), "disk has room again: writes go on");
        }
    }

    pub fn is_full(&self) -> bool {
        !self.full.lock().expect("disk lock").is_empty()
    }

    /// Who is full, where and why.
    pub fn full(&self) -> Vec<(&'static str, Full)> {
        self.full.lock().expect("disk lock").iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// For `/readyz`: "disk full: spool in /var/lib/floodguard/spool: …".
    pub fn problems(&self) -> Vec<String> {
        self.full()
            .into_iter()
            .map(|(who, f)| format!("disk full: {who} in {}: {}", f.path.display(), f.reason))
            .collect()
    }
}

/// Is this error text a full disk (ENOSPC, SQLite's SQLITE_FULL, a quota)?
pub fn is_full_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("no space left on device")
        || m.contains("database or disk is full")
        || m.contains("disk quota exceeded")
        || m.contains("storage full")
}

/// Bytes available to this process and the size of the filesystem holding `path`.
pub fn space(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path)?;
    let unit = if s.f_frsize > 0 { s.f_frsize } else { s.f_bsize };
    Ok((s.f_bavail.saturating_mul(unit), s.f_blocks.saturating_mul(unit)))
}

/// Whether `incoming` more bytes may go into a spool of `spool_bytes`, on a
/// filesystem with `avail` of `total` bytes free: `None` when they may, or
/// why not. With `max_bytes` the spool's own size is the limit; without, the
/// filesystem keeps [`KEEP_FREE`] of itself free. Pure, for tests.
pub fn judge(
    max_bytes: Option<u64>,
    spool_bytes: u64,
    avail: u64,
    total: u64,
    incoming: u64,
) -> Option<String> {
    match max_bytes.filter(|m| *m > 0) {
        Some(max) if spool_bytes + incoming > max => {
            Some(format!("the spool holds {} of spool.max_bytes {}", human(spool_bytes), human(max)))
        }
        Some(_) => None,
        None => {
            let keep = (total as f64 * KEEP_FREE) as u64;
            (avail < keep.saturating_add(incoming)).then(|| {
                format!(
                    "{} free of {} (the spool leaves {:.0} % free; the spool holds {})",
                    human(avail),
                    human(total),
                    KEEP_FREE * 100.0,
                    human(spool_bytes)
                )
            })
        }
    }
}

fn human(b: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    if b as f64 >= 1024.0 * MB {
        format!("{:.1} GiB", b as f64 / (1024.0 * MB))
    } else {
        format!("{:.1} MiB", b as f64 / MB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    #[test]
    fn a_spool_limit_or_a_tenth_of_the_disk_free() {
        // max_bytes: the spool's own size counts.
        assert_eq!(judge(Some(100 * MB), 50 * MB, 10 * MB, 1000 * MB, MB), None);
        let why = judge(Some(100 * MB), 100 * MB, 900 * MB, 1000 * MB, 1).unwrap();
        assert!(why.contains("spool.max_bytes 100.0 MiB"), "{why}");
        // Unset: 10 % of the filesystem stays free.
        assert_eq!(judge(None, 0, 200 * MB, 1000 * MB, MB), None);
        let why = judge(None, 700 * MB, 100 * MB, 1000 * MB, 1).unwrap();
        assert!(why.contains("100.0 MiB free of 1000.0 MiB"), "{why}");
        assert_eq!(judge(Some(0), 0, 200 * MB, 1000 * MB, MB), None, "0 is unset");
    }

    #[test]
    fn full_disks_are_named_until_they_clear() {
        let d = Disk::default();
        assert!(!d.is_full());
        d.report_full(
            "spool",
            Path::new("/var/lib/floodguard/spool"),
            "No space left on device (os error 28)",
        );
        d.report_full("state.db", Path::new("/var/lib/floodguard/state.db"), "database or disk is full");
        assert_eq!(d.problems().len(), 2);
        assert!(
            d.problems()[0].starts_with("disk full: spool in /var/lib/floodguard/spool"),
            "{:?}",
            d.problems()
        );
        d.clear("spool");
        assert_eq!(d.full().len(), 1);
        d.clear("state.db");
        assert!(!d.is_full());
        assert!(is_full_message("database or disk is full"));
        assert!(is_full_message("write: No space left on device (os error 28)"));
        assert!(!is_full_message("database is locked"));
    }

    #[test]
    fn the_filesystem_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let (avail, total) = space(dir.path()).unwrap();
        assert!(total > 0 && avail <= total);
    }
}
