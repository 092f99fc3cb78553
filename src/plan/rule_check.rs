//! One rule at one site, for [`super::compile`]: the rule's shape, the
//! names its conditions may use, thresholds over site parameters, the
//! override that applies — every problem as `(key path in plan.toml,
//! reason)`.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use super::expr;
use super::qc;
use super::schema::{Direction, KindSpec, Override, RainInput, RuleSpec, RuleType};
use super::{ns, Check};
use crate::config::{Kind, Site};
use crate::level::Level;

/// Problems as `(key path in plan.toml, reason)`.
pub(super) type Errors = Vec<(String, String)>;

/// Does `name` match a declared metric (`*` stands for digits)?
pub(super) fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, post)) => {
            name.len() > pre.len() + post.len()
                && name.starts_with(pre)
                && name.ends_with(post)
                && name[pre.len()..name.len() - post.len()].bytes().all(|b| b.is_ascii_digit())
        }
    }
}

pub(super) fn declared<'k>(spec: &'k KindSpec, metric: &str) -> Option<&'k str> {
    spec.metrics.iter().find(|(p, _)| matches_pattern(p, metric)).map(|(_, unit)| unit.as_str())
}

/// Names a condition may use at a site of `kind`, besides the site's parameters.
pub(super) fn condition_name_ok(kind: Kind, spec: &KindSpec, name: &str) -> bool {
    if declared(spec, name).is_some() {
        return true;
    }
    if let Some(base) = name.strip_suffix("_per_h") {
        return declared(spec, base).is_some_and(|u| !u.is_empty());
    }
    kind == Kind::PumpStation && matches!(name, "pumps_running" | "pumps_faulted")
}

pub(super) fn threshold_value(spec: &super::schema::ThresholdSpec, site: &Site) -> Result<f64, String> {
    match spec {
        super::schema::ThresholdSpec::Number(n) if n.is_finite() => Ok(*n),
        super::schema::ThresholdSpec::Number(n) => Err(format!("{n} is not a finite number")),
        super::schema::ThresholdSpec::Expr(text) => {
            let tree = expr::parse(text)?;
            let vars: Vec<(&str, f64)> = site.params.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            expr::eval_number(&tree, &vars).map_err(|e| format!("{text:?} at site {}: {e}", site.id))
        }
    }
}

/// The override of `rule` that applies to `site` (the last that names it), with its index.
pub(super) fn override_for<'r>(rule: &'r RuleSpec, site: &str) -> Option<(usize, &'r Override)> {
    rule.overrides.iter().enumerate().rev().find(|(_, o)| o.sites.iter().any(|s| s == site))
}

/// Required fields per rule type, independent of sites.
pub(super) fn check_shape(i: usize, r: &RuleSpec, errs: &mut Errors) {
    let at = |k: &str| format!("rules[{i}].{k}");
    let need = |errs: &mut Errors, present: bool, key: &str, what: &str| {
        if !present {
            errs.push((at(key), format!("a {} rule needs {what}", r.kind)));
        }
    };
    match r.kind {
        RuleType::Level => {
            need(errs, r.metric.is_some(), "metric", "the metric it judges");
            need(
                errs,
                r.thresholds.as_ref().is_some_and(|t| !t.is_empty()),
                "thresholds",
                "thresholds, e.g. { IV = 10, III = 20 }",
            );
            if r.deadband.is_some_and(|d| !(d >= 0.0 && d.is_finite())) {
                errs.push((at("deadband"), "must be a number ≥ 0".into()));
            }
        }
        RuleType::Rate => {
            need(errs, r.metric.is_some(), "metric", "the metric it watches");
            need(
                errs,
                r.rise.is_some_and(|x| x != 0.0 && x.is_finite()),
                "rise",
                "rise (a change per `per`; negative for a fall), not 0",
            );
            need(errs, r.per.is_some_and(|p| !p.get().is_zero()), "per", "per (the window, e.g. \"10m\")");
            need(errs, r.level.is_some(), "level", "the level it raises");
        }
        RuleType::Rain => {
            need(errs, r.metric.is_some(), "metric", "the rain metric (rain_mm)");
            need(
                errs,
                !r.windows.is_empty(),
                "windows",
                "windows, e.g. [{ within = \"3h\", mm = 50, level = \"II\" }]",
            );
            for (j, w) in r.windows.iter().enumerate() {
                if !(w.mm > 0.0 && w.mm.is_finite()) || w.within.get().is_zero() {
                    errs.push((at(&format!("windows[{j}]")), "a window needs within > 0 and mm > 0".into()));
                }
            }
        }
        RuleType::Condition => {
            need(errs, r.when.is_some(), "when", "an expression in `when`");
            need(errs, r.level.is_some(), "level", "the level it raises");
        }
    }
}

