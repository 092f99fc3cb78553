//! `sites.toml`: the district, its streets (街道) and the monitored sites.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

/// `[district]`: the area the command center is responsible for (某区).
#[derive(Debug, Clone, Deserialize)]
pub struct District {
    pub id: String,
    pub name: String,
    pub name_en: Option<String>,
}

impl Default for District {
    fn default() -> Self {
        District { id: "district".into(), name: "区".into(), name_en: None }
    }
}

/// `[[streets]]`: a street (街道), the unit that area rules and teams work on.
#[derive(Debug, Clone, Deserialize)]
pub struct Street {
    /// ASCII id, used as the `street` tag in InfluxDB and in topic filters.
    pub id: String,
    pub name: String,
    pub name_en: Option<String>,
}

string_enum! {
    /// What a site measures; decides its rules, card and staleness in the plan.
    /// The string is the InfluxDB `kind` tag and the API's `kind`.
    #[derive(PartialOrd, Ord)]
    pub enum Kind ("kind") {
        /// 积水点: water depth on a road, underpass, garage entrance (`water_depth_cm`).
        Waterlogging = "waterlogging",
        /// 雨量站: tipping-bucket rain gauge (`rain_mm`).
        RainGauge = "rain_gauge",
        /// 河道水位: river or channel level (`level_m`).
        River = "river",
        /// 泵站: forebay level, pumps running/faulted (`forebay_level_m`, `pumpN_*`).
        PumpStation = "pump_station",
        /// 检查井: water level in a manhole (`distance_m` below the cover).
        Manhole = "manhole",
    }
}

impl Kind {
    pub fn name_zh(self) -> &'static str {
        match self {
            Kind::Waterlogging => "积水点",
            Kind::RainGauge => "雨量站",
            Kind::River => "河道水位",
            Kind::PumpStation => "泵站",
            Kind::Manhole => "检查井",
        }
    }

    /// Site parameters a site of this kind must have, with what they mean.
    pub fn required_params(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::River => &[("warning_level_m", "警戒水位 (m)"), ("guarantee_level_m", "保证水位 (m)")],
            Kind::PumpStation => &[
                ("pumps", "number of pumps"),
                ("pump_capacity_m3s", "capacity of one pump (m³/s)"),
                ("pump_start_level_m", "forebay level at which pumps start (m)"),
                ("flood_control_level_m", "控淹线, the forebay level not to pass (m)"),
            ],
            Kind::Manhole => &[
                ("depth_m", "depth of the manhole below its cover (m)"),
                ("pipe_crown_m", "depth of the pipe crown below the cover (m)"),
            ],
            Kind::Waterlogging | Kind::RainGauge => &[],
        }
    }
}

string_enum! {
    /// Where a site is: what people will recognise and what the report groups by.
    pub enum Category ("category") {
        Road = "road",
        Underpass = "underpass",
        Tunnel = "tunnel",
        /// 小区 (e.g. an underground garage entrance)
        Community = "community",
        /// 商超
        Mall = "mall",
        School = "school",
        Hospital = "hospital",
        River = "river",
        Channel = "channel",
        PumpStation = "pump_station",
        Rooftop = "rooftop",
        Park = "park",
        Intersection = "intersection",
    }
}

