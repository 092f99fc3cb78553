//! Configuration: four TOML files split by who edits them, validated together.
//!
//! | file | edited by | holds |
//! |---|---|---|
//! | `floodguard.toml` (`-c`) | IT operator | `[daemon]`, `[log]`, `[mqtt]`, `[influxdb]`, `[spool]`, `[http]`, `[sl651]`, `[[modbus.devices]]`, `[state]`, `[channels.*]` |
//! | `sites.toml` | engineer | `[district]`, `[[streets]]`, `[[sites]]` |
//! | `plan.toml` | engineer | the emergency plan: rules, cards, area rules |
//! | `teams.toml` | flood office | `[[teams]]` and their members, `[hq]` and its member units |
//! | `materials.toml` (optional) | flood office | `[items.*]` and `[[depots]]`: flood materials |
//!
//! sites.toml also holds `[[pump_works]]` and `[[renovations]]` (what the
//! readiness report counts). The others are read from the directory of the
//! main file. Environment
//! variables `FLOODGUARD__SECTION__KEY` override keys of the main file. Loading
//! never stops at the first problem: [`load`] returns every error, each with
//! its file, line, key path and reason.

mod channels;
mod channels_check;
mod daemon;
mod daemon_check;
mod error;
mod load;
mod materials;
mod modbus;
pub mod readiness;
mod sites;
mod teams;
mod values;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use daemon::*;
pub use error::{ConfigError, ConfigErrors, Origin};
pub use load::{env_var_for, ENV_PREFIX};
pub use materials::{Depot, Item, MaterialsFile};
pub use sites::{is_valid_id, Category, District, Kind, Location, Site, SitesFile, Street};
pub use teams::{
    Alerting, FallbackChannel, Member, Robot, RobotKind, Role, Shift, SilenceConfig, Team, TeamsFile,
};
pub use values::{
    example_secrets, generate_secret, redact_url, secret_problem, HumanDuration, Secret, MIN_SECRET_LEN,
};

use load::Source;

use crate::plan::{Plan, PlanFile};

/// The validated configuration of one daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file, as given with `-c`.
    pub main_file: PathBuf,
    pub daemon: DaemonConfig,
    pub sites: Arc<SitesFile>,
    pub teams: TeamsFile,
    /// Flood materials and their depots (empty without materials.toml).
    pub materials: Arc<MaterialsFile>,
    /// The emergency plan, compiled for the sites.
    pub plan: Arc<Plan>,
    /// `daemon.timezone`, resolved.
    pub timezone: chrono_tz::Tz,
}

pub const SITES_FILE: &str = "sites.toml";
pub const PLAN_FILE: &str = "plan.toml";
pub const TEAMS_FILE: &str = "teams.toml";
pub const MATERIALS_FILE: &str = "materials.toml";

/// Loads and validates the configuration whose main file is `main`, with the
/// process environment's overrides.
pub fn load(main: &Path) -> Result<Config, ConfigErrors> {
    let env: HashMap<String, String> =
        std::env::vars().filter(|(k, _)| k.to_uppercase().starts_with(&format!("{ENV_PREFIX}__"))).collect();
    load_with_env(main, &env)
}

