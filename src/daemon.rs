//! `floodguard run`: wires ingest, spool, writer and HTTP together and shuts
//! them down in order.
//!
//! Shutdown (SIGTERM/SIGINT): stop intake (the group in hand is spooled and
//! acked; the rest stays with the broker), fsync the spool, let the writer
//! flush to InfluxDB for at most `daemon.shutdown_timeout`, stop HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alerts::{AlertManager, Places};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::health::Health;
use crate::http::{self, AppState};
use crate::ingest::{Decoder, Ingest};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::notify::Outbox;
use crate::reading::to_ns;
use crate::reload::Reloader;
use crate::spool;
use crate::tsdb::{InfluxClient, Writer, WriterOptions};

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
    #[error("ingest: {0}")]
    Ingest(String),
    #[error("alert state {path}: {source}")]
    State { path: PathBuf, source: rusqlite::Error },
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

/// Runs the daemon until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let d = &config.daemon;
    let data_dir = config.data_dir().to_path_buf();
    let _lock = lock_data_dir(&data_dir)?;
    let (appender, reader) =
        spool::open(&data_dir.join("spool"), d.spool.segment_size).map_err(DaemonError::Spool)?;
    let stats = appender.stats();
    let metrics = Arc::new(Metrics::new());
    let client = InfluxClient::new(&d.influxdb).map_err(DaemonError::Config)?;
    let health = Arc::new(Health::new(stats.clone(), client.as_ref().map(|_| d.influxdb.max_lag.get())));
    let pending = stats.pending_records.load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        data_dir = %data_dir.display(),
        sites = config.sites.sites.len(),
        spool_pending = pending,
        influxdb = client.as_ref().map_or("spool only", |c| c.endpoint()),
        "floodguard starting"
    );

    let appender = Arc::new(Mutex::new(appender));
    let state_path = data_dir.join("state.db");
    let store = crate::alerts::store::Store::open(&state_path)
        .map_err(|source| DaemonError::State { path: state_path.clone(), source })?;
    let outbox = Arc::new(
        Outbox::new(
            &state_path,
            d.channels.clone(),
            config.teams.clone(),
            Places::from_config(&config),
            d.daemon.language,
            Some(metrics.clone()),
        )
        .map_err(DaemonError::Config)?,
    );
    let alerts = Arc::new(
        AlertManager::new(
            store,
            config.teams.clone(),
            Places::from_config(&config),
            outbox.clone(),
            Some(appender.clone()),
            Some(metrics.clone()),
        )
        .map_err(|source| DaemonError::State { path: state_path.clone(), source })?,
    );
    // Messages cut off by a crash go out again (same idempotency key), and
    // notifications logged but never queued are queued now.
    outbox.recover().map_err(DaemonError::Config)?;
    let stop_outbox = CancellationToken::new();
    let outbox_tasks = crate::notify::spawn_workers(&outbox, &stop_outbox);
    // Carry on where the last run stopped: the engine starts at the levels
    // of the alerts still active.
    let (levels, offline) = alerts.seed();
    if !levels.is_empty() || !offline.is_empty() {
        tracing::info!(active = levels.len(), offline = offline.len(), "resuming active alerts");
    }
    let live = Arc::new(Live::resume(
        config.plan.clone(),
        alerts.clone(),
        Some(appender.clone()),
        metrics.clone(),
        config.timezone,
        to_ns(chrono::Utc::now()),
        &levels,
        &offline,
    ));
    // The site catalogue (names, coordinates) for Grafana's map and tables.
    let sites = crate::catalog::site_info_lines(&config, to_ns(chrono::Utc::now()));
    if let Err(e) = appender
        .lock()
        .expect("spool lock")
        .append(sites.split_inclusive('\n').map(str::as_bytes), chrono::Utc::now().timestamp_millis())
    {
        tracing::error!(error = %e, "cannot spool the site catalogue");
    }
    let decoder =
        Arc::new(RwLock::new(Arc::new(Decoder::new(Arc::new(Catalog::from_config(&config)), &d.mqtt))));
    let resubscribe = Arc::new(tokio::sync::Notify::new());
    let reloader = Arc::new(Reloader::new(
        config.clone(),
        live.clone(),
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
    });
    let http_task = tokio::spawn({
        let stop = stop_http.clone();
        async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }
    });

    let stop_fsync = CancellationToken::new();
    let fsync_interval = d.spool.fsync_interval.get();
    let fsync_task = (!fsync_interval.is_zero()).then(|| {
        tokio::spawn(appender.lock().expect("spool lock").syncer().run(fsync_interval, stop_fsync.clone()))
    });
    let syncer = appender.lock().expect("spool lock").syncer();

    let stop_writer = CancellationToken::new();
    let writer_task = client.map(|client| {
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
        tokio::spawn(w.run(stop_writer.clone()))
    });

    let stop_engine = CancellationToken::new();
    let (readings_tx, readings_rx) = tokio::sync::mpsc::unbounded_channel();
    let engine_task = tokio::spawn(live.clone().run(readings_rx, stop_engine.clone()));
    let sighup_task = tokio::spawn(reload_on_sighup(reloader.clone(), stop_engine.clone()));
    let alerts_task = tokio::spawn(follow_up(alerts.clone(), stop_engine.clone()));

    let stop_ingest = CancellationToken::new();
    let ingest = Ingest {
        mqtt: d.mqtt.clone(),
        decoder,
        appender,
        fsync_each_write: fsync_interval.is_zero(),
        metrics: metrics.clone(),
        health: health.clone(),
        readings_out: Some(readings_tx),
        resubscribe,
    };
    let mut ingest_task = tokio::spawn(ingest.run(stop_ingest.clone()));

    let ingest_result = tokio::select! {
        _ = shutdown.cancelled() => None,
        r = &mut ingest_task => Some(r),
    };
    tracing::info!("shutting down: stopping intake");
    stop_ingest.cancel();
    let ingest_result = match ingest_result {
        Some(r) => r,
        None => ingest_task.await,
    };
    // The engine takes what ingest handed over (the channel closed with it).
    let _ = engine_task.await;
    stop_engine.cancel();
    let _ = sighup_task.await;
    let _ = alerts_task.await;
    // The outbox gets the same grace as the writer for what is queued; a
    // send cut off is sent again at the next start.
    let drained = tokio::time::timeout(d.daemon.shutdown_timeout.get(), outbox.drained()).await;
    if drained.is_err() {
        tracing::warn!("shutting down with messages still queued; they go out at the next start");
    }
    stop_outbox.cancel();
    for t in outbox_tasks {
        let _ = t.await;
    }
    stop_fsync.cancel();
    if let Some(t) = fsync_task {
        let _ = t.await;
    }
    if let Err(e) = syncer.sync() {
        tracing::error!(error = %e, "final spool fsync failed");
    }
    stop_writer.cancel();
    if let Some(t) = writer_task {
        let _ = t.await;
    }
    stop_http.cancel();
    let _ = http_task.await;
    tracing::info!("floodguard stopped");
    match ingest_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Ingest(e)),
        Err(e) => Err(DaemonError::Ingest(e.to_string())),
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

/// Repeats, escalations, silence ends, grouped notices: checked every second.
async fn follow_up(alerts: Arc<AlertManager>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => alerts.tick(to_ns(chrono::Utc::now())),
            _ = stop.cancelled() => return,
        }
    }
}
