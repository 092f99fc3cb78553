//! Quality control (质控) in `plan.toml`: the tests each metric's readings
//! pass before the engine judges them, as written (`[qc]`,
//! `[kinds.<kind>.qc.<metric>]`, `[[qc.overrides]]`) and compiled per site.
//!
//! - **range**: outside the physical range → *bad*: stored, never judged;
//! - **spike**: a step of more than `spike` from the last accepted reading
//!   within `spike_within`, and **rate**: faster than `rate` units an hour
//!   → *suspect*: judged only once the next reading (or a second sensor of
//!   the site, `confirm_with`) agrees within `confirm_within`;
//! - **flatline**: the same value (± `flatline_tolerance`) for longer than
//!   `flatline` — while the street's rain gauge measured at least
//!   `flatline_rain_mm` in that time, or, without it, at all (a metric that
//!   always moves) → *suspect* (still judged: it adds nothing new);
//! - **counter_reset**: a rain counter dropping by more than this is a
//!   reset (all of its new value fell since); a smaller drop is jitter.
//!
//! A metric failing persistently — `fault_after` failures (bad readings,
//! spikes the next reading did not confirm) within `fault_window`, or a
//! flatline — opens a 疑似传感器故障 maintenance alert; it closes once its
//! readings have passed for `fault_clear`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use super::ns;
use crate::config::{HumanDuration, Site};

/// `[qc]`: the policy, and per-site overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct QcSpec {
    /// Off: every reading is judged as it comes (as before QC).
    pub enabled: bool,
    /// How long a suspect reading waits for its confirmation.
    pub confirm_within: HumanDuration,
    /// Failures within `fault_window` that open a maintenance alert.
    pub fault_after: u32,
    pub fault_window: HumanDuration,
    /// Passing readings for this long close it.
    pub fault_clear: HumanDuration,
    pub overrides: Vec<QcOverride>,
}

impl Default for QcSpec {
    fn default() -> Self {
        QcSpec {
            enabled: true,
            confirm_within: HumanDuration::secs(20 * 60),
            fault_after: 3,
            fault_window: HumanDuration::secs(3600),
            fault_clear: HumanDuration::secs(30 * 60),
            overrides: Vec::new(),
        }
    }
}

/// `[kinds.<kind>.qc.<metric>]`: the tests of one metric (each optional).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetricQcSpec {
    /// `[min, max]`: the sensor's physical range.
    pub range: Option<[f64; 2]>,
    pub spike: Option<f64>,
    pub spike_within: Option<HumanDuration>,
    /// Units per hour.
    pub rate: Option<f64>,
    pub flatline: Option<HumanDuration>,
    pub flatline_tolerance: Option<f64>,
    pub flatline_rain_mm: Option<f64>,
    pub counter_reset: Option<f64>,
    /// Other metrics of the site that measure the same (a second sensor).
    pub confirm_with: Option<Vec<String>>,
}

/// `[[qc.overrides]]`: values for named sites, replacing the kind's.
#[derive(Debug, Clone, Deserialize)]
pub struct QcOverride {
    pub sites: Vec<String>,
    pub metric: String,
    pub range: Option<[f64; 2]>,
    pub spike: Option<f64>,
    pub spike_within: Option<HumanDuration>,
    pub rate: Option<f64>,
    pub flatline: Option<HumanDuration>,
    pub flatline_tolerance: Option<f64>,
    pub flatline_rain_mm: Option<f64>,
    pub counter_reset: Option<f64>,
    pub confirm_with: Option<Vec<String>>,
}

impl QcOverride {
    fn apply(&self, to: &mut MetricQcSpec) {
        macro_rules! take {
            ($($f:ident),*) => { $( if self.$f.is_some() { to.$f = self.$f.clone(); } )* };
        }
        take!(
            range,
            spike,
            spike_within,
            rate,
            flatline,
            flatline_tolerance,
            flatline_rain_mm,
            counter_reset,
            confirm_with
        );
    }
}

/// The policy, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct QcPolicy {
    pub enabled: bool,
    pub confirm_within_ns: i64,
    pub fault_after: u32,
    pub fault_window_ns: i64,
    pub fault_clear_ns: i64,
}

impl Default for QcPolicy {
    fn default() -> Self {
        QcPolicy::from(&QcSpec::default())
    }
}

impl From<&QcSpec> for QcPolicy {
    fn from(s: &QcSpec) -> Self {
        QcPolicy {
            enabled: s.enabled,
            confirm_within_ns: ns(s.confirm_within.get()),
            fault_after: s.fault_after.max(1),
            fault_window_ns: ns(s.fault_window.get()),
            fault_clear_ns: ns(s.fault_clear.get()),
        }
    }
}

/// A flatline test: the same value for `after_ns`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flatline {
    pub after_ns: i64,
    pub tolerance: f64,
    /// Only while the street's gauges measured this much rain in that time.
    pub rain_mm: Option<f64>,
}

