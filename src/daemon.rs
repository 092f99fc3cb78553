//! `floodguard run`: starts one stage per function, watches them, and stops
//! them in reverse order.
//!
//! ```text
//! intake (MQTT, SL 651, Modbus tasks) → outlet (thread) → engine (thread) → alerts (thread) → outbox (thread)
//!                                       └─▶ spool ─▶ writer (task) ─▶ InfluxDB
//! ```
//! Each stage reports into a probe (`stage`): `/readyz` names a stalled one.
//! A stage that ends while the daemon runs ends the daemon with an error, so
//! systemd restarts it. On SIGTERM/SIGINT: intake stops reading and sends
//! the acks of what was spooled; the engine and the alert stage finish what
//! they hold; the outbox sends what is due and the writer flushes the spool,
//! each for at most `daemon.shutdown_timeout`; a stage that does not stop by
//! then is left behind (its work is durable: the spool and `state.db` give
//! it back at the next start), so the daemon always ends within
//! `shutdown_timeout` and a few seconds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alerts::stage::{AlertStage, Inbox};
use crate::alerts::store::Store;
use crate::alerts::{AlertManager, Places, PointsOut};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::Config;
use crate::health::Health;
use crate::http::{self, AppState};
use crate::ingest::modbus::Modbus;
use crate::ingest::sl651::Sl651;
use crate::ingest::{Decoder, Intake, Mqtt};
use crate::live::snapshot::{Committed, Snapshots};
use crate::live::stage::{Controls, EngineStage};
use crate::live::Live;
use crate::metrics::{Labels, Metrics};
use crate::notify::stage::OutboxStage;
use crate::notify::{Outbox, Wake};
use crate::outlet::{Outlet, Points, Replay};
use crate::reload::Reloader;
use crate::spool;
use crate::stage::{self, Exit, Stages};
use crate::tsdb::{InfluxClient, Writer, WriterOptions};

/// The stages, in pipeline order: the `stage` label of the metrics and the
/// keys of `/readyz`'s `stages`.
pub const STAGES: [&str; 5] = ["intake", "outlet", "engine", "alerts", "outbox"];

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("data_dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("data_dir {0} is in use by another floodguard (lock held on {0}/floodguard.lock)")]
    Locked(PathBuf),
    #[error("spool: {0}")]
    Spool(std::io::Error),
    #[error("{0}")]
    Config(String),
    #[error("http.listen {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("alert state {path}: {source}")]
    State { path: PathBuf, source: crate::state::db::Error },
    #[error("cannot start the {0} stage: {1}")]
    Start(&'static str, std::io::Error),
    #[error("the {stage} stage stopped while the daemon ran{}", why(.panicked, .error))]
    StageEnded { stage: &'static str, panicked: bool, error: Option<String> },
}

fn why(panicked: &bool, error: &Option<String>) -> String {
    match (panicked, error) {
        (true, _) => " (it panicked)".into(),
        (false, Some(e)) => format!(": {e}"),
        (false, None) => String::new(),
    }
}

/// The metrics with every label value known at start shown at 0.
pub fn new_metrics() -> Metrics {
    Metrics::with_labels(&Labels {
        decode_causes: &crate::ingest::DecodeError::CAUSES,
        write_classes: &crate::tsdb::retry::CLASSES,
        channels: &crate::notify::CHANNELS,
        send_results: &crate::notify::RESULTS,
        stages: &STAGES,
        push_causes: &crate::ingest::push::all_causes(),
        sl651_causes: &crate::ingest::sl651::causes(),
    })
}

/// Takes the data directory's lock so two daemons never share one spool.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, DaemonError> {
    let err = |source| DaemonError::DataDir { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("floodguard.lock"))
        .map_err(err)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(DaemonError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

/// A stage running on a thread, its stop and its end.
struct ThreadStage {
    name: &'static str,
    stop: CancellationToken,
    handle: std::thread::JoinHandle<()>,
}

impl ThreadStage {
    /// Stops it and waits for it until `deadline`; false if it did not end.
    async fn stop(self, deadline: Instant) -> bool {
        self.stop.cancel();
        let name = self.name;
        let joined = tokio::task::spawn_blocking(move || self.handle.join());
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), joined).await {
            Ok(_) => true,
            Err(_) => {
                tracing::error!(stage = name, "stage did not stop in time; leaving it (its work is durable)");
                false
            }
        }
    }
}

/// Runs the daemon until `shutdown` fires, or until a stage ends by itself.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    run_on(config, shutdown, Clock::wall()).await
}