impl Category {
    pub fn name_zh(self) -> &'static str {
        match self {
            Category::Road => "道路",
            Category::Underpass => "下穿通道",
            Category::Tunnel => "隧道",
            Category::Community => "小区",
            Category::Mall => "商超",
            Category::School => "学校",
            Category::Hospital => "医院",
            Category::River => "河道",
            Category::Channel => "排洪沟",
            Category::PumpStation => "泵站",
            Category::Rooftop => "楼顶",
            Category::Park => "公园",
            Category::Intersection => "路口",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// `[[sites]]`: one monitored place with its sensor(s).
#[derive(Debug, Clone, Deserialize)]
pub struct Site {
    /// Stable id: topic segment, `site` tag, API key. `[A-Za-z0-9_.-]`.
    pub id: String,
    pub name: String,
    pub name_en: Option<String>,
    pub kind: Kind,
    pub category: Category,
    /// Street id from `[[streets]]`.
    pub street: String,
    pub location: Location,
    /// Site parameters the plan's thresholds may refer to (警戒水位 …).
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    /// The SL 651 station whose frames are this site's readings: the 10 hex
    /// digits of its address as sent (`"0012345678"`).
    #[serde(default)]
    pub sl651_station: Option<String>,
    /// SL 651 element (hex identifier, `"39"`) → metric, over the defaults.
    #[serde(default)]
    pub sl651_elements: BTreeMap<String, String>,
    /// What the site reports through (a 4G DTU, a gateway: `"DTU-07"`):
    /// when most sites of one gateway go silent together, one 采集链路中断
    /// alert names the gateway and its sites instead of an offline alert
    /// per site.
    #[serde(default)]
    pub gateway: Option<String>,
}

/// The contents of `sites.toml`.
#[derive(Debug, Clone, Default)]
pub struct SitesFile {
    pub district: District,
    pub streets: Vec<Street>,
    pub sites: Vec<Site>,
    /// `[[pump_works]]`: upgrades and repairs of pump stations.
    pub pump_works: Vec<super::readiness::PumpWork>,
    /// `[[renovations]]`: waterlogging points' renovation projects.
    pub renovations: Vec<super::readiness::Renovation>,
}

/// Is `id` usable as a topic segment, tag value and URL path segment?
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Semantic checks across `sites.toml`; each problem as `(key path, reason)`.
pub fn validate(file: &SitesFile) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    if !is_valid_id(&file.district.id) {
        errs.push(("district.id".into(), id_reason(&file.district.id)));
    }
    let mut street_ids = HashSet::new();
    for (i, s) in file.streets.iter().enumerate() {
        if !is_valid_id(&s.id) {
            errs.push((format!("streets[{i}].id"), id_reason(&s.id)));
        }
        if !street_ids.insert(s.id.as_str()) {
            errs.push((format!("streets[{i}].id"), format!("duplicate street id {:?}", s.id)));
        }
        if s.name.trim().is_empty() {
            errs.push((format!("streets[{i}].name"), "must not be empty".into()));
        }
    }
    let mut site_ids = HashSet::new();
    let mut stations: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for (i, s) in file.sites.iter().enumerate() {
        let at = |k: &str| format!("sites[{i}].{k}");
        if !is_valid_id(&s.id) {
            errs.push((at("id"), id_reason(&s.id)));
        }
        if !site_ids.insert(s.id.as_str()) {
            errs.push((at("id"), format!("duplicate site id {:?}", s.id)));
        }
        if s.name.trim().is_empty() {
            errs.push((at("name"), "must not be empty".into()));
        }
        if !street_ids.contains(s.street.as_str()) {
            let known: Vec<_> = file.streets.iter().map(|s| s.id.as_str()).collect();
            errs.push((
                at("street"),
                format!("unknown street {:?} (streets: {})", s.street, known.join(", ")),
            ));
        }
        if !(-90.0..=90.0).contains(&s.location.lat) {
            errs.push((at("location.lat"), format!("{} is not a latitude (-90..90)", s.location.lat)));
        }
        if !(-180.0..=180.0).contains(&s.location.lon) {
            errs.push((at("location.lon"), format!("{} is not a longitude (-180..180)", s.location.lon)));
        }
        for (name, what) in s.kind.required_params() {
            if !s.params.contains_key(*name) {
                errs.push((at("params"), format!("a {} site needs {name} ({what})", s.kind)));
            }
        }
        for (name, v) in &s.params {
            if !v.is_finite() {
                errs.push((at(&format!("params.{name}")), "must be a finite number".into()));
            }
        }
        if let Some(st) = &s.sl651_station {
            if st.len() != 10 || !st.bytes().all(|b| b.is_ascii_hexdigit()) {
                errs.push((
                    at("sl651_station"),
                    format!("{st:?} is not the 10 hex digits of a station address"),
                ));
            } else if let Some(other) = stations.insert(st.to_ascii_uppercase(), s.id.as_str()) {
                errs.push((at("sl651_station"), format!("station {st} is already site {other:?}'s")));
            }
        }
        if let Some(g) = &s.gateway {
            if !is_valid_id(g) {
                errs.push((at("gateway"), id_reason(g)));
            }
        }
        for (id, metric) in &s.sl651_elements {
            if !(matches!(id.len(), 2 | 4) && id.bytes().all(|b| b.is_ascii_hexdigit())) {
                errs.push((
                    at(&format!("sl651_elements.{id}")),
                    "the key must be an element identifier in hex (\"39\", or \"FF01\")".into(),
                ));
            }
            if !crate::reading::is_valid_metric(metric) {
                errs.push((
                    at(&format!("sl651_elements.{id}")),
                    format!("{metric:?} is not a valid metric name"),
                ));
            }
        }
        let p = |k: &str| s.params.get(k).copied();
        if let (Some(w), Some(g)) = (p("warning_level_m"), p("guarantee_level_m")) {
            if w >= g {
                errs.push((at("params.warning_level_m"), format!("警戒水位 {w} must be below 保证水位 {g}")));
            }
        }
        if let (Some(d), Some(c)) = (p("depth_m"), p("pipe_crown_m")) {
            if c >= d || c <= 0.0 {
                errs.push((
                    at("params.pipe_crown_m"),
                    format!("the pipe crown ({c} m below the cover) must lie within the manhole (0..{d} m)"),
                ));
            }
        }
    }
    errs
}

fn id_reason(id: &str) -> String {
    format!("invalid id {id:?}: use 1 to 64 of A-Z a-z 0-9 - _ .")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: &str, kind: Kind, street: &str) -> Site {
        Site {
            id: id.into(),
            name: "x".into(),
            name_en: None,
            kind,
            category: Category::Road,
            street: street.into(),
            location: Location { lat: 31.0, lon: 121.0 },
            params: BTreeMap::new(),
            sl651_station: None,
            sl651_elements: BTreeMap::new(),
            gateway: None,
        }
    }

