//! From `plan.toml` and `sites.toml` to the [`Plan`] the engine runs, with
//! every problem reported as `(key path in plan.toml, reason)`.

use std::collections::{BTreeMap, HashSet};

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use super::expr;
use super::qc;
use super::schema::{AreaSpec, CardSpec, Defaults, KindSpec, RuleSpec};
use super::{ns, AreaRules, Card, Check, Plan, RuleInfo, SitePlan, SiteRule, StreetPlan};
use crate::coerce::MetricTypes;
use crate::config::{is_valid_id, Kind, Site, SitesFile};
use crate::level::Level;

/// `plan.toml`, deserialized; rules and cards keep their index in the file
/// (elements that failed to deserialize are already reported and left out).
#[derive(Debug, Clone, Default)]
pub struct PlanFile {
    pub defaults: Defaults,
    pub kinds: BTreeMap<String, KindSpec>,
    pub rules: Vec<(usize, RuleSpec)>,
    pub area: super::schema::Area,
    pub cards: Vec<(usize, CardSpec)>,
    pub qc: qc::QcSpec,
    pub upstream: super::schema::UpstreamSpec,
}

use super::rule_check::{check_shape, compile_check, declared, override_for, Errors};

/// Compiles the plan for the sites. All problems are returned, not the first.
/// `polled` are the Modbus devices of floodguard.toml as (address, site):
/// those sites do not come by MQTT, and sites behind one address share a
/// gateway.
pub fn compile(file: &PlanFile, sites: &SitesFile, polled: &[(&str, &str)]) -> Result<Plan, Errors> {
    let mut errs: Errors = Vec::new();
    let site_ids: HashSet<&str> = sites.sites.iter().map(|s| s.id.as_str()).collect();

    // [kinds.*]
    let mut kinds: HashMap<Kind, &KindSpec> = HashMap::default();
    for (name, spec) in &file.kinds {
        match name.parse::<Kind>() {
            Ok(k) => {
                kinds.insert(k, spec);
                for (metric, q) in &spec.qc {
                    let at = format!("kinds.{name}.qc.{metric}");
                    match declared(spec, metric) {
                        None => errs.push((at, format!("{metric:?} is not among the metrics of {name}"))),
                        Some("") => {
                            errs.push((at, format!("{metric:?} is a flag: quality control tests numbers")))
                        }
                        Some(_) => qc::check(q, &at, true, &mut errs),
                    }
                    for (j, other) in q.confirm_with.iter().flatten().enumerate() {
                        if declared(spec, other).is_none_or(str::is_empty) {
                            errs.push((
                                format!("kinds.{name}.qc.{metric}.confirm_with[{j}]"),
                                format!("{other:?} is not a number metric of {name}"),
                            ));
                        }
                    }
                }
                if let Some(p) = &spec.primary {
                    if declared(spec, p).is_none() {
                        errs.push((
                            format!("kinds.{name}.primary"),
                            format!("{p:?} is not among the metrics of {name}"),
                        ));
                    }
                }
            }
            Err(e) => errs.push((format!("kinds.{name}"), e)),
        }
    }
    qc::check_policy(&file.qc, &site_ids, &mut errs);
    for (j, o) in file.qc.overrides.iter().enumerate() {
        for (k, id) in o.sites.iter().enumerate() {
            let Some(site) = sites.sites.iter().find(|s| &s.id == id) else { continue };
            let Some(spec) = kinds.get(&site.kind) else { continue };
            if declared(spec, &o.metric).is_none_or(str::is_empty) {
                errs.push((
                    format!("qc.overrides[{j}].sites[{k}]"),
                    format!("{:?} is not a number metric of {id} (a {} site)", o.metric, site.kind),
                ));
            }
        }
    }
    let mut used: Vec<Kind> = sites.sites.iter().map(|s| s.kind).collect();
    used.sort();
    used.dedup();
    for k in &used {
        if !kinds.contains_key(k) {
            errs.push((
                "kinds".into(),
                format!("sites of kind {k} exist but [kinds.{k}] (stale_after, metrics) is missing"),
            ));
        }
    }

    // [[cards]]
    let mut cards: HashMap<(Kind, Level), Arc<Card>> = HashMap::default();
    for (i, c) in &file.cards {
        if c.kinds.is_empty() {
            errs.push((format!("cards[{i}].kinds"), "a card needs at least one kind".into()));
        }
        if c.unit.trim().is_empty() {
            errs.push((
                format!("cards[{i}].unit"),
                "the responsible unit (责任单位) must not be empty".into(),
            ));
        }
        for k in &c.kinds {
            let card = Card {
                kind: *k,
                level: c.level,
                unit: c.unit.clone(),
                duties: c.duties.clone(),
                measures: c.measures.clone(),
                arrive_within_s: c.arrive_within.get().as_secs(),
                materials: c.materials.clone(),
            };
            if cards.insert((*k, c.level), Arc::new(card)).is_some() {
                errs.push((format!("cards[{i}]"), format!("a second card for {k} at level {}", c.level)));
            }
        }
    }

    // [[rules]], per site.
    let mut per_site: Vec<Vec<SiteRule>> = vec![Vec::new(); sites.sites.len()];
    let mut rule_ids = HashSet::new();
    for (i, r) in &file.rules {
        let at = |k: &str| format!("rules[{i}].{k}");
        if !is_valid_id(&r.id) {
            errs.push((at("id"), format!("invalid id {:?}: use A-Z a-z 0-9 - _ .", r.id)));
        }
        if !rule_ids.insert(r.id.as_str()) {
            errs.push((at("id"), format!("duplicate rule id {:?}", r.id)));
        }
        if r.kinds.is_empty() && r.sites.is_empty() {
            errs.push((at("kinds"), "say which kinds or sites the rule applies to".into()));
        }
        for (j, s) in r.sites.iter().enumerate() {
            if !site_ids.contains(s.as_str()) {
                errs.push((at(&format!("sites[{j}]")), format!("unknown site {s:?}")));
            }
        }
        let applies = |s: &Site| r.kinds.contains(&s.kind) || r.sites.contains(&s.id);
        for (j, o) in r.overrides.iter().enumerate() {
            for (k, s) in o.sites.iter().enumerate() {
                match sites.sites.iter().find(|x| &x.id == s) {
                    None => {
                        errs.push((at(&format!("overrides[{j}].sites[{k}]")), format!("unknown site {s:?}")))
                    }
                    Some(x) if !applies(x) => errs.push((
                        at(&format!("overrides[{j}].sites[{k}]")),
                        format!("the rule does not apply to {s:?} (a {} site)", x.kind),
                    )),
                    _ => {}
                }
            }
        }
        let before = errs.len();
        check_shape(*i, r, &mut errs);
        if errs.len() > before {
            continue;
        }
        let info = Arc::new(RuleInfo {
            id: Arc::from(r.id.as_str()),
            name: Arc::from(r.name.as_str()),
            kind: r.kind,
        });
        let mut missing_cards: HashSet<(Kind, Level)> = HashSet::new();
        // A condition is parsed once and shared by the sites it applies to.
        let mut trees: HashMap<String, Arc<expr::Tree>> = HashMap::default();
        for (si, site) in sites.sites.iter().enumerate() {
            if !applies(site) {
                continue;
            }
            let Some(kind_spec) = kinds.get(&site.kind) else {
                continue;
            };
            let ov = override_for(r, &site.id);
            let ov_at = |k: &str| match ov {
                Some((j, _)) => format!("rules[{i}].overrides[{j}].{k}"),
                None => format!("rules[{i}].{k}"),
            };
            match compile_check(r, ov.map(|o| o.1), site, kind_spec, &ov_at, &mut trees) {
                Ok(mut check) => {
                    if let Check::Rain { metric, reset_drop, .. } = &mut check {
                        let spec = qc::spec_for(&kind_spec.qc, &file.qc.overrides, site, metric);
                        *reset_drop = spec.and_then(|s| s.counter_reset).unwrap_or(qc::DEFAULT_COUNTER_RESET);
                    }
                    for level in check.reachable() {
                        if !cards.contains_key(&(site.kind, level)) {
                            missing_cards.insert((site.kind, level));
                        }
                    }
                    let sustain = ov.and_then(|o| o.1.sustain).or(r.sustain).unwrap_or(file.defaults.sustain);
                    let clear = r.clear_sustain.unwrap_or(file.defaults.clear_sustain);
                    per_site[si].push(SiteRule {
                        rule: info.clone(),
                        check,
                        sustain: sustain.into(),
                        clear_sustain: clear.into(),
                    });
                }
                Err((key, reason)) => errs.push((key, reason)),
            }
        }
        let mut missing: Vec<_> = missing_cards.into_iter().collect();
        missing.sort();
        for (k, l) in missing {
            errs.push((
                format!("rules[{i}]"),
                format!(
                    "rule {:?} can raise {k} sites to level {l}, but no [[cards]] covers {k} at {l}",
                    r.id
                ),
            ));
        }
    }

    let street_rules = area(&file.area.street, "area.street", &mut errs);
    let district_rules = area(&file.area.district, "area.district", &mut errs);
    if !errs.is_empty() {
        // The same mistake seen at several sites is one mistake.
        let mut seen = HashSet::new();
        errs.retain(|e| seen.insert(e.clone()));
        return Err(errs);
    }

    // Assemble.
    let street_index: HashMap<&str, usize> =
        sites.streets.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    if sites.sites.iter().any(|s| !street_index.contains_key(s.street.as_str())) {
        // A site of an unknown street: sites.toml's own check names it; there
        // is no plan to make (found by tests/fuzz.rs: it panicked here).
        return Err(Vec::new());
    }
    let mut streets: Vec<StreetPlan> = sites
        .streets
        .iter()
        .map(|s| StreetPlan {
            id: Arc::from(s.id.as_str()),
            name: Arc::from(s.name.as_str()),
            name_en: s.name_en.as_deref().map(Arc::from),
            sites: Vec::new(),
        })
        .collect();
    let mut plan_sites = Vec::with_capacity(sites.sites.len());
    let mut kind_units = HashMap::default();
    let mut kind_qc: HashMap<Kind, Arc<Vec<qc::MetricQc>>> = HashMap::default();
    let mut kind_checks: HashMap<Kind, Vec<Checks>> = HashMap::default();
    for (si, (site, rules)) in sites.sites.iter().zip(per_site).enumerate() {
        let street = street_index[site.street.as_str()];
        streets[street].sites.push(si);
        let spec = kinds[&site.kind];
        // Units and types are the kind's: one map per kind, shared.
        let (units, types) = kind_units
            .entry(site.kind)
            .or_insert_with(|| {
                let types =
                    MetricTypes::from_units(spec.metrics.iter().map(|(m, u)| (m.as_str(), u.as_str())));
                (Arc::new(units_of(spec)), Arc::new(types))
            })
            .clone();
        let checks = checks(kind_checks.entry(site.kind).or_default(), spec, rules);
        let mut sp = site_plan(site, street, spec, units, types, checks);
        sp.qc = if file.qc.overrides.iter().any(|o| o.sites.contains(&site.id)) {
            Arc::new(site_qc(spec, &file.qc.overrides, site))
        } else {
            kind_qc.entry(site.kind).or_insert_with(|| Arc::new(site_qc(spec, &[], site))).clone()
        };
        plan_sites.push(sp);
    }
    let upstreams = upstreams(sites, polled, &mut plan_sites, streets.len());
    // Each site's street gauges (sites with a rain rule), for flatlines during rain.
    let gauges: Vec<(usize, usize, usize)> = plan_sites
        .iter()
        .enumerate()
        .flat_map(|(si, sp)| {
            sp.rules
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r.check, Check::Rain { .. }))
                .map(move |(ri, _)| (sp.street, si, ri))
        })
        .collect();
    for sp in &mut plan_sites {
        if sp.qc.iter().any(|q| q.flatline.is_some_and(|f| f.rain_mm.is_some())) {
            sp.street_gauges =
                gauges.iter().filter(|g| g.0 == sp.street).map(|&(_, si, ri)| (si, ri)).collect();
        }
    }
    let site_index = plan_sites.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
    Ok(Plan {
        district_id: Arc::from(sites.district.id.as_str()),
        district_name: Arc::from(sites.district.name.as_str()),
        district_name_en: sites.district.name_en.as_deref().map(Arc::from),
        sites: plan_sites,
        site_index,
        streets,
        street_rules,
        district_rules,
        cards,
        trend_window_ns: ns(file.defaults.trend_window.get()),
        qc: qc::QcPolicy::from(&file.qc),
        upstreams,
        upstream_window_ns: ns(file.upstream.window.get()),
        intake_after_ns: ns(file.upstream.intake_after.get()),
    })
}

