//! The site catalogue: the runtime view of `sites.toml` that decoding and
//! storage look sites up in, built once per (re)load of the config.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::coerce::{MetricType, MetricTypes};
use crate::config::{Config, Kind};
use crate::outlet::points::{self, SiteInfo};
use crate::reading::TimestampNs;

pub use points::{SITE_INFO, TELEMETRY};

/// `site_info,category=…,kind=…,site=…,street=… lat=…,lon=…,name="…"` for
/// every site of `config`, stamped `ts`.
pub fn site_info_lines(config: &Config, ts: TimestampNs) -> String {
    let mut out = String::new();
    for s in &config.sites.sites {
        let info = SiteInfo {
            site: &s.id,
            name: &s.name,
            kind: s.kind.as_str(),
            category: s.category.as_str(),
            street: &s.street,
            lat: s.location.lat,
            lon: s.location.lon,
        };
        points::site_info(&mut out, &info, ts);
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
    /// Its kind's metric types: how its values are coerced.
    pub types: Arc<MetricTypes>,
}

impl SiteEntry {
    /// The type of `metric` at this site (`None`: not declared by its kind).
    pub fn metric_type(&self, metric: &str) -> Option<MetricType> {
        self.types.get(metric)
    }
}

/// An SL 651 station's site and its element → metric overrides.
#[derive(Debug, Clone)]
pub struct Sl651Station {
    pub site: Arc<str>,
    /// Element identifier → metric, from `sl651_elements` (over the defaults).
    pub elements: Vec<(u16, Arc<str>)>,
}

/// Sites by id, and by the field addresses their readings come from.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    sites: HashMap<Arc<str>, SiteEntry>,
    /// By the station address's 10 hex digits, upper case.
    sl651: HashMap<String, Sl651Station>,
}

impl Catalog {
    pub fn from_config(config: &Config) -> Self {
        // The plan's strings and type maps, shared rather than copied.
        let plan = &config.plan;
        let sites = plan.sites.iter().map(|sp| {
            let street = plan.streets[sp.street].id.clone();
            let series = points::series_key(sp.kind.as_str(), &sp.id, &street).into_boxed_str();
            let entry =
                SiteEntry { id: sp.id.clone(), kind: sp.kind, street, series, types: sp.types.clone() };
            (sp.id.clone(), entry)
        });
        let mut c = Catalog { sites: sites.collect(), sl651: HashMap::default() };
        for s in &config.sites.sites {
            if let Some(station) = &s.sl651_station {
                let elements = s
                    .sl651_elements
                    .iter()
                    .filter_map(|(id, m)| Some((u16::from_str_radix(id, 16).ok()?, Arc::from(m.as_str()))))
                    .collect();
                c.add_sl651(station, Sl651Station { site: Arc::from(s.id.as_str()), elements });
            }
        }
        c
    }

    /// Makes `station` (10 hex digits) a site's SL 651 station.
    pub fn add_sl651(&mut self, station: &str, s: Sl651Station) {
        self.sl651.insert(station.to_ascii_uppercase(), s);
    }

    /// The site of an SL 651 station (10 hex digits, any case).
    pub fn sl651(&self, station: &str) -> Option<&Sl651Station> {
        self.sl651.get(&station.to_ascii_uppercase())
    }

    /// Builds a catalogue from `(id, kind, street)`.
    pub fn from_sites<'a>(sites: impl IntoIterator<Item = (&'a str, Kind, &'a str)>) -> Self {
        let sites = sites
            .into_iter()
            .map(|(id, kind, street)| {
                let series = points::series_key(kind.as_str(), id, street);
                let id: Arc<str> = Arc::from(id);
                let entry = SiteEntry {
                    id: id.clone(),
                    kind,
                    street: Arc::from(street),
                    series: series.into_boxed_str(),
                    types: Arc::default(),
                };
                (id, entry)
            })
            .collect();
        Catalog { sites, sl651: HashMap::default() }
    }

    pub fn get(&self, id: &str) -> Option<&SiteEntry> {
        self.sites.get(id)
    }

    /// The type of `metric` at `site` (`None`: unknown site or undeclared metric).
    pub fn metric_type(&self, site: &str, metric: &str) -> Option<MetricType> {
        self.sites.get(site)?.metric_type(metric)
    }

    /// Gives the sites of `kind` the metric types `types` (for tests and
    /// tools that build a catalogue without a plan).
    pub fn set_types(&mut self, kind: Kind, types: Arc<MetricTypes>) {
        for e in self.sites.values_mut().filter(|e| e.kind == kind) {
            e.types = types.clone();
        }
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