    #[test]
    fn sl651_stations_are_ten_hex_digits_and_one_site_each() {
        let mut a = site("A", Kind::RainGauge, "s");
        a.sl651_station = Some("0012345678".into());
        a.sl651_elements.insert("39".into(), "stage_m".into());
        a.sl651_elements.insert("PJ".into(), "rain_mm".into());
        let mut b = site("B", Kind::RainGauge, "s");
        b.sl651_station = Some("0012345678".into());
        let mut c = site("C", Kind::RainGauge, "s");
        c.sl651_station = Some("12345".into());
        let file = SitesFile {
            district: District::default(),
            streets: vec![Street { id: "s".into(), name: "s".into(), name_en: None }],
            sites: vec![a, b, c],
            ..SitesFile::default()
        };
        let errs = validate(&file);
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["sites[0].sl651_elements.PJ", "sites[1].sl651_station", "sites[2].sl651_station"],
            "{errs:?}"
        );
        assert!(errs[1].1.contains("already site \"A\"'s"), "{errs:?}");
    }

    #[test]
    fn ids_are_safe_for_topics_and_tags() {
        assert!(is_valid_id("CD-JS-01"));
        assert!(is_valid_id("a_b.c"));
        for bad in ["", "a b", "a/b", "a+b", "a#", "a,b", "a=b", "街道", &"x".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn validation_finds_every_problem() {
        let mut river = site("R", Kind::River, "nowhere");
        river.params.insert("warning_level_m".into(), 5.0);
        river.params.insert("guarantee_level_m".into(), 4.0);
        river.location.lat = 95.0;
        let file = SitesFile {
            district: District::default(),
            streets: vec![Street { id: "a".into(), name: "A".into(), name_en: None }],
            sites: vec![site("A", Kind::Waterlogging, "a"), site("A", Kind::Manhole, "a"), river],
            ..SitesFile::default()
        };
        let errs = validate(&file);
        let keys: Vec<_> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sites[1].id",
                "sites[1].params",
                "sites[1].params",
                "sites[2].street",
                "sites[2].location.lat",
                "sites[2].params.warning_level_m"
            ],
            "{errs:?}"
        );
    }
}
