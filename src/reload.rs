//! Hot reload (SIGHUP, `POST /api/v1/reload`): re-read every config file; an
//! invalid configuration is refused with its full error list and the running
//! one stays; a valid one replaces the plan (state carried over), the site
//! catalogue and the topic mappings. Settings that only a restart can change
//! (broker connection, InfluxDB, HTTP address, data directory, Modbus
//! devices) are named.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::sync::Notify;

use crate::catalog::Catalog;
use crate::config::{self, Config, ConfigErrors, DaemonConfig};
use crate::ingest::Decoder;
use crate::live::stage::Controls;
use crate::metrics::Metrics;

/// What a successful reload did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReloadReport {
    pub sites: usize,
    pub streets: usize,
    pub rules: usize,
    pub teams: usize,
    /// Changed settings that take effect only after a restart.
    pub restart_needed: Vec<String>,
}

pub struct Reloader {
    path: PathBuf,
    current: Mutex<Config>,
    /// The engine stage applies a new plan on its own thread.
    engine: Controls,
    alerts: Option<Arc<crate::alerts::AlertManager>>,
    outbox: Option<Arc<crate::notify::Outbox>>,
    decoder: Arc<RwLock<Arc<Decoder>>>,
    /// Tells ingest to bring its subscriptions in line with the decoder.
    resubscribe: Arc<Notify>,
    metrics: Arc<Metrics>,
}

/// The settings of `old` that differ in `new` and need a restart.
pub fn restart_needed(old: &DaemonConfig, new: &DaemonConfig) -> Vec<String> {
    let mut v = Vec::new();
    let (a, b) = (&old.mqtt, &new.mqtt);
    if (&a.url, &a.client_id, &a.username, &a.password, &a.ca_file, &a.client_cert, &a.client_key)
        != (&b.url, &b.client_id, &b.username, &b.password, &b.ca_file, &b.client_cert, &b.client_key)
        || (a.keep_alive, a.max_packet_size, a.reconnect_min, a.reconnect_max)
            != (b.keep_alive, b.max_packet_size, b.reconnect_min, b.reconnect_max)
    {
        v.push("mqtt (connection)".to_string());
    }
    if old.influxdb != new.influxdb {
        v.push("influxdb".into());
    }
    if old.spool != new.spool {
        v.push("spool".into());
    }
    if old.http != new.http {
        v.push("http".into());
    }
    if old.daemon != new.daemon {
        v.push("daemon".into());
    }
    if old.log != new.log {
        v.push("log".into());
    }
    if old.modbus != new.modbus {
        // The pollers keep their devices; a device's site is looked up in
        // the new catalogue at each poll.
        v.push("modbus".into());
    }
    if old.channels != new.channels {
        v.push("channels".into());
    }
    v
}

impl Reloader {
    pub fn new(
        config: Config,
        engine: Controls,
        alerts: Option<Arc<crate::alerts::AlertManager>>,
        outbox: Option<Arc<crate::notify::Outbox>>,
        decoder: Arc<RwLock<Arc<Decoder>>>,
        resubscribe: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader {
            path: config.main_file.clone(),
            current: Mutex::new(config),
            engine,
            alerts,
            outbox,
            decoder,
            resubscribe,
            metrics,
        }
    }

    /// Reads and applies the configuration, or refuses it.
    pub fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let new = match config::load(&self.path) {
            Ok(c) => c,
            Err(errors) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::error!(
                    errors = errors.len(),
                    "configuration refused; the running one stays:\n{errors}"
                );
                return Err(errors);
            }
        };
        let mut current = self.current.lock().expect("config lock");
        let mut redactor = crate::redact::Redactor::from_config(&new);
        redactor.extend(&crate::redact::Redactor::from_config(&current));
        crate::redact::install(redactor);
        let mut report = ReloadReport {
            sites: new.sites.sites.len(),
            streets: new.sites.streets.len(),
            rules: new.plan.sites.iter().map(|s| s.rules.len()).sum(),
            teams: new.teams.teams.len(),
            restart_needed: restart_needed(&current.daemon, &new.daemon),
        };
        let decoder = Arc::new(Decoder::new(Arc::new(Catalog::from_config(&new)), &new.daemon.mqtt));
        *self.decoder.write().expect("decoder lock") = decoder;
        self.resubscribe.notify_one();
        if let Some(alerts) = &self.alerts {
            alerts.reload(new.teams.clone(), crate::alerts::Places::from_config(&new));
            if let Err(e) = alerts.reload_materials(new.materials.clone()) {
                tracing::error!(error = %e, "cannot read the materials' movements; the stock is the old one");
            }
        }
        // Channels apply at once where the outbox runs.
        let mut channels_applied = false;
        if let Some(outbox) = &self.outbox {
            let places = crate::alerts::Places::from_config(&new);
            match outbox.reload(new.teams.clone(), places, &new.daemon.channels) {
                Ok(()) => {
                    channels_applied = true;
                    report.restart_needed.retain(|s| s != "channels");
                }
                Err(e) => tracing::error!(error = %e, "the new [channels] cannot be used; the old ones stay"),
            }
        }
        if !self.engine.reload(new.plan.clone(), std::time::Duration::from_secs(10)) {
            tracing::warn!("the engine is busy: the new plan applies when it takes its next batch");
        }
        // Keep the settings that need a restart as they run, so the next
        // reload still reports them.
        let mut applied = new;
        if !report.restart_needed.is_empty() {
            let running = &current.daemon;
            let mut d = running.clone();
            d.mqtt.mappings = applied.daemon.mqtt.mappings.clone();
            d.mqtt.default_topics = applied.daemon.mqtt.default_topics;
            d.mqtt.max_payload = applied.daemon.mqtt.max_payload;
            d.mqtt.max_future = applied.daemon.mqtt.max_future;
            if channels_applied {
                d.channels = applied.daemon.channels.clone();
            }
            applied.daemon = d;
            tracing::warn!(settings = ?report.restart_needed, "changed settings take effect after a restart");
        }
        *current = applied;
        self.metrics.reloads.with_label_values(&["applied"]).inc();
        tracing::info!(sites = report.sites, rules = report.rules, "configuration reloaded");
        Ok(report)
    }

    pub fn config(&self) -> Config {
        self.current.lock().expect("config lock").clone()
    }
}