/// [`run`] on `clock`: the demo's storm time (see [`crate::clock`]).
pub async fn run_on(config: Config, shutdown: CancellationToken, clock: Clock) -> Result<(), DaemonError> {
    crate::redact::install(crate::redact::Redactor::from_config(&config));
    let d = &config.daemon;
    let data_dir = config.data_dir().to_path_buf();
    let _lock = lock_data_dir(&data_dir)?;
    let (mut appender, reader) =
        spool::open(&data_dir.join("spool"), d.spool.segment_size).map_err(DaemonError::Spool)?;
    let stats = appender.stats();
    let metrics = Arc::new(new_metrics());
    let mut stages = Stages::default();
    let probes: Vec<_> = STAGES.iter().map(|s| stages.add(s)).collect();
    let [p_intake, p_outlet, p_engine, p_alerts, p_outbox] = [0, 1, 2, 3, 4].map(|i| probes[i].clone());
    let client = InfluxClient::new(&d.influxdb).map_err(DaemonError::Config)?;
    // This node among the nodes sharing the state: with SQLite, the only
    // one; on PostgreSQL, a lease kept on a thread of its own decides who
    // leads (`cluster`).
    let shared = match d.state.backend {
        crate::config::StateBackend::Sqlite => None,
        crate::config::StateBackend::Postgres => {
            Some(crate::state::pg::Target::from_section(&d.state).map_err(DaemonError::Config)?)
        }
    };
    let node = d.cluster.node();
    let cluster = match &shared {
        None => crate::cluster::Cluster::single(node.clone()),
        Some(_) => crate::cluster::Cluster::postgres(node.clone(), d.cluster.lease.get()),
    }
    .with_metrics(metrics.clone());
    let stop_lease = CancellationToken::new();
    let lease_thread = match &shared {
        None => None,
        Some(target) => Some(
            crate::cluster::keeper::spawn(cluster.clone(), target.clone(), stop_lease.clone())
                .map_err(|e| DaemonError::Start("lease", e))?,
        ),
    };
    let health = Arc::new(
        Health::with_stages(stats.clone(), client.as_ref().map(|_| d.influxdb.max_lag.get()), stages)
            .with_cluster(cluster.clone()),
    );
    // A full disk stops acknowledging, never drops (see `disk`).
    appender.limit(health.disk.clone(), d.spool.max_bytes);
    tracing::info!(
        data_dir = %data_dir.display(),
        sites = config.sites.sites.len(),
        spool_pending = stats.pending_records.load(std::sync::atomic::Ordering::Relaxed),
        influxdb = client.as_ref().map_or("spool only", |c| c.endpoint()),
        "floodguard starting"
    );

    // Where the engine resumes: after the last reading whose judgement is
    // on record; on a first start, at the head (nothing before is judged).
    let state_path = data_dir.join("state.db");
    let state_err = |source| DaemonError::State { path: state_path.clone(), source };
    let store = match &shared {
        None => Store::open(&state_path).map_err(state_err)?,
        Some(target) => Store::postgres(target, d.cluster.lease.get())
            .map_err(|e| DaemonError::Config(format!("state {}: {e}", target.url)))?,
    };
    let stop_checkpoints = CancellationToken::new();
    // SQLite's checkpoints (PostgreSQL's state is the database's to
    // vacuum) and the daily pruning: on PostgreSQL, by the leader only.
    let mut state_threads = Vec::new();
    if shared.is_none() {
        store.background_checkpoints().map_err(state_err)?;
        let (path, stop) = (state_path.clone(), stop_checkpoints.clone());
        state_threads.push(
            std::thread::Builder::new()
                .name("fg-checkpoint".into())
                .spawn(move || crate::alerts::store::checkpoint(&path, &stop))
                .map_err(|e| DaemonError::Start("checkpoint", e))?,
        );
    }
    // What is older than state.retention goes once a day.
    let prune_state = match &shared {
        None => crate::alerts::prune::State::Sqlite(state_path.clone()),
        Some(target) => crate::alerts::prune::State::Postgres {
            target: Box::new(target.clone()),
            cluster: cluster.clone(),
        },
    };
    let (stop, retention) = (stop_checkpoints.clone(), config.daemon.state.retention.get());
    state_threads.push(
        std::thread::Builder::new()
            .name("fg-prune".into())
            .spawn(move || crate::alerts::prune::run(&prune_state, retention, &stop))
            .map_err(|e| DaemonError::Start("prune", e))?,
    );
    let head = appender.position();
    let cursor_name = match &shared {
        None => crate::alerts::manager::ENGINE_CURSOR.to_string(),
        Some(_) => crate::state::engine_cursor(&node),
    };
    let cursor = store
        .cursor(&cursor_name)
        .map_err(state_err)?
        .map(|(segment, offset)| spool::Position { segment, offset });
    let (engine_from, rejudge_until, snapshot) = resume_at(&data_dir, cursor, appender.oldest(), head);
    let replay = Replay::new(appender.tail(engine_from));
    let retention = appender.retention("engine", engine_from);
    let fsync_interval = d.spool.fsync_interval.get();
    let syncer = appender.syncer();
    let outlet = Outlet::wire(appender, fsync_interval.is_zero(), p_outlet.clone(), metrics.clone());

    let wake = Wake::default();
    let alerts = Arc::new(
        AlertManager::new(
            store,
            config.teams.clone(),
            Places::from_config(&config),
            Arc::new(wake.clone()),
            Some(PointsOut { outlet: outlet.handle.clone(), spooled: outlet.spooled_points.clone() }),
            Some(metrics.clone()),
        )
        .map_err(state_err)?
        .in_cluster(cluster.clone())
        .with_materials(config.materials.clone())
        .map_err(|e| DaemonError::Config(format!("materials: {e}")))?,
    );
    let outbox = Arc::new(
        match &shared {
            None => Outbox::new(
                &state_path,
                d.channels.clone(),
                config.teams.clone(),
                Places::from_config(&config),
                d.daemon.language,
                Some(metrics.clone()),
            ),
            Some(target) => Outbox::postgres(
                target,
                cluster.clone(),
                d.channels.clone(),
                config.teams.clone(),
                Places::from_config(&config),
                d.daemon.language,
                Some(metrics.clone()),
            ),
        }
        .map_err(DaemonError::Config)?
        .with_clock(clock),
    );
    if shared.is_none() {
        outbox.background_checkpoints().map_err(DaemonError::Config)?;
    }
    outbox.set_health(health.clone());
    // Messages cut off by a crash go out again (same idempotency key); in a
    // cluster, by the node that comes to lead (the outbox stage).
    if shared.is_none() {
        outbox.recover().map_err(DaemonError::Config)?;
    }
    // Carry on where the last run stopped: from the engine's snapshot, or
    // else at the levels of the alerts still active.
    let now = clock.now();
    let live = Arc::new(match snapshot {
        Some(snap) => Live::restore(config.plan.clone(), metrics.clone(), config.timezone, snap),
        None => {
            let (levels, offline) = alerts.seed();
            if !levels.is_empty() || !offline.is_empty() {
                tracing::info!(active = levels.len(), offline = offline.len(), "resuming active alerts");
            }
            Live::resume(config.plan.clone(), metrics.clone(), config.timezone, now, &levels, &offline)
        }
    });

    let (exits, mut ended) = tokio::sync::mpsc::unbounded_channel::<Exit>();
    let outlet_stage = {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let o = outlet.outlet;
        let handle = stage::spawn_thread("outlet", &exits, move |_| o.run(s))
            .map_err(|e| DaemonError::Start("outlet", e))?;
        ThreadStage { name: "outlet", stop, handle }
    };
    // The site catalogue for Grafana's map and tables, and every area's
    // level, so graphs start from a known value.
    let mut lines = crate::catalog::site_info_lines(&config, now);
    lines.push_str(&live.baseline(now));
    let _ = outlet.handle.points(Points { lines, pending: None });

    // The engine's snapshots, written once the alert stage committed them.
    let committed = Committed::default();
    if let Some(c) = cursor {
        committed.set(c.min(head));
    }
    let abandon_snapshot = CancellationToken::new();
    let (snapshots, snapshot_thread) =
        Snapshots::spawn(data_dir.clone(), committed.clone(), retention, abandon_snapshot.clone())
            .map_err(|e| DaemonError::Start("snapshot", e))?;
    let (inbox, inbox_rx) = Inbox::channel();
    let depth = inbox_rx.clone();
    p_alerts.set_depth(move || depth.len());
    let depth = outlet.feed.clone();
    p_engine.set_depth(move || depth.len());
    let alert_stage = {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let st = AlertStage {
            manager: alerts.clone(),
            inbox: inbox_rx,
            probe: p_alerts.clone(),
            committed: {
                let c = committed.clone();
                Box::new(move |p| c.set(crate::live::stage::position(p)))
            },
            clock,
            disk: shared.is_none().then(|| (health.disk.clone(), state_path.clone())),
        };
        let handle = stage::spawn_thread("alerts", &exits, move |_| st.run(s))
            .map_err(|e| DaemonError::Start("alerts", e))?;
        ThreadStage { name: "alerts", stop, handle }
    };
    let (controls, controls_rx) = Controls::channel();
    let engine_stage = {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let st = EngineStage {
            live: live.clone(),
            feed: outlet.feed,
            controls: controls_rx,
            replay,
            sink: Arc::new(inbox),
            probe: p_engine.clone(),
            held: Default::default(),
            // Half the stop's time: the alert stage and the outbox need theirs.
            drain_for: d.daemon.shutdown_timeout.get() / 2,
            intakes: vec![("mqtt", {
                let h = health.clone();
                Box::new(move || h.mqtt_connected.load(std::sync::atomic::Ordering::Relaxed))
            })],
            snapshots: Some(snapshots),
            rejudge_until,
            clock,
        };
        let handle = stage::spawn_thread("engine", &exits, move |g| {
            if let Err(e) = st.run(s) {
                g.fail(e.to_string());
            }
        })
        .map_err(|e| DaemonError::Start("engine", e))?;
        ThreadStage { name: "engine", stop, handle }
    };
    let outbox_stage = {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let st = OutboxStage {
            outbox: outbox.clone(),
            wake: wake.0.clone(),
            probe: p_outbox.clone(),
            drain_for: d.daemon.shutdown_timeout.get(),
        };
        let handle = stage::spawn_thread("outbox", &exits, move |g| {
            if let Err(e) = st.run(s) {
                g.fail(e);
            }
        })
        .map_err(|e| DaemonError::Start("outbox", e))?;
        ThreadStage { name: "outbox", stop, handle }
    };

    let decoder =
        Arc::new(RwLock::new(Arc::new(Decoder::new(Arc::new(Catalog::from_config(&config)), &d.mqtt))));
    let resubscribe = Arc::new(tokio::sync::Notify::new());
    let reloader = Arc::new(Reloader::new(
        config.clone(),
        controls,
        Some(alerts.clone()),
        Some(outbox.clone()),
        decoder.clone(),
        resubscribe.clone(),
        metrics.clone(),
    ));

    let listener = TcpListener::bind(&d.http.listen)
        .await
        .map_err(|source| DaemonError::Listen { addr: d.http.listen.clone(), source })?;
    tracing::info!(addr = %d.http.listen, "HTTP listening");
    let stop_http = CancellationToken::new();
    let app = http::router(AppState {
        metrics: metrics.clone(),
        health: health.clone(),
        live: live.clone(),
        alerts: Some(alerts.clone()),
        outbox: Some(outbox.clone()),
        reloader: Some(reloader.clone()),
        api_token: d.http.api_token.clone(),
        max_body: d.http.max_body,
        push: Some(Arc::new(http::push::Push {
            intake: Intake::new(outlet.handle.clone(), metrics.clone())
                .recording(live.sources().clone(), "http"),
            decoder: decoder.clone(),
            token: d.http.ingest_token.clone(),
            max_body: d.http.max_push_body,
        })),
        clock,
        guard: Arc::new(http::guard::Guard::new(&d.http, &d.channels.ack.base_url)),
    });
    if d.http.api_token.is_empty() {
        tracing::warn!("http.api_token is empty: the write API (ack, dispose, silences, reload) is off");
    }
    let http_task = tokio::spawn(http::server::serve(
        listener,
        app,
        http::server::Limits::from_config(&d.http),
        metrics.clone(),
        stop_http.clone(),
        Duration::from_secs(1),
    ));

    let stop_fsync = CancellationToken::new();
    let fsync_task = (!fsync_interval.is_zero())
        .then(|| tokio::spawn(syncer.clone().run(fsync_interval, stop_fsync.clone())));

    let stop_writer = CancellationToken::new();
    // The writer (spool → InfluxDB) on a thread and runtime of its own: its
    // gzip and HTTP work never competes with intake's async workers.
    let writer_task = match client {
        None => None,
        Some(client) => {
            let w = Writer {
                reader,
                client,
                options: WriterOptions {
                    batch_size: d.influxdb.batch_size,
                    flush_interval: d.influxdb.flush_interval.get(),
                    retry_min: d.influxdb.retry_min.get(),
                    retry_max: d.influxdb.retry_max.get(),
                    rejected_dir: data_dir.join("rejected"),
                    create_database: d.influxdb.create_database,
                    shutdown_timeout: d.daemon.shutdown_timeout.get(),
                },
                metrics: metrics.clone(),
                health: health.clone(),
            };
            let stop = stop_writer.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| DaemonError::Start("writer", e))?;
            stage::spawn_thread("writer", &exits, move |_| {
                rt.block_on(w.run(stop));
                let _ = done_tx.send(());
            })
            .map_err(|e| DaemonError::Start("writer", e))?;
            Some(done_rx)
        }
    };

    let stop_sighup = CancellationToken::new();
    let sighup_task = tokio::spawn(reload_on_sighup(reloader.clone(), stop_sighup.clone()));
    // A full disk is told to the duty officers directly (state.db may be on it).
    let disk_task = tokio::spawn(crate::notify::operator::watch_disk(
        health.disk.clone(),
        outbox.clone(),
        stop_sighup.clone(),
    ));

    let stop_intake = CancellationToken::new();
    // The SL 651 central station, when configured: an intake beside MQTT.
    let (tcp_at, udp_at) = (d.sl651.listen.trim(), d.sl651.udp_listen.trim());
    let sl651_task = if tcp_at.is_empty() && udp_at.is_empty() {
        None
    } else {
        let listener = match tcp_at {
            "" => None,
            at => Some(
                TcpListener::bind(at)
                    .await
                    .map_err(|source| DaemonError::Listen { addr: at.to_string(), source })?,
            ),
        };
        let udp = match udp_at {
            "" => None,
            at => Some(
                tokio::net::UdpSocket::bind(at)
                    .await
                    .map_err(|source| DaemonError::Listen { addr: at.to_string(), source })?,
            ),
        };
        let station = Sl651 {
            config: d.sl651.clone(),
            decoder: decoder.clone(),
            intake: Intake::new(outlet.handle.clone(), metrics.clone())
                .recording(live.sources().clone(), "sl651"),
            metrics: metrics.clone(),
            timezone: config.timezone,
        };
        Some(stage::spawn_task("intake", &exits, station.run(listener, udp, stop_intake.clone())))
    };
    // Modbus TCP polling of pump-station PLCs, when devices are configured.
    let modbus_task = (!d.modbus.devices.is_empty()).then(|| {
        let pollers = Modbus {
            devices: d.modbus.devices.clone(),
            decoder: decoder.clone(),
            intake: Intake::new(outlet.handle.clone(), metrics.clone())
                .recording(live.sources().clone(), "modbus"),
            metrics: metrics.clone(),
        };
        stage::spawn_task("intake", &exits, pollers.run(stop_intake.clone()))
    });
    let mqtt = Mqtt {
        mqtt: {
            // Every node subscribes with a client id and persistent session
            // of its own (one id for two nodes: the broker would keep
            // throwing one off).
            let mut m = d.mqtt.clone();
            if shared.is_some() && m.client_id == crate::config::MqttSection::default().client_id {
                m.client_id = format!("{}-{node}", m.client_id);
            }
            m
        },
        decoder,
        intake: Intake::new(outlet.handle.clone(), metrics.clone()).recording(live.sources().clone(), "mqtt"),
        metrics: metrics.clone(),
        health: health.clone(),
        resubscribe,
        probe: p_intake.clone(),
        clock,
    };
    let intake_task = stage::spawn_task("intake", &exits, mqtt.run(stop_intake.clone()));
    drop(exits);
    drop(outlet.handle);

    // Until asked to stop, or a stage ends by itself.
    let failure = tokio::select! {
        _ = shutdown.cancelled() => None,
        e = ended.recv() => e,
    };
    let result = match failure {
        None => Ok(()),
        Some(e) => {
            tracing::error!(stage = e.stage, panicked = e.panicked, error = ?e.error, "a stage stopped while the daemon ran; stopping the daemon");
            Err(DaemonError::StageEnded { stage: e.stage, panicked: e.panicked, error: e.error })
        }
    };
    let started = Instant::now();
    // Every step's wait ends by this; what is left then is durable.
    let deadline = started + d.daemon.shutdown_timeout.get() + Duration::from_secs(3);
    tracing::info!("shutting down: stopping intake");
    stop_intake.cancel();
    let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), intake_task).await;
    for t in [sl651_task, modbus_task].into_iter().flatten() {
        let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), t).await;
    }
    stop_sighup.cancel();
    let _ = sighup_task.await;
    let _ = tokio::time::timeout(Duration::from_secs(1), disk_task).await;
    // The engine stops between two batches (the rest is judged after the
    // restart, from the committed mark); the alert stage records what it holds.
    engine_stage.stop(deadline).await;
    alert_stage.stop(deadline).await;
    // The snapshot taken at stop is written if the alert stage committed it.
    abandon_snapshot.cancel();
    let _ = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        tokio::task::spawn_blocking(move || snapshot_thread.join()),
    )
    .await;
    // What is due goes out while the outlet writes the last points and the
    // writer flushes the spool — each for at most shutdown_timeout.
    let outbox_done = outbox_stage.stop(deadline);
    let storage_done = async {
        outlet_stage.stop(deadline).await;
        stop_fsync.cancel();
        if let Some(t) = fsync_task {
            let _ = t.await;
        }
        if let Err(e) = syncer.sync() {
            tracing::error!(error = %e, "final spool fsync failed");
        }
        stop_writer.cancel();
        if let Some(t) = writer_task {
            let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), t).await;
        }
    };
    tokio::join!(outbox_done, storage_done);
    stop_http.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), http_task).await;
    stop_checkpoints.cancel();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::task::spawn_blocking(move || {
            for t in state_threads {
                let _ = t.join();
            }
        }),
    )
    .await;
    // Last: the lease, given up so a standby leads at once.
    stop_lease.cancel();
    if let Some(t) = lease_thread {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), tokio::task::spawn_blocking(move || t.join())).await;
    }
    tracing::info!(seconds = format!("{:.1}", started.elapsed().as_secs_f64()), "floodguard stopped");
    result
}

