//! The SL 651 central station: a TCP listener, one cheap task per RTU
//! connection.
//!
//! ```text
//! RTU ──TCP──▶ connection task: frame::next_frame → map::readings → Intake::submit
//!   ▲                                                              │
//!   └──── M2/M4 confirmation (downlink, serial echoed, EOT/ESC) ◀── spooled (Confirm)
//! ```
//! A frame is confirmed only once its readings are in the spool, so a frame
//! the RTU saw confirmed is durable; one it did not see confirmed it sends
//! again, and the repeat (same station, serial and observation time) is
//! confirmed again and stored as the same points — the engine judges only
//! readings newer than what it has seen, and counts rain once per instant,
//! so a repeat is not judged twice. Frames that fail (CRC, framing, unknown
//! station, wrong centre) are counted by cause and get no confirmation; the
//! connection goes on with the next frame, other stations never notice.
//!
//! An idle connection holds no buffer (bytes are read into a buffer only
//! while a frame is arriving), so thousands of keep-alive links cost little.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::element::Time;
use super::frame::{self, Body, Direction, End, Frame};
use super::map;
use super::transfer::{Progress, Transfers};
use crate::config::Sl651Section;
use crate::ingest::intake::{DropLog, Intake};
use crate::ingest::mqtt::Decoder;
use crate::metrics::Metrics;
use crate::outlet::Confirm;
use crate::reading::to_ns;
use crate::stage::Wedge;

/// A connection buffering more than this without a frame is sent garbage.
const MAX_PENDING: usize = 2 * (frame::MAX_BODY * 2 + 64);
/// At shutdown, how long connections may take to finish the frame in hand.
const DRAIN: Duration = Duration::from_secs(3);
/// UDP datagrams handled at once at most.
const UDP_BUSY: usize = 256;
/// Keep-alive (`2F`): a link check, confirmed by nothing.
const KEEP_ALIVE: u8 = 0x2F;

/// Everything the central station needs.
pub struct Sl651 {
    pub config: Sl651Section,
    /// The running configuration's decoder: its catalogue (which site a
    /// station is) and its checks of timestamps.
    pub decoder: Arc<RwLock<Arc<Decoder>>>,
    pub intake: Intake,
    pub metrics: Arc<Metrics>,
    pub timezone: chrono_tz::Tz,
}

/// Told by the outlet that a frame's readings are spooled.
struct Spooled(tokio::sync::oneshot::Sender<()>);

impl Confirm for Spooled {
    fn confirm(self: Box<Self>) {
        let _ = self.0.send(());
    }
}

