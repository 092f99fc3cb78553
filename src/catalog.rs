//! The site catalogue: the runtime view of `sites.toml` that decoding and
//! storage look sites up in, built once per (re)load of the config.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::config::{Config, Kind};
use crate::reading::TimestampNs;
use crate::tsdb::line_protocol::{self, Field};

/// InfluxDB measurement of sensor readings.
pub const TELEMETRY: &str = "telemetry";

/// InfluxDB measurement of the site catalogue: where each site is and what
/// it is called, for maps and tables (Grafana's geomap). One point per site,
/// written at every start of the daemon.
pub const SITE_INFO: &str = "site_info";

/// `site_info,category=…,kind=…,site=…,street=… lat=…,lon=…,name="…"` for
/// every site of `config`, stamped `ts`.
pub fn site_info_lines(config: &Config, ts: TimestampNs) -> String {
    let mut out = String::new();
    for s in &config.sites.sites {
        line_protocol::line(
            &mut out,
            SITE_INFO,
            &[
                ("category", s.category.as_str()),
                ("kind", s.kind.as_str()),
                ("site", &s.id),
                ("street", &s.street),
            ],
            [
                ("lat", Field::Float(s.location.lat)),
                ("lon", Field::Float(s.location.lon)),
                ("name", Field::Str(&s.name)),
            ],
            ts,
        );
    }
    out
}

/// What ingest needs to know of one site.
#[derive(Debug, Clone)]
pub struct SiteEntry {
    pub id: Arc<str>,
    pub kind: Kind,
    pub street: Arc<str>,
    /// `telemetry,kind=…,site=…,street=…`, escaped, ready for line protocol.
    pub series: Box<str>,
}

/// Sites by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    sites: HashMap<Arc<str>, SiteEntry>,
}

impl Catalog {
    pub fn from_config(config: &Config) -> Self {
        Self::from_sites(config.sites.sites.iter().map(|s| (s.id.as_str(), s.kind, s.street.as_str())))
    }

    /// Builds a catalogue from `(id, kind, street)`.
    pub fn from_sites<'a>(sites: impl IntoIterator<Item = (&'a str, Kind, &'a str)>) -> Self {
        let sites = sites
            .into_iter()
            .map(|(id, kind, street)| {
                let mut series = String::from(TELEMETRY);
                // Tags in key order, as InfluxDB sorts them anyway.
                line_protocol::tag(&mut series, "kind", kind.as_str());
                line_protocol::tag(&mut series, "site", id);
                line_protocol::tag(&mut series, "street", street);
                let id: Arc<str> = Arc::from(id);
                let entry = SiteEntry {
                    id: id.clone(),
                    kind,
                    street: Arc::from(street),
                    series: series.into_boxed_str(),
                };
                (id, entry)
            })
            .collect();
        Catalog { sites }
    }

    pub fn get(&self, id: &str) -> Option<&SiteEntry> {
        self.sites.get(id)
    }

    pub fn len(&self) -> usize {
        self.sites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_key_is_escaped_and_sorted() {
        let c = Catalog::from_sites([("CD-JS-01", Kind::Waterlogging, "chengdong")]);
        assert_eq!(
            &*c.get("CD-JS-01").unwrap().series,
            "telemetry,kind=waterlogging,site=CD-JS-01,street=chengdong"
        );
        assert!(c.get("nope").is_none());
    }

    #[test]
    fn site_info_has_one_line_per_site_with_its_location() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let config = crate::config::load(&dir).expect("sample config");
        let text = site_info_lines(&config, 7);
        assert_eq!(text.lines().count(), config.sites.sites.len());
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "site_info,category=underpass,kind=waterlogging,site=CD-JS-01,street=chengdong \
             lat=30.6021,lon=114.3412,name=\"人民路铁路桥下穿\" 7"
        );
    }
}