/// Where the engine resumes, and from what state.
///
/// After the last reading whose judgement is on record (the cursor `C` the
/// alert stage committed). With no cursor on record, from the oldest record
/// the spool keeps: on a first start that is the head (the spool is empty),
/// but a first run killed before the alert stage's first commit has spooled
/// readings nobody judged on record — starting at the head skipped them (the
/// storm suite's SIGKILL test, on a loaded machine). With a snapshot of the engine at `S ≤ C` still in the spool, the
/// engine starts from it at `S` and judges `S..C` again quietly
/// (`live::snapshot`); otherwise it starts at `C` from the active alerts'
/// levels.
fn resume_at(
    data_dir: &Path,
    cursor: Option<spool::Position>,
    oldest: spool::Position,
    head: spool::Position,
) -> (spool::Position, Option<spool::Position>, Option<crate::engine::snapshot::Snapshot>) {
    let Some(c) = cursor else {
        if oldest < head {
            tracing::info!(from = ?oldest, to = ?head, "no judgement on record yet: judging what the spool holds");
        }
        return (oldest.min(head), None, None);
    };
    let snapshot = match crate::live::snapshot::load(data_dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "the engine snapshot cannot be used; resuming from the active alerts");
            None
        }
    };
    match snapshot {
        Some((s, snap)) if s <= c && s >= oldest && c <= head => {
            tracing::info!(snapshot = ?s, cursor = ?c, "resuming the engine from its snapshot");
            (s, Some(c), Some(snap))
        }
        other => {
            if let Some((s, _)) = other {
                tracing::warn!(snapshot = ?s, cursor = ?c, oldest = ?oldest, "the engine snapshot does not fit the spool and the alerts on record; resuming from the active alerts");
            }
            if c < oldest {
                tracing::warn!(cursor = ?c, oldest = ?oldest, "the spool no longer holds where the engine stopped; judging from its oldest record");
                (oldest, None, None)
            } else {
                (c.min(head), None, None)
            }
        }
    }
}

/// SIGHUP re-reads the configuration.
async fn reload_on_sighup(reloader: Arc<Reloader>, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; use POST /api/v1/reload");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let r = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload()).await;
            }
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u64, offset: u64) -> spool::Position {
        spool::Position { segment, offset }
    }

    #[test]
    fn with_no_judgement_on_record_the_engine_judges_what_the_spool_holds() {
        let dir = tempfile::tempdir().unwrap();
        // A first start: the spool is empty, oldest = head.
        assert_eq!(resume_at(dir.path(), None, at(1, 0), at(1, 0)).0, at(1, 0));
        // Killed before the first commit: the spool holds readings nobody
        // judged on record; they are judged, not skipped.
        assert_eq!(resume_at(dir.path(), None, at(1, 0), at(2, 0)).0, at(1, 0));
        // With a cursor (and no snapshot): from the cursor.
        assert_eq!(resume_at(dir.path(), Some(at(1, 500)), at(1, 0), at(2, 0)).0, at(1, 500));
    }
}