/// Gateways that two sites or more share (a gateway of one site is the
/// site: its offline alert says it all) — named by `gateway` in sites.toml,
/// or implicitly a Modbus address polled for several sites' devices (a
/// serial gateway with unit ids behind it) —, then the intakes: SL 651 for
/// the sites with a station, MQTT for the others that are not polled by
/// Modbus (a poller is no one connection: each device fails on its own).
fn upstreams(
    sites: &SitesFile,
    polled: &[(&str, &str)],
    plan_sites: &mut [SitePlan],
    streets: usize,
) -> Vec<super::UpstreamPlan> {
    use super::{UpstreamKind, UpstreamPlan};
    let mut out: Vec<UpstreamPlan> = Vec::new();
    let mut by_id: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, s) in sites.sites.iter().enumerate() {
        if let Some(g) = &s.gateway {
            by_id.entry(g.clone()).or_default().push(i);
        }
    }
    let index = |id: &str| sites.sites.iter().position(|s| s.id == id);
    let mut modbus = vec![false; sites.sites.len()];
    for &(address, site) in polled {
        let Some(i) = index(site) else { continue };
        modbus[i] = true;
        if sites.sites[i].gateway.is_none() {
            let members = by_id.entry(format!("modbus:{address}")).or_default();
            if !members.contains(&i) {
                members.push(i);
            }
        }
    }
    for (id, members) in by_id.into_iter().filter(|(_, m)| m.len() >= 2) {
        let mut count = vec![0usize; streets];
        for &i in &members {
            count[plan_sites[i].street] += 1;
        }
        let street = (0..streets).max_by_key(|&s| (count[s], std::cmp::Reverse(s)));
        for &i in &members {
            plan_sites[i].gateway = Some(out.len());
        }
        out.push(UpstreamPlan {
            id: Arc::from(id.as_str()),
            kind: UpstreamKind::Gateway,
            sites: members,
            street,
        });
    }
    for (id, sl651) in [("mqtt", false), ("sl651", true)] {
        let members: Vec<usize> = (0..sites.sites.len())
            .filter(|&i| sites.sites[i].sl651_station.is_some() == sl651 && (sl651 || !modbus[i]))
            .collect();
        if members.is_empty() {
            continue;
        }
        for &i in &members {
            plan_sites[i].intake = Some(out.len());
        }
        out.push(UpstreamPlan {
            id: Arc::from(id),
            kind: UpstreamKind::Intake,
            sites: members,
            street: None,
        });
    }
    out
}