/// Like [`load`], with the environment given explicitly (for tests).
pub fn load_with_env(main: &Path, env: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let dir = main.parent().map(Path::to_path_buf).unwrap_or_default();

    let mut daemon = DaemonConfig::default();
    // The main file's errors come first; its source stays open until the
    // sites are read, for the keys that name a site (`modbus.devices[i].site`).
    let mut main_errors = ConfigErrors::default();
    let mut main_src = Source::read(main, Some(env), &mut main_errors);
    if let Some(src) = main_src.as_mut() {
        src.reject_unknown_top_level(&[
            "daemon", "log", "mqtt", "influxdb", "spool", "http", "sl651", "modbus", "state", "cluster",
            "channels",
        ]);
        // Section by section, so one bad section hides nothing in the others.
        let mut failed: Vec<&str> = Vec::new();
        macro_rules! section {
            ($field:ident) => {
                let name = stringify!($field);
                if let Some(v) = src.get(name) {
                    match src.section(name, v) {
                        Some(s) => daemon.$field = s,
                        None => failed.push(name),
                    }
                }
            };
        }
        section!(daemon);
        section!(log);
        section!(mqtt);
        section!(influxdb);
        section!(spool);
        section!(http);
        section!(sl651);
        if let Some(v) = src.get("modbus") {
            match modbus_section(src, v) {
                Some(m) => daemon.modbus = m,
                None => failed.push("modbus"),
            }
        }
        section!(state);
        section!(cluster);
        section!(channels);
        for (key, reason) in daemon_check::validate(&daemon) {
            if !failed.iter().any(|f| key.split('.').next() == Some(f)) {
                src.error(&key, reason);
            }
        }
    }

    let mut sites = SitesFile::default();
    let mut sites_read = false;
    if let Some(mut src) = Source::read(&dir.join(SITES_FILE), None, &mut errors) {
        sites_read = true;
        src.reject_unknown_top_level(&["district", "streets", "sites", "pump_works", "renovations"]);
        if let Some(v) = src.get("district") {
            if let Some(d) = src.section("district", v) {
                sites.district = d;
            }
        } else {
            src.error("district", "missing [district] with id and name");
        }
        let (street_index, streets): (Vec<usize>, Vec<Street>) = src.array("streets").into_iter().unzip();
        sites.streets = streets;
        let (index, parsed): (Vec<usize>, Vec<Site>) = src.array("sites").into_iter().unzip();
        sites.sites = parsed;
        if sites.streets.is_empty() {
            src.error("streets", "no [[streets]] defined");
        }
        for (key, reason) in sites::validate(&sites) {
            let key = load::remap_index(&key, "sites", &index);
            src.error(&load::remap_index(&key, "streets", &street_index), reason);
        }
        let (work_index, works): (Vec<usize>, Vec<_>) = src.array("pump_works").into_iter().unzip();
        let (reno_index, renovations): (Vec<usize>, Vec<_>) = src.array("renovations").into_iter().unzip();
        sites.pump_works = works;
        sites.renovations = renovations;
        for (key, reason) in readiness::validate_sites(&sites) {
            let key = load::remap_index(&key, "pump_works", &work_index);
            src.error(&load::remap_index(&key, "renovations", &reno_index), reason);
        }
    }

    if let (Some(src), true) = (main_src.as_mut(), sites_read) {
        for (key, reason) in modbus_sites(&daemon, &sites) {
            src.error(&key, reason);
        }
    }
    drop(main_src);
    main_errors.0.append(&mut errors.0);
    let mut errors = main_errors;

    let mut teams = TeamsFile::default();
    if let Some(mut src) = Source::read(&dir.join(TEAMS_FILE), None, &mut errors) {
        src.reject_unknown_top_level(&["teams", "alerting", "silences", "hq", "maintenance"]);
        if let Some(v) = src.get("alerting") {
            if let Some(a) = src.section("alerting", v) {
                teams.alerting = a;
            }
        }
        if let Some(v) = src.get("hq") {
            teams.hq = src.section("hq", v);
        }
        teams.silences = src.array("silences").into_iter().map(|(_, s)| s).collect();
        let (index, parsed): (Vec<usize>, Vec<Team>) = src.array("teams").into_iter().unzip();
        teams.teams = parsed;
        let (maintenance_index, parsed): (Vec<usize>, Vec<Team>) =
            src.array("maintenance").into_iter().unzip();
        teams.maintenance = parsed;
        let streets: HashSet<&str> = sites.streets.iter().map(|s| s.id.as_str()).collect();
        let reach = teams::Reach {
            sms: daemon.channels.sms.is_some(),
            email: daemon.channels.email.is_some(),
            voice: daemon.channels.voice.is_some(),
        };
        for (key, reason) in teams::validate(&teams, &streets, reach) {
            let key = load::remap_index(&key, "teams", &index);
            src.error(&load::remap_index(&key, "maintenance", &maintenance_index), reason);
        }
        for (key, reason) in readiness::validate_hq(&teams) {
            src.error(&key, reason);
        }
    }

    let mut materials = MaterialsFile::default();
    let materials_path = dir.join(MATERIALS_FILE);
    if materials_path.exists() {
        if let Some(mut src) = Source::read(&materials_path, None, &mut errors) {
            materials = load_materials(&mut src, &sites);
        }
    }

    let mut plan = None;
    if let Some(mut src) = Source::read(&dir.join(PLAN_FILE), None, &mut errors) {
        let polled: Vec<(&str, &str)> =
            daemon.modbus.devices.iter().map(|d| (d.address.as_str(), d.site.as_str())).collect();
        plan = load_plan(&mut src, &sites, &materials, &polled);
    }

    let timezone = daemon.daemon.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);

    match plan {
        Some(plan) if errors.is_empty() => Ok(Config {
            main_file: main.to_path_buf(),
            daemon,
            sites: Arc::new(sites),
            teams,
            materials: Arc::new(materials),
            plan: Arc::new(plan),
            timezone,
        }),
        _ => Err(errors),
    }
}