/// One metric's tests at one site.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQc {
    pub metric: Arc<str>,
    pub range: Option<(f64, f64)>,
    /// (largest step, within)
    pub spike: Option<(f64, i64)>,
    pub rate_per_h: Option<f64>,
    pub flatline: Option<Flatline>,
    pub confirm_with: Vec<Arc<str>>,
}

impl MetricQc {
    /// How close two readings must be to agree (confirmation): the spike
    /// step, else a tenth of the range.
    pub fn agree(&self) -> f64 {
        self.spike
            .map(|s| s.0)
            .or_else(|| self.range.map(|(lo, hi)| (hi - lo) / 10.0))
            .unwrap_or(f64::INFINITY)
    }
}

/// A rain counter's drop below which it is jitter, when nothing is written.
pub const DEFAULT_COUNTER_RESET: f64 = 0.5;

/// The spec of `metric` at `site`: the kind's, with the last override naming the site.
pub fn spec_for(
    kind_qc: &BTreeMap<String, MetricQcSpec>,
    overrides: &[QcOverride],
    site: &Site,
    metric: &str,
) -> Option<MetricQcSpec> {
    let mut spec = kind_qc.get(metric).cloned();
    for o in overrides.iter().filter(|o| o.metric == metric && o.sites.contains(&site.id)) {
        o.apply(spec.get_or_insert_with(MetricQcSpec::default));
    }
    spec
}

type Errors = Vec<(String, String)>;

/// Checks one spec's numbers; `at` is its key path. `whole`: the spec
/// stands alone (a kind's), so fields that need another are checked too.
pub fn check(spec: &MetricQcSpec, at: &str, whole: bool, errs: &mut Errors) {
    let key = |k: &str| format!("{at}.{k}");
    if let Some([lo, hi]) = spec.range {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            errs.push((key("range"), format!("[{lo}, {hi}] is not a range: [min, max] with min < max")));
        }
    }
    for (name, v) in [
        ("spike", spec.spike),
        ("rate", spec.rate),
        ("flatline_rain_mm", spec.flatline_rain_mm),
        ("counter_reset", spec.counter_reset),
    ] {
        if v.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
            errs.push((key(name), "must be a number > 0".into()));
        }
    }
    if spec.flatline_tolerance.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
        errs.push((key("flatline_tolerance"), "must be a number ≥ 0".into()));
    }
    for (name, d) in [("spike_within", spec.spike_within), ("flatline", spec.flatline)] {
        if d.is_some_and(|d| d.get().is_zero()) {
            errs.push((key(name), "must be longer than 0s".into()));
        }
    }
    if !whole {
        return;
    }
    if spec.spike_within.is_some() && spec.spike.is_none() {
        errs.push((key("spike_within"), "only means something with `spike`".into()));
    }
    if (spec.flatline_rain_mm.is_some() || spec.flatline_tolerance.is_some()) && spec.flatline.is_none() {
        errs.push((at.to_string(), "flatline_rain_mm and flatline_tolerance need `flatline`".into()));
    }
}

/// Compiles a checked spec.
pub fn compile(metric: &str, spec: &MetricQcSpec) -> MetricQc {
    MetricQc {
        metric: Arc::from(metric),
        range: spec.range.map(|[lo, hi]| (lo, hi)),
        spike: spec.spike.map(|s| (s, spec.spike_within.map_or(10 * 60_000_000_000, |d| ns(d.get())))),
        rate_per_h: spec.rate,
        flatline: spec.flatline.map(|d| Flatline {
            after_ns: ns(d.get()),
            tolerance: spec.flatline_tolerance.unwrap_or(0.0),
            rain_mm: spec.flatline_rain_mm,
        }),
        confirm_with: spec
            .confirm_with
            .iter()
            .flatten()
            .filter(|m| *m != metric)
            .map(|m| Arc::from(m.as_str()))
            .collect(),
    }
}

/// Checks `[qc]` itself and its overrides against the sites.
pub fn check_policy(spec: &QcSpec, site_ids: &HashSet<&str>, errs: &mut Errors) {
    if spec.fault_after == 0 {
        errs.push(("qc.fault_after".into(), "must be at least 1".into()));
    }
    for (name, d) in [
        ("confirm_within", spec.confirm_within),
        ("fault_window", spec.fault_window),
        ("fault_clear", spec.fault_clear),
    ] {
        if d.get().is_zero() {
            errs.push((format!("qc.{name}"), "must be longer than 0s".into()));
        }
    }
    for (j, o) in spec.overrides.iter().enumerate() {
        for (k, s) in o.sites.iter().enumerate() {
            if !site_ids.contains(s.as_str()) {
                errs.push((format!("qc.overrides[{j}].sites[{k}]"), format!("unknown site {s:?}")));
            }
        }
        let mut spec = MetricQcSpec::default();
        o.apply(&mut spec);
        check(&spec, &format!("qc.overrides[{j}]"), false, errs);
    }
}