/// The quality control of a site's metrics: its kind's, with the overrides
/// that name it (a metric the kind does not test may be tested at one site).
fn site_qc(spec: &KindSpec, overrides: &[qc::QcOverride], site: &Site) -> Vec<qc::MetricQc> {
    let mut metrics: Vec<&str> = spec.qc.keys().map(String::as_str).collect();
    for o in overrides.iter().filter(|o| o.sites.contains(&site.id)) {
        if !metrics.contains(&o.metric.as_str()) {
            metrics.push(&o.metric);
        }
    }
    metrics
        .into_iter()
        .filter_map(|m| qc::spec_for(&spec.qc, overrides, site, m).map(|s| qc::compile(m, &s)))
        .collect()
}

fn area(spec: &AreaSpec, key: &str, errs: &mut Errors) -> AreaRules {
    for (j, e) in spec.escalate.iter().enumerate() {
        if e.count == 0 {
            errs.push((format!("{key}.escalate[{j}].count"), "must be at least 1".into()));
        }
    }
    AreaRules {
        max_of_members: spec.max_of_members.unwrap_or(true),
        escalate: spec.escalate.iter().map(|e| (e.count, e.at_least, e.to)).collect(),
    }
}

fn units_of(spec: &KindSpec) -> HashMap<Arc<str>, Arc<str>> {
    spec.metrics
        .iter()
        .filter(|(m, _)| !m.contains('*'))
        .map(|(m, u)| (Arc::from(m.as_str()), Arc::from(u.as_str())))
        .collect()
}