/// `[modbus]` element by element — each device, each of its registers — so
/// every mistake of a long register map is named at once (serde stops at
/// the first).
fn modbus_section(src: &mut Source<'_>, v: config::Value) -> Option<ModbusSection> {
    use config::{Value, ValueKind};
    let ValueKind::Table(mut table) = v.kind else {
        return src.section("modbus", v);
    };
    let devices = table.shift_remove("devices");
    // What is left can only be unknown keys.
    let mut ok = src.section::<ModbusSection>("modbus", Value::new(None, ValueKind::Table(table))).is_some();
    let mut out = ModbusSection::default();
    let items = match devices.map(|d| d.kind) {
        None => Vec::new(),
        Some(ValueKind::Array(items)) => items,
        Some(_) => {
            src.error("modbus.devices", "expected an array of tables ([[modbus.devices]])");
            return None;
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let key = format!("modbus.devices[{i}]");
        let (item, registers) = match item.kind {
            ValueKind::Table(mut t) => {
                let r = t.shift_remove("registers");
                (Value::new(None, ValueKind::Table(t)), r)
            }
            other => (Value::new(None, other), None),
        };
        let device: Option<ModbusDevice> = src.section(&key, item);
        let mut parsed = Vec::new();
        match registers.map(|r| r.kind) {
            None => {}
            Some(ValueKind::Array(regs)) => {
                for (j, r) in regs.into_iter().enumerate() {
                    match src.section(&format!("{key}.registers[{j}]"), r) {
                        Some(r) => parsed.push(r),
                        None => ok = false,
                    }
                }
            }
            Some(_) => {
                src.error(&format!("{key}.registers"), "expected an array of { metric, table, address }");
                ok = false;
            }
        }
        match device {
            Some(mut d) => {
                d.registers = parsed;
                out.devices.push(d);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Each Modbus device's site must be one of sites.toml.
fn modbus_sites(daemon: &DaemonConfig, sites: &SitesFile) -> Vec<(String, String)> {
    let ids: HashSet<&str> = sites.sites.iter().map(|s| s.id.as_str()).collect();
    daemon
        .modbus
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| !ids.contains(d.site.as_str()))
        .map(|(i, d)| (format!("modbus.devices[{i}].site"), format!("no site {:?} in {SITES_FILE}", d.site)))
        .collect()
}

/// `materials.toml`: each item and each depot alone, then their checks.
fn load_materials(src: &mut Source<'_>, sites: &SitesFile) -> MaterialsFile {
    src.reject_unknown_top_level(&["items", "depots"]);
    let mut file = MaterialsFile::default();
    match src.get("items").map(|v| v.kind) {
        None => {}
        Some(config::ValueKind::Table(t)) => {
            for (id, spec) in t {
                if let Some(item) = src.section(&format!("items.{id}"), spec) {
                    file.items.push((id, item));
                }
            }
        }
        Some(_) => src.error("items", "expected tables [items.<id>]"),
    }
    let (index, depots): (Vec<usize>, Vec<Depot>) = src.array("depots").into_iter().unzip();
    file.depots = depots;
    let streets: HashSet<&str> = sites.streets.iter().map(|s| s.id.as_str()).collect();
    for (key, reason) in materials::validate(&file, &streets) {
        src.error(&load::remap_index(&key, "depots", &index), reason);
    }
    file
}

/// Reads `plan.toml` section by section and compiles it for the sites.
fn load_plan(
    src: &mut Source<'_>,
    sites: &SitesFile,
    materials: &MaterialsFile,
    polled: &[(&str, &str)],
) -> Option<Plan> {
    src.reject_unknown_top_level(&["defaults", "kinds", "rules", "area", "cards", "qc", "upstream"]);
    let mut file = PlanFile::default();
    let mut ok = true;
    if let Some(v) = src.get("defaults") {
        match src.section("defaults", v) {
            Some(d) => file.defaults = d,
            None => ok = false,
        }
    }
    if let Some(v) = src.get("kinds") {
        match v.kind {
            config::ValueKind::Table(t) => {
                for (name, spec) in t {
                    match src.section(&format!("kinds.{name}"), spec) {
                        Some(k) => {
                            file.kinds.insert(name, k);
                        }
                        None => ok = false,
                    }
                }
            }
            _ => src.error("kinds", "expected tables [kinds.<kind>]"),
        }
    }
    if let Some(v) = src.get("area") {
        match src.section("area", v) {
            Some(a) => file.area = a,
            None => ok = false,
        }
    }
    if let Some(v) = src.get("upstream") {
        match src.section("upstream", v) {
            Some(u) => file.upstream = u,
            None => ok = false,
        }
    }
    if let Some(v) = src.get("qc") {
        match src.section("qc", v) {
            Some(q) => file.qc = q,
            None => ok = false,
        }
    }
    file.rules = src.array("rules");
    file.cards = src.array("cards");
    // The materials a card calls for are items of materials.toml.
    for (i, c) in &file.cards {
        for (item, q) in &c.materials {
            if materials.item(item).is_none() {
                let known: Vec<&str> = materials.items.iter().map(|(id, _)| id.as_str()).collect();
                let reason = if known.is_empty() {
                    format!("unknown item {item:?}: {MATERIALS_FILE} defines none")
                } else {
                    format!("unknown item {item:?} (items of {MATERIALS_FILE}: {})", known.join(", "))
                };
                src.error(&format!("cards[{i}].materials.{item}"), reason);
                ok = false;
            }
            if !(q.is_finite() && *q > 0.0) {
                src.error(
                    &format!("cards[{i}].materials.{item}"),
                    format!("{q} is not a quantity (above 0)"),
                );
                ok = false;
            }
        }
    }
    match crate::plan::compile(&file, sites, polled) {
        Ok(plan) if ok => Some(plan),
        Ok(_) => None,
        Err(errs) => {
            for (key, reason) in errs {
                src.error(&key, reason);
            }
            None
        }
    }
}

impl Config {
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.sites.iter().find(|s| s.id == id)
    }

    pub fn street(&self, id: &str) -> Option<&Street> {
        self.sites.streets.iter().find(|s| s.id == id)
    }

    /// `daemon.data_dir`, relative paths taken from the working directory.
    pub fn data_dir(&self) -> &Path {
        &self.daemon.daemon.data_dir
    }
}

#[cfg(test)]
mod tests;