impl Sl651 {
    /// Accepts RTUs (TCP, UDP or both) until `stop`; then lets the
    /// connections finish the frame in hand (for at most a few seconds) and
    /// returns.
    pub async fn run(
        self,
        listener: Option<TcpListener>,
        udp: Option<UdpSocket>,
        stop: CancellationToken,
    ) -> Result<(), String> {
        let this = Arc::new(self);
        let tasks = TaskTracker::new();
        // Test hook: holds replies after the spool write (a crash between the two).
        let wedge = Wedge::from_env("sl651");
        if let Some(socket) = udp {
            tasks.spawn(this.clone().datagrams(socket, stop.clone(), tasks.clone()));
        }
        if let Some(listener) = listener {
            this.clone().accept(listener, stop.clone(), &tasks, wedge).await;
        } else {
            stop.cancelled().await;
        }
        tasks.close();
        if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
            tracing::warn!("SL 651: connections still busy at shutdown; their frames come again unconfirmed");
        }
        tracing::info!("SL 651 central station stopped");
        Ok(())
    }

    /// UDP: each datagram's frames handled on a task of their own (at most
    /// `UDP_BUSY` at once; past that, datagrams wait in the socket), the
    /// reply sent to the datagram's sender.
    async fn datagrams(self: Arc<Self>, socket: UdpSocket, stop: CancellationToken, tasks: TaskTracker) {
        let socket = Arc::new(socket);
        let busy = Arc::new(tokio::sync::Semaphore::new(UDP_BUSY));
        tracing::info!(addr = ?socket.local_addr().ok(), centre = self.config.center, "SL 651 central station listening (UDP)");
        let mut buf = vec![0u8; 65_536];
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => return,
                p = busy.clone().acquire_owned() => p.expect("never closed"),
            };
            let (n, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(_) => continue,
                },
            };
            let (this, socket, datagram) = (self.clone(), socket.clone(), buf[..n].to_vec());
            tasks.spawn(async move {
                let _permit = permit;
                let mut drops = DropLog::default();
                let mut transfers = Transfers::default();
                let from = format!("udp {peer}");
                let mut rest: &[u8] = &datagram;
                while !rest.is_empty() {
                    match frame::next_frame(rest) {
                        Ok(Some((f, used))) => {
                            rest = &rest[used..];
                            if let Some(reply) = this.frame(f, &from, &mut drops, &mut transfers).await {
                                let _ = socket.send_to(&reply, peer).await;
                            }
                        }
                        Ok(None) => {
                            // A datagram is whole: what is left is cut short.
                            this.metrics.sl651_errors.with_label_values(&["truncated"]).inc();
                            break;
                        }
                        Err((e, skip)) => {
                            this.metrics.sl651_errors.with_label_values(&[e.cause()]).inc();
                            drops.log(e.cause(), &from, &e);
                            rest = &rest[skip.clamp(1, rest.len())..];
                        }
                    }
                }
            });
        }
    }

    async fn accept(
        self: Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
        tasks: &TaskTracker,
        wedge: Wedge,
    ) {
        let this = self;
        let open = Arc::new(AtomicUsize::new(0));
        tracing::info!(addr = ?listener.local_addr().ok(), centre = this.config.center, "SL 651 central station listening");
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "SL 651: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if open.load(Ordering::Relaxed) >= this.config.max_connections {
                this.metrics.sl651_errors.with_label_values(&["too_many_connections"]).inc();
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            open.fetch_add(1, Ordering::Relaxed);
            this.metrics.sl651_connections.inc();
            this.metrics.sl651_connections_open.set(open.load(Ordering::Relaxed) as i64);
            let (this, open, stop, wedge) = (this.clone(), open.clone(), stop.clone(), wedge.clone());
            tasks.spawn(async move {
                this.connection(stream, peer.to_string(), stop, wedge).await;
                let left = open.fetch_sub(1, Ordering::Relaxed) - 1;
                this.metrics.sl651_connections_open.set(left as i64);
            });
        }
    }

    async fn connection(&self, mut stream: TcpStream, peer: String, stop: CancellationToken, wedge: Wedge) {
        let mut buf: Vec<u8> = Vec::new();
        let mut drops = DropLog::default();
        let mut transfers = Transfers::default();
        let idle = self.config.idle_timeout.get();
        loop {
            // Frames in what has arrived.
            loop {
                match frame::next_frame(&buf) {
                    Ok(Some((f, used))) => {
                        buf.drain(..used);
                        match self.frame(f, &peer, &mut drops, &mut transfers).await {
                            Some(reply) => {
                                if wedge.armed() {
                                    let w = wedge.clone();
                                    let _ = tokio::task::spawn_blocking(move || w.hold()).await;
                                }
                                if stream.write_all(&reply).await.is_err() {
                                    return;
                                }
                            }
                            None if stop.is_cancelled() => return,
                            None => {}
                        }
                    }
                    Ok(None) => break,
                    Err((e, skip)) => {
                        self.metrics.sl651_errors.with_label_values(&[e.cause()]).inc();
                        drops.log(e.cause(), &peer, &e);
                        buf.drain(..skip.clamp(1, buf.len()));
                    }
                }
            }
            if buf.len() > MAX_PENDING {
                self.metrics.sl651_errors.with_label_values(&["garbage"]).inc();
                buf.clear();
            }
            if buf.is_empty() {
                // Idle: hold no memory.
                buf = Vec::new();
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(idle, stream.readable()) => match r {
                    Err(_) => {
                        self.metrics.sl651_errors.with_label_values(&["idle_timeout"]).inc();
                        return;
                    }
                    Ok(Err(_)) => return,
                    Ok(Ok(())) => {}
                },
            }
            buf.reserve(1024);
            match stream.try_read_buf(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }

    /// One frame: its readings spooled, then the reply to send (if any): a
    /// confirmation, or the NAK of a missing M3 packet.
    async fn frame(
        &self,
        f: Frame,
        peer: &str,
        drops: &mut DropLog,
        transfers: &mut Transfers,
    ) -> Option<Vec<u8>> {
        let m = &self.metrics;
        let h = &f.header;
        let function = format!("{:02X}", h.function);
        m.sl651_frames.with_label_values(&[&function]).inc();
        let fail = |cause: &'static str, error: &dyn std::fmt::Display, drops: &mut DropLog| {
            m.sl651_errors.with_label_values(&[cause]).inc();
            drops.log(cause, peer, error);
        };
        if h.direction != Direction::Up {
            fail("downlink", &"a centre's frame sent to the centre", drops);
            return None;
        }
        if h.centre != self.config.center && h.centre != 0 {
            fail(
                "wrong_centre",
                &format!("centre address {} is not ours ({})", h.centre, self.config.center),
                drops,
            );
            return None;
        }
        let reassembled;
        let msg = match &f.body {
            Body::Message(m) => m,
            Body::Packet(part) => {
                let (total, number) = h.packet.unwrap_or((1, 1));
                match transfers.add(h.station, h.function, total, number, part.clone()) {
                    Progress::Incomplete => return None,
                    Progress::Missing(n) => {
                        fail("m3_missing", &format!("M3 packet {n} of {total} missing: asked again"), drops);
                        let now = chrono::Utc::now().with_timezone(&self.timezone).naive_local();
                        let serial = transfers.serial(h.station, h.function);
                        return Some(frame::nak(h, serial, Time::from_naive(now), n));
                    }
                    Progress::Complete(body) => match frame::parse_message(h, &body) {
                        Ok(m) => {
                            reassembled = m;
                            &reassembled
                        }
                        Err(e) => {
                            fail(e.cause(), &e, drops);
                            return None;
                        }
                    },
                }
            }
        };
        if h.function == KEEP_ALIVE {
            return None;
        }
        let unknown = msg.unknown_elements();
        if unknown > 0 {
            m.sl651_errors.with_label_values(&[frame::UNKNOWN_ELEMENT]).inc_by(unknown as u64);
        }
        let decoder = self.decoder.read().expect("decoder lock").clone();
        let station = h.station_hex();
        let mapped = match map::readings(decoder.catalog(), &station, msg, &self.timezone) {
            Ok(x) => x,
            Err(e) => {
                fail(e.cause(), &e, drops);
                return None;
            }
        };
        m.sl651_elements_skipped.inc_by(mapped.skipped as u64);
        for (metric, e) in &mapped.refused {
            let e = crate::ingest::mqtt::decode::DecodeError::from_coerce(metric, e.clone());
            fail(e.cause(), &e, drops);
        }
        if let Some(site) = mapped.messages.first().and_then(|g| g.first()).map(|r| r.site.clone()) {
            let from = format!("station {station} from {peer}, function {function}");
            self.intake.seen(&site, &from, chrono::Utc::now().timestamp_millis());
        }
        let received_at = to_ns(chrono::Utc::now());
        let mut messages = Vec::with_capacity(mapped.messages.len());
        for g in mapped.messages {
            match decoder.checked(g, received_at) {
                Ok(g) => messages.push(g),
                Err(e) => fail(e.cause(), &e, drops),
            }
        }
        if !messages.is_empty() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let now_ms = received_at / 1_000_000;
            if self
                .intake
                .submit(decoder.catalog().clone(), messages, Box::new(Spooled(tx)), now_ms)
                .await
                .is_err()
            {
                return None;
            }
            // Durable first, then confirmed.
            rx.await.ok()?;
        }
        let now = chrono::Utc::now().with_timezone(&self.timezone).naive_local();
        m.sl651_confirmations.inc();
        let end = if self.config.keep_link { End::Esc } else { End::Eot };
        Some(frame::confirmation(h, msg.serial, Time::from_naive(now), end))
    }
}
