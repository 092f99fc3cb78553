//! Reading InfluxDB line protocol back (for `replay` of exported data): the
//! inverse of `line_protocol`, with the same escaping rules.

use std::borrow::Cow;

/// A field value as line protocol writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

/// One parsed line; names borrow from the input unless they had escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub measurement: Cow<'a, str>,
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub fields: Vec<(Cow<'a, str>, FieldValue)>,
    pub ts: Option<i64>,
}

impl Line<'_> {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }
}

/// `\x` → `x`, borrowing when there is nothing to unescape.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().unwrap_or('\\'));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn field_value(raw: &str) -> Result<FieldValue, String> {
    if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or_else(|| format!("unterminated string {raw:?}"))?;
        let mut s = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => s.push('\n'),
                    Some(n) => s.push(n),
                    None => s.push('\\'),
                }
            } else {
                s.push(c);
            }
        }
        return Ok(FieldValue::Str(s));
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Bool(false)),
        _ => {}
    }
    if let Some(i) = raw.strip_suffix('i') {
        return i.parse().map(FieldValue::Int).map_err(|_| format!("bad integer {raw:?}"));
    }
    if let Some(u) = raw.strip_suffix('u') {
        return u.parse().map(FieldValue::UInt).map_err(|_| format!("bad unsigned integer {raw:?}"));
    }
    raw.parse().map(FieldValue::Float).map_err(|_| format!("bad field value {raw:?}"))
}

/// Parses one line; `Ok(None)` for blank lines and comments (`#`, as in
/// `influx_inspect export`'s `# DML` headers).
pub fn parse_line(line: &str) -> Result<Option<Line<'_>>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let series_end = raw_until(line, ' ', false);
    let series = &line[..series_end];
    let rest = line[series_end..].trim_start_matches(' ');

    let m_end = raw_until(series, ',', false);
    let measurement = unescape(&series[..m_end]);
    let mut tags = Vec::new();
    let mut t = &series[m_end..];
    while let Some(x) = t.strip_prefix(',') {
        let end = raw_until(x, ',', false);
        let pair = &x[..end];
        let eq = raw_until(pair, '=', false);
        if eq == pair.len() {
            return Err(format!("tag without '=' in {line:?}"));
        }
        tags.push((unescape(&pair[..eq]), unescape(&pair[eq + 1..])));
        t = &x[end..];
    }

    let f_end = raw_until(rest, ' ', true);
    let (mut f, ts_raw) = (&rest[..f_end], rest[f_end..].trim());
    let mut fields = Vec::new();
    while !f.is_empty() {
        let end = raw_until(f, ',', true);
        let pair = &f[..end];
        let eq = raw_until(pair, '=', false);
        if eq == pair.len() {
            return Err(format!("field without '=' in {line:?}"));
        }
        fields.push((unescape(&pair[..eq]), field_value(&pair[eq + 1..])?));
        f = f.get(end + 1..).unwrap_or("");
    }
    if fields.is_empty() {
        return Err(format!("no fields in {line:?}"));
    }
    let ts = if ts_raw.is_empty() {
        None
    } else {
        Some(ts_raw.parse::<i64>().map_err(|_| format!("bad timestamp {ts_raw:?}"))?)
    };
    Ok(Some(Line { measurement, tags, fields, ts }))
}

/// Index of the first unescaped `stop` (outside quoted field values when
/// `quotes`), or the length. A quote opens a string only where a field's
/// value starts (right after `=`): a field key may hold a quote itself
/// (found by tests/fuzz.rs).
fn raw_until(s: &str, stop: char, quotes: bool) -> usize {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut after_eq = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            after_eq = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if quotes && (in_quotes || after_eq) => in_quotes = !in_quotes,
            c if c == stop && !in_quotes => return i,
            _ => {}
        }
        after_eq = c == '=' && !in_quotes;
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::line_protocol::{self, Field};

    fn one(s: &str) -> Line<'_> {
        parse_line(s).unwrap().unwrap()
    }

    #[test]
    fn a_telemetry_line() {
        let l = one("telemetry,kind=waterlogging,site=CD-JS-01,street=chengdong water_depth_cm=12.5,pump1_running=true 1784613900000000000");
        assert_eq!(l.measurement, "telemetry");
        assert_eq!(l.tag("site"), Some("CD-JS-01"));
        assert_eq!(l.tag("street"), Some("chengdong"));
        assert_eq!(
            l.fields,
            [
                ("water_depth_cm".into(), FieldValue::Float(12.5)),
                ("pump1_running".into(), FieldValue::Bool(true))
            ]
        );
        assert_eq!(l.ts, Some(1_784_613_900_000_000_000));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        assert_eq!(parse_line("# DML").unwrap(), None);
        assert_eq!(parse_line("# CONTEXT-DATABASE: flood").unwrap(), None);
        assert_eq!(parse_line("   ").unwrap(), None);
    }

    #[test]
    fn every_value_type() {
        let l = one(r#"m a=1i,b=2u,c=-3.5,d=F,e="say \"hi\", ok",f=1e3"#);
        assert_eq!(
            l.fields,
            [
                ("a".into(), FieldValue::Int(1)),
                ("b".into(), FieldValue::UInt(2)),
                ("c".into(), FieldValue::Float(-3.5)),
                ("d".into(), FieldValue::Bool(false)),
                ("e".into(), FieldValue::Str("say \"hi\", ok".into())),
                ("f".into(), FieldValue::Float(1000.0)),
            ]
        );
        assert_eq!(l.ts, None);
    }

    #[test]
    fn what_the_encoder_writes_reads_back() {
        let mut s = String::new();
        line_protocol::line(
            &mut s,
            "m e,a",
            &[("t k", "v,=x"), ("street", "城东街道")],
            [("f=1", Field::Float(0.1)), ("s", Field::Str("a \"b\" \\ c"))],
            -5,
        );
        let l = one(&s);
        assert_eq!(l.measurement, "m e,a");
        assert_eq!(l.tags, [("t k".into(), "v,=x".into()), ("street".into(), "城东街道".into())]);
        assert_eq!(
            l.fields,
            [("f=1".into(), FieldValue::Float(0.1)), ("s".into(), FieldValue::Str("a \"b\" \\ c".into()))]
        );
        assert_eq!(l.ts, Some(-5));
    }

    #[test]
    fn errors_are_explained() {
        assert!(parse_line("m").unwrap_err().contains("field"));
        assert!(parse_line("m a=").unwrap_err().contains("bad field value"));
        assert!(parse_line("m a=1 soon").unwrap_err().contains("bad timestamp"));
        assert!(parse_line("m a=\"open").unwrap_err().contains("unterminated"));
    }
}