/// The check of rule `r` at `site`, with the override applied.
pub(super) fn compile_check(
    r: &RuleSpec,
    ov: Option<&Override>,
    site: &Site,
    spec: &KindSpec,
    ov_at: &dyn Fn(&str) -> String,
    trees: &mut HashMap<String, Arc<expr::Tree>>,
) -> Result<Check, (String, String)> {
    let metric_name = ov.and_then(|o| o.metric.clone()).or_else(|| r.metric.clone());
    let metric = match (&metric_name, r.kind) {
        (_, RuleType::Condition) => None,
        (Some(m), _) => {
            if declared(spec, m).is_none() {
                let known: Vec<&str> = spec.metrics.keys().map(String::as_str).collect();
                return Err((
                    ov_at("metric"),
                    format!(
                        "unknown metric {m:?} for {} sites (declared in [kinds.{}]: {})",
                        site.kind,
                        site.kind,
                        known.join(", ")
                    ),
                ));
            }
            Some(Arc::<str>::from(m.as_str()))
        }
        (None, _) => unreachable!("checked by check_shape"),
    };
    match r.kind {
        RuleType::Level => {
            let specs = ov.and_then(|o| o.thresholds.as_ref()).or(r.thresholds.as_ref()).expect("checked");
            let key = if ov.is_some_and(|o| o.thresholds.is_some()) {
                ov_at("thresholds")
            } else {
                rule_key(&ov_at("thresholds"))
            };
            let mut thresholds = [None; 4];
            for (level, t) in specs {
                let v = threshold_value(t, site).map_err(|e| (format!("{key}.{level}"), e))?;
                thresholds[usize::from(level.rank() - 1)] = Some(v);
            }
            let direction = r.direction;
            let present: Vec<(Level, f64)> =
                Level::ALL.iter().zip(thresholds).filter_map(|(l, t)| t.map(|t| (*l, t))).collect();
            for w in present.windows(2) {
                let ok = match direction {
                    Direction::Above => w[1].1 > w[0].1,
                    Direction::Below => w[1].1 < w[0].1,
                };
                if !ok {
                    let order = if direction == Direction::Above { "rise" } else { "fall" };
                    return Err((
                        key,
                        format!(
                            "thresholds at {} must {order} with the level: {} is {} but {} is {}",
                            site.id, w[0].0, w[0].1, w[1].0, w[1].1
                        ),
                    ));
                }
            }
            let deadband = ov.and_then(|o| o.deadband).or(r.deadband).unwrap_or(0.0);
            Ok(Check::Level { metric: metric.expect("level metric"), direction, thresholds, deadband })
        }
        RuleType::Rate => Ok(Check::Rate {
            metric: metric.expect("rate metric"),
            rise: r.rise.expect("checked"),
            per_ns: ns(r.per.expect("checked").get()),
            level: r.level.expect("checked"),
        }),
        RuleType::Rain => {
            let mut windows: Vec<(i64, f64, Level)> =
                r.windows.iter().map(|w| (ns(w.within.get()), w.mm, w.level)).collect();
            windows.sort_by_key(|w| w.2);
            Ok(Check::Rain {
                metric: metric.expect("rain metric"),
                input: ov.and_then(|o| o.input).or(r.input).unwrap_or(RainInput::Increment),
                windows,
                // The metric's `counter_reset` (quality control) is put in by the caller.
                reset_drop: qc::DEFAULT_COUNTER_RESET,
            })
        }
        RuleType::Condition => {
            let (text, key) = match ov.and_then(|o| o.when.as_ref()) {
                Some(w) => (w.clone(), ov_at("when")),
                None => (r.when.clone().expect("checked"), rule_key(&ov_at("when"))),
            };
            let tree = match trees.get(&text) {
                Some(t) => t.clone(),
                None => {
                    let t = Arc::new(expr::parse(&text).map_err(|e| (key.clone(), e))?);
                    trees.insert(text.clone(), t.clone());
                    t
                }
            };
            for v in expr::variables(&tree) {
                if !condition_name_ok(site.kind, spec, &v) && !site.params.contains_key(&v) {
                    return Err((
                        key,
                        format!(
                            "unknown metric {v:?} in the condition for {} sites (declared in [kinds.{}], or <metric>_per_h, or a site parameter)",
                            site.kind, site.kind
                        ),
                    ));
                }
            }
            // Types, checked here rather than found false at run time.
            let ty = |name: &str| -> Option<expr::Ty> {
                if let Some(unit) = declared(spec, name) {
                    return Some(if unit.is_empty() { expr::Ty::Flag } else { expr::Ty::Number });
                }
                (condition_name_ok(site.kind, spec, name) || site.params.contains_key(name))
                    .then_some(expr::Ty::Number)
            };
            expr::check_condition(&tree, &ty).map_err(|e| (key.clone(), format!("{e} (in {text:?})")))?;
            // The metrics whose arrival can change the outcome.
            let mut triggers: Vec<Arc<str>> = Vec::new();
            let mut pump_flags = false;
            for v in expr::variables(&tree) {
                match v.as_str() {
                    "pumps_running" | "pumps_faulted" => pump_flags = true,
                    _ => triggers.push(Arc::from(v.strip_suffix("_per_h").unwrap_or(&v))),
                }
            }
            Ok(Check::Condition {
                variables: expr::variables(&tree).iter().map(|v| Arc::from(v.as_str())).collect(),
                expr: tree,
                text: Arc::from(text.as_str()),
                level: r.level.expect("checked"),
                triggers,
                pump_flags,
            })
        }
    }
}

/// `rules[3].overrides[1].when` → `rules[3].when`: the key of the rule itself.
pub(super) fn rule_key(key: &str) -> String {
    match (key.find(".overrides["), key.rfind('.')) {
        (Some(a), Some(b)) if b > a => format!("{}{}", &key[..a], &key[b..]),
        _ => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_patterns() {
        assert!(matches_pattern("pump*_running", "pump1_running"));
        assert!(matches_pattern("pump*_running", "pump12_running"));
        assert!(!matches_pattern("pump*_running", "pump_running"));
        assert!(!matches_pattern("pump*_running", "pumpx_running"));
        assert!(matches_pattern("level_m", "level_m"));
        assert!(!matches_pattern("level_m", "level_mm"));
    }

    #[test]
    fn rule_keys_drop_the_override() {
        assert_eq!(rule_key("rules[3].overrides[1].when"), "rules[3].when");
        assert_eq!(rule_key("rules[3].when"), "rules[3].when");
    }
}
