//! The engine's snapshot on disk: `data_dir/engine.snap`.
//!
//! Every `SNAPSHOT_EVERY` (and once more at stop) the engine stage takes a
//! snapshot of its state (`engine::snapshot`) at a spool position P, every
//! transition before P handed to the alert stage. A thread of its own
//! (`fg-snapshot`) writes it — checksummed, to a temporary file, fsynced,
//! renamed over the last one — but only once the alert stage has committed
//! the engine's cursor C ≥ P, so a snapshot on disk is never ahead of what
//! is on record. Then the spool may let go of what is before P.
//!
//! At start the engine takes its state from the snapshot and judges the
//! spool from P to C again without handing anything on (those transitions
//! are on record), then on from C as usual: the run of readings toward a
//! sustain, rain windows and trends are what they would have been without
//! the restart. Without a usable snapshot it starts from the levels of the
//! active alerts, as before snapshots existed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::snapshot::Snapshot;
use crate::spool::{Position, Retention};

const MAGIC: &[u8; 8] = b"FGSNAP1\n";
const HEADER: usize = 8 + 8 + 8 + 8 + 4;

/// The file name in `data_dir`.
pub const FILE: &str = "engine.snap";

/// How often the engine offers a snapshot.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);

/// The engine's cursor as the alert stage last committed it.
#[derive(Debug, Clone, Default)]
pub struct Committed(Arc<Mutex<Option<Position>>>);

impl Committed {
    pub fn set(&self, p: Position) {
        let mut c = self.0.lock().expect("committed lock");
        *c = Some(c.map_or(p, |old| old.max(p)));
    }

    pub fn get(&self) -> Option<Position> {
        *self.0.lock().expect("committed lock")
    }
}

/// Why the snapshot on disk cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
}

/// The file's header; the state follows it (written apart: no copy of a
/// state of megabytes).
fn encode_header(at: Position, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&at.segment.to_le_bytes());
    out.extend_from_slice(&at.offset.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out
}

fn decode_file(bytes: &[u8]) -> Result<(Position, Snapshot), String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a floodguard engine snapshot".into());
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let at = Position { segment: u64_at(8), offset: u64_at(16) };
    let len = u64_at(24) as usize;
    let crc = u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes"));
    let body = &bytes[HEADER..];
    if body.len() != len {
        return Err(format!("{} bytes of state, the header says {len}", body.len()));
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let snap = Snapshot::decode(body).map_err(|e| e.to_string())?;
    Ok((at, snap))
}

/// The snapshot in `dir`, if there is one: its position and the state.
pub fn load(dir: &Path) -> Result<Option<(Position, Snapshot)>, LoadError> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => decode_file(&bytes).map(Some).map_err(|why| LoadError::Damaged { path, why }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::Io { path, source }),
    }
}

/// Writes the snapshot durably: a temporary file, fsync, rename, fsync of
/// the directory.
fn store(dir: &Path, at: Position, body: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode_header(at, body))?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The engine's side: offers snapshots to the writer thread.
pub struct Snapshots {
    tx: flume::Sender<(Position, Vec<u8>)>,
    /// The length of the last one offered.
    last_size: std::cell::Cell<usize>,
}

impl Snapshots {
    /// Starts the writer thread. It writes the newest snapshot offered once
    /// `committed` reaches its position, then moves the engine's spool
    /// retention there; it ends when the engine drops its `Snapshots` and
    /// the last one is written — or, if that one is never committed, when
    /// `abandon` is cancelled.
    pub fn spawn(
        dir: PathBuf,
        committed: Committed,
        retention: Retention,
        abandon: CancellationToken,
    ) -> std::io::Result<(Snapshots, std::thread::JoinHandle<()>)> {
        let (tx, rx) = flume::unbounded::<(Position, Vec<u8>)>();
        let handle = std::thread::Builder::new().name("fg-snapshot".into()).spawn(move || {
            let mut pending: Option<(Position, Vec<u8>)> = None;
            let mut closed = false;
            let mut failing = false;
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(s) => pending = Some(rx.try_iter().last().unwrap_or(s)),
                    Err(flume::RecvTimeoutError::Timeout) => {}
                    Err(flume::RecvTimeoutError::Disconnected) => {
                        closed = true;
                        if pending.is_some() && !abandon.is_cancelled() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                if let Some((at, body)) = &pending {
                    if committed.get().is_some_and(|c| c >= *at) {
                        match store(&dir, *at, body) {
                            Ok(()) => {
                                retention.set(*at);
                                pending = None;
                                if std::mem::take(&mut failing) {
                                    tracing::info!("engine snapshots are written again");
                                }
                            }
                            Err(e) => {
                                // The older snapshot stays, and the spool keeps
                                // what a restart from it needs.
                                if !std::mem::replace(&mut failing, true) {
                                    tracing::error!(error = %e, dir = %dir.display(), "cannot write the engine snapshot; keeping the spool from the last one");
                                }
                                pending = None;
                            }
                        }
                    }
                }
                if closed && (pending.is_none() || abandon.is_cancelled()) {
                    if pending.is_some() {
                        tracing::info!("the last engine snapshot was not committed; the restart judges from the one before");
                    }
                    return;
                }
            }
        })?;
        Ok((Snapshots { tx, last_size: std::cell::Cell::new(0) }, handle))
    }

    /// Hands a snapshot taken at `at` (encoded) to the writer.
    pub fn offer(&self, at: Position, snapshot: Vec<u8>) {
        self.last_size.set(snapshot.len());
        let _ = self.tx.send((at, snapshot));
    }

    /// The length of the last snapshot offered: the next one's size hint.
    pub fn last_size(&self) -> usize {
        self.last_size.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let plan = crate::config::load(&main).unwrap().plan;
        Snapshot::of(&crate::engine::State::new(&plan, 7), &plan)
    }

    #[test]
    fn what_is_stored_loads_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let at = Position { segment: 3, offset: 4096 };
        store(dir.path(), at, &snap().encode()).unwrap();
        let (got_at, got) = load(dir.path()).unwrap().unwrap();
        assert_eq!((got_at, got), (at, snap()));
        // One flipped byte in the state.
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn a_snapshot_is_written_only_once_its_position_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut appender, _reader) = crate::spool::open(&dir.path().join("spool"), 1 << 20).unwrap();
        let start = appender.position();
        let retention = appender.retention("engine", start);
        appender.append([b"x".as_slice()], 0).unwrap();
        let committed = Committed::default();
        let abandon = CancellationToken::new();
        let (snaps, handle) =
            Snapshots::spawn(dir.path().to_path_buf(), committed.clone(), retention, abandon.clone())
                .unwrap();
        let at = Position { segment: start.segment, offset: start.offset + 100 };
        snaps.offer(at, snap().encode());
        std::thread::sleep(Duration::from_millis(200));
        assert!(load(dir.path()).unwrap().is_none(), "not committed yet");
        committed.set(at);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while load(dir.path()).unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "written once committed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(load(dir.path()).unwrap().unwrap().0, at);
        // The last one offered, never committed: given up when abandoned.
        snaps.offer(Position { segment: start.segment + 5, offset: 0 }, snap().encode());
        drop(snaps);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!handle.is_finished(), "waits for the commit while the alert stage may still make it");
        abandon.cancel();
        handle.join().unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().0, at);
    }
}