/// A site's rules and what follows from them (`SitePlan::rules`,
/// `by_metric`, `conditions`, `history`), shareable between sites.
#[derive(Clone)]
struct Checks {
    rules: Arc<Vec<SiteRule>>,
    by_metric: Arc<HashMap<Arc<str>, Vec<usize>>>,
    conditions: Arc<Vec<usize>>,
    history: Arc<Vec<Arc<str>>>,
}

/// Variants of a kind's checks kept for sharing: a district whose every
/// site has thresholds of its own compares each site with a few, not all.
const SHARED_VARIANTS: usize = 8;

/// The checks of `rules`: one already made for an earlier site of the kind
/// if its rules are the same, else new ones (kept for the next sites).
fn checks(variants: &mut Vec<Checks>, spec: &KindSpec, rules: Vec<SiteRule>) -> Checks {
    if let Some(c) = variants.iter().find(|c| *c.rules == rules) {
        return c.clone();
    }
    let c = site_checks(spec, rules);
    if variants.len() < SHARED_VARIANTS {
        variants.push(c.clone());
    }
    c
}

fn site_checks(spec: &KindSpec, rules: Vec<SiteRule>) -> Checks {
    let mut by_metric: HashMap<Arc<str>, Vec<usize>> = HashMap::default();
    let mut conditions = Vec::new();
    let mut history: Vec<Arc<str>> = Vec::new();
    let mut keep = |m: &str| {
        if !history.iter().any(|h| &**h == m) {
            history.push(Arc::from(m));
        }
    };
    if let Some(p) = &spec.primary {
        keep(p);
    }
    for (ri, r) in rules.iter().enumerate() {
        match &r.check {
            Check::Condition { expr, .. } => {
                conditions.push(ri);
                for v in expr::variables(expr) {
                    if let Some(base) = v.strip_suffix("_per_h") {
                        keep(base);
                    }
                }
            }
            c => {
                let m = c.metric().expect("metric");
                by_metric.entry(m.clone()).or_default().push(ri);
                if matches!(c, Check::Level { .. } | Check::Rate { .. }) {
                    keep(m);
                }
            }
        }
    }
    Checks {
        rules: Arc::new(rules),
        by_metric: Arc::new(by_metric),
        conditions: Arc::new(conditions),
        history: Arc::new(history),
    }
}

fn site_plan(
    site: &Site,
    street: usize,
    spec: &KindSpec,
    units: Arc<HashMap<Arc<str>, Arc<str>>>,
    types: Arc<MetricTypes>,
    checks: Checks,
) -> SitePlan {
    let Checks { rules, by_metric, conditions, history } = checks;
    SitePlan {
        id: Arc::from(site.id.as_str()),
        name: Arc::from(site.name.as_str()),
        name_en: site.name_en.as_deref().map(Arc::from),
        location: (site.location.lat, site.location.lon),
        category: site.category,
        kind: site.kind,
        street,
        stale_after_ns: ns(spec.stale_after.get()),
        primary: spec.primary.as_deref().map(Arc::from),
        units,
        types,
        rules,
        by_metric,
        conditions,
        history,
        params: site.params.iter().map(|(k, v)| (Arc::from(k.as_str()), *v)).collect(),
        qc: Arc::default(),
        street_gauges: Vec::new(),
        gateway: None,
        intake: None,
    }
}
