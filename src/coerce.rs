//! Values as devices send them: each metric's type from the plan's
//! `[kinds.<kind>] metrics` (a unit of `""` makes it a flag), and the one
//! coercion every intake applies — MQTT, HTTP push, SL 651, Modbus.
//!
//! | the metric is | accepted | becomes |
//! |---|---|---|
//! | a flag | `true`/`false`, `1`/`0`, `"1"`/`"0"`, `"true"`/`"false"`, `"on"`/`"off"` | `Value::Bool` |
//! | a number | JSON numbers, numeric strings (`"12.5"`) | `Value::Float` |
//! | not declared | numbers and numeric strings; booleans and the flag words | as sent |
//!
//! Anything else is refused with what was expected and what was found, so
//! the intake counts it by cause and keeps the rest of the message. A
//! gateway's `"pump1_fault": 1` is a fault, and `"pump1_running": 1` counts
//! as running in the plan's conditions.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use crate::reading::Value;

/// What a metric holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Number,
    /// `true`/`false` (device flags: running, fault, online).
    Flag,
}

impl MetricType {
    /// From a unit of `[kinds.<kind>] metrics`: `""` is a flag.
    pub fn of_unit(unit: &str) -> MetricType {
        if unit.is_empty() {
            MetricType::Flag
        } else {
            MetricType::Number
        }
    }

    /// For messages: "a number", "a flag (…)".
    pub fn expected(self) -> &'static str {
        match self {
            MetricType::Number => "a number",
            MetricType::Flag => "a flag (true/false, 1/0, on/off)",
        }
    }
}

/// The metric types of one kind of site: exact names and `*` patterns
/// (`pump*_running`, the `*` standing for digits).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricTypes {
    exact: HashMap<Arc<str>, MetricType>,
    /// (before the `*`, after it, type)
    patterns: Vec<(Box<str>, Box<str>, MetricType)>,
}

impl MetricTypes {
    /// From `(name or pattern, unit)` as declared in plan.toml.
    pub fn from_units<'a>(metrics: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut t = MetricTypes::default();
        for (name, unit) in metrics {
            let ty = MetricType::of_unit(unit);
            match name.split_once('*') {
                None => {
                    t.exact.insert(Arc::from(name), ty);
                }
                Some((pre, post)) => t.patterns.push((pre.into(), post.into(), ty)),
            }
        }
        t
    }

    /// The type of a declared metric; `None` for one the kind does not declare.
    pub fn get(&self, metric: &str) -> Option<MetricType> {
        if let Some(t) = self.exact.get(metric) {
            return Some(*t);
        }
        self.patterns.iter().find(|(pre, post, _)| matches_pattern(pre, post, metric)).map(|(_, _, t)| *t)
    }
}

/// `pre` + digits + `post`.
fn matches_pattern(pre: &str, post: &str, name: &str) -> bool {
    name.len() > pre.len() + post.len()
        && name.starts_with(pre)
        && name.ends_with(post)
        && name[pre.len()..name.len() - post.len()].bytes().all(|b| b.is_ascii_digit())
}

/// A value as it came in, before its metric's type is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw<'a> {
    Number(f64),
    Bool(bool),
    Text(&'a str),
}

impl Raw<'_> {
    /// For messages: "a number", "a boolean", "a string".
    pub fn found(&self) -> &'static str {
        match self {
            Raw::Number(_) => "a number",
            Raw::Bool(_) => "a boolean",
            Raw::Text(_) => "a string",
        }
    }
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum CoerceError {
    /// Not finite (NaN, ±∞, or out of range).
    NonFinite,
    /// Not what the metric holds.
    WrongType { expected: &'static str, found: String },
}

fn flag_word(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("on") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t.eq_ignore_ascii_case("off") || t == "0" {
        Some(false)
    } else {
        None
    }
}

fn number_text(s: &str) -> Option<f64> {
    let t = s.trim();
    // Rust's parser takes "inf" and "NaN": refused below as not finite.
    t.parse::<f64>().ok().filter(|_| !t.is_empty())
}

fn finite(v: f64) -> Result<f64, CoerceError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(CoerceError::NonFinite)
    }
}

fn quoted(s: &str) -> String {
    let mut t: String = s.chars().take(32).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    format!("{t:?}")
}

/// The value a device sent, as its metric holds it (`None`: not declared).
pub fn coerce(ty: Option<MetricType>, raw: Raw<'_>) -> Result<Value, CoerceError> {
    match (ty, raw) {
        (Some(MetricType::Flag), Raw::Bool(b)) => Ok(Value::Bool(b)),
        (Some(MetricType::Flag), Raw::Number(n)) => match n {
            _ if n == 1.0 => Ok(Value::Bool(true)),
            _ if n == 0.0 => Ok(Value::Bool(false)),
            _ => Err(CoerceError::WrongType {
                expected: MetricType::Flag.expected(),
                found: format!("the number {n}"),
            }),
        },
        (Some(MetricType::Flag), Raw::Text(s)) => {
            flag_word(s).map(Value::Bool).ok_or_else(|| CoerceError::WrongType {
                expected: MetricType::Flag.expected(),
                found: format!("the text {}", quoted(s)),
            })
        }
        (_, Raw::Number(n)) => finite(n).map(Value::Float),
        (Some(MetricType::Number), Raw::Bool(_)) => {
            Err(CoerceError::WrongType { expected: MetricType::Number.expected(), found: "a boolean".into() })
        }
        (None, Raw::Bool(b)) => Ok(Value::Bool(b)),
        (Some(MetricType::Number), Raw::Text(s)) => match number_text(s) {
            Some(v) => finite(v).map(Value::Float),
            None => Err(CoerceError::WrongType {
                expected: MetricType::Number.expected(),
                found: format!("the text {}", quoted(s)),
            }),
        },
        (None, Raw::Text(s)) => match (number_text(s), flag_word(s)) {
            (Some(v), _) => finite(v).map(Value::Float),
            (None, Some(b)) => Ok(Value::Bool(b)),
            (None, None) => Err(CoerceError::WrongType {
                expected: "a number or a flag",
                found: format!("the text {}", quoted(s)),
            }),
        },
    }
}

/// A number from a field protocol (SL 651, Modbus registers) for a metric
/// of type `ty`: a flag metric takes 0 and 1.
pub fn number(ty: Option<MetricType>, v: f64) -> Result<Value, CoerceError> {
    coerce(ty, Raw::Number(v))
}

/// A flag from a field protocol (a Modbus coil or bit) for a metric of type
/// `ty`: refused for a number metric, as a JSON boolean would be.
pub fn flag(ty: Option<MetricType>, b: bool) -> Result<Value, CoerceError> {
    coerce(ty, Raw::Bool(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> MetricTypes {
        MetricTypes::from_units([
            ("forebay_level_m", "m"),
            ("pump*_running", ""),
            ("pump*_fault", ""),
            ("online", ""),
        ])
    }

    #[test]
    fn types_from_units_and_patterns() {
        let t = types();
        assert_eq!(t.get("forebay_level_m"), Some(MetricType::Number));
        assert_eq!(t.get("pump1_running"), Some(MetricType::Flag));
        assert_eq!(t.get("pump12_fault"), Some(MetricType::Flag));
        assert_eq!(t.get("pump_fault"), None, "the * is at least one digit");
        assert_eq!(t.get("pumpx_fault"), None);
        assert_eq!(t.get("vendor_x"), None);
    }

    #[test]
    fn flags_as_devices_send_them() {
        let f = Some(MetricType::Flag);
        for (raw, want) in [
            (Raw::Bool(true), true),
            (Raw::Bool(false), false),
            (Raw::Number(1.0), true),
            (Raw::Number(0.0), false),
            (Raw::Text("1"), true),
            (Raw::Text("0"), false),
            (Raw::Text("true"), true),
            (Raw::Text("False"), false),
            (Raw::Text(" on "), true),
            (Raw::Text("OFF"), false),
        ] {
            assert_eq!(coerce(f, raw), Ok(Value::Bool(want)), "{raw:?}");
        }
        for raw in [Raw::Number(2.0), Raw::Number(0.5), Raw::Text("yes"), Raw::Text(""), Raw::Text("1.0")] {
            let e = coerce(f, raw).unwrap_err();
            assert!(matches!(e, CoerceError::WrongType { .. }), "{raw:?}: {e:?}");
        }
    }

    #[test]
    fn numbers_as_devices_send_them() {
        let n = Some(MetricType::Number);
        assert_eq!(coerce(n, Raw::Number(12.5)), Ok(Value::Float(12.5)));
        assert_eq!(coerce(n, Raw::Text("12.5")), Ok(Value::Float(12.5)));
        assert_eq!(coerce(n, Raw::Text(" -3 ")), Ok(Value::Float(-3.0)));
        assert_eq!(coerce(n, Raw::Number(f64::NAN)), Err(CoerceError::NonFinite));
        assert_eq!(coerce(n, Raw::Text("inf")), Err(CoerceError::NonFinite));
        assert_eq!(
            coerce(n, Raw::Text("abc")),
            Err(CoerceError::WrongType { expected: "a number", found: "the text \"abc\"".into() })
        );
        assert!(coerce(n, Raw::Bool(true)).is_err(), "a flag is not a depth");
    }

    #[test]
    fn undeclared_metrics_keep_what_was_sent() {
        assert_eq!(coerce(None, Raw::Number(3.0)), Ok(Value::Float(3.0)));
        assert_eq!(coerce(None, Raw::Bool(true)), Ok(Value::Bool(true)));
        assert_eq!(coerce(None, Raw::Text("7")), Ok(Value::Float(7.0)), "a number before a flag word");
        assert_eq!(coerce(None, Raw::Text("on")), Ok(Value::Bool(true)));
        assert!(coerce(None, Raw::Text("abc")).is_err());
    }

    #[test]
    fn field_protocols() {
        assert_eq!(number(Some(MetricType::Flag), 1.0), Ok(Value::Bool(true)));
        assert!(number(Some(MetricType::Flag), 3.0).is_err());
        assert_eq!(number(None, 3.0), Ok(Value::Float(3.0)));
        assert!(flag(Some(MetricType::Number), true).is_err());
        assert_eq!(flag(Some(MetricType::Flag), true), Ok(Value::Bool(true)));
        assert_eq!(flag(None, false), Ok(Value::Bool(false)));
    }
}
