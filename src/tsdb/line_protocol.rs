//! InfluxDB line protocol, written by hand because it is four escaping rules
//! and a number format; tested rule by rule like Vector's encoder.
//!
//! ```text
//! telemetry,kind=waterlogging,site=CD-JS-01,street=chengdong water_depth_cm=12.5 1784613900000000000
//! ```
//! - measurement: `,` and space escaped;
//! - tag keys, tag values, field keys: `,`, `=` and space escaped;
//! - string field values: in double quotes, `"` and `\` escaped;
//! - floats in the shortest form that reads back exactly; integers with `i`;
//! - timestamps in nanoseconds.
//!
//! Line protocol has no way to carry a newline or other control character in
//! a name or tag: they become spaces (floodguard's ids and metric names never
//! contain them; this keeps a bad name from splitting a line in two).

use crate::reading::TimestampNs;

/// A field value as line protocol knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str(&'a str),
}

impl From<crate::reading::Value> for Field<'_> {
    fn from(v: crate::reading::Value) -> Self {
        match v {
            crate::reading::Value::Float(f) => Field::Float(f),
            crate::reading::Value::Bool(b) => Field::Bool(b),
        }
    }
}

fn push_escaped(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            // An escaped space: a space is special in every position.
            out.push_str("\\ ");
        } else {
            out.push(c);
        }
    }
}

/// Appends a measurement name.
pub fn measurement(out: &mut String, name: &str) {
    push_escaped(out, name, &[',', ' ']);
}

/// Appends a tag key, tag value or field key.
pub fn key(out: &mut String, name: &str) {
    push_escaped(out, name, &[',', '=', ' ']);
}

/// Appends `,key=value` for one tag. Empty tag values are not allowed by
/// InfluxDB: such a tag is left out.
pub fn tag(out: &mut String, k: &str, v: &str) {
    if v.is_empty() {
        return;
    }
    out.push(',');
    key(out, k);
    out.push('=');
    key(out, v);
}

/// Appends a field value.
pub fn field_value(out: &mut String, v: Field<'_>) {
    match v {
        Field::Float(f) => {
            let mut buf = ryu::Buffer::new();
            // Finite by construction (the decoder refuses NaN and ±inf);
            // a non-finite value would make InfluxDB refuse the whole batch.
            debug_assert!(f.is_finite());
            out.push_str(if f.is_finite() { buf.format_finite(f) } else { "0" });
        }
        Field::Int(i) => {
            out.push_str(itoa::Buffer::new().format(i));
            out.push('i');
        }
        Field::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Field::Str(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\n' => out.push_str("\\n"),
                    c if c.is_control() => out.push(' '),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
}

/// Appends the fields (`k=v,k=v`), a space, the timestamp and a newline.
/// `fields` must not be empty.
pub fn fields_and_time<'a>(
    out: &mut String,
    fields: impl IntoIterator<Item = (&'a str, Field<'a>)>,
    ts: TimestampNs,
) {
    out.push(' ');
    let mut first = true;
    for (k, v) in fields {
        if !first {
            out.push(',');
        }
        first = false;
        key(out, k);
        out.push('=');
        field_value(out, v);
    }
    debug_assert!(!first, "a line needs at least one field");
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(ts));
    out.push('\n');
}

/// Writes one whole line: measurement, tags (sorted by the caller for
/// InfluxDB's benefit), fields and timestamp.
pub fn line<'a>(
    out: &mut String,
    name: &str,
    tags: &[(&str, &str)],
    fields: impl IntoIterator<Item = (&'a str, Field<'a>)>,
    ts: TimestampNs,
) {
    measurement(out, name);
    for (k, v) in tags {
        tag(out, k, v);
    }
    fields_and_time(out, fields, ts);
}

/// Appends the readings of one message — one site, one instant — as one
/// `telemetry` line. `series` is the site's `telemetry,kind=…,site=…,street=…`.
pub fn telemetry(out: &mut String, series: &str, readings: &[crate::reading::Reading]) {
    let Some(first) = readings.first() else {
        return;
    };
    out.push_str(series);
    fields_and_time(out, readings.iter().map(|r| (&*r.metric, Field::from(r.value))), first.ts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_of_one_message_make_one_line() {
        use crate::reading::{Reading, Value};
        let r = |m: &str, v| Reading { site: "BH-BZ-01".into(), metric: m.into(), value: v, ts: 42 };
        let mut s = String::new();
        telemetry(
            &mut s,
            "telemetry,site=BH-BZ-01",
            &[r("forebay_level_m", Value::Float(1.85)), r("pump2_fault", Value::Bool(true))],
        );
        assert_eq!(s, "telemetry,site=BH-BZ-01 forebay_level_m=1.85,pump2_fault=true 42\n");
        telemetry(&mut s, "x", &[]);
        assert_eq!(s.lines().count(), 1, "no readings, no line");
    }

    fn one(name: &str, tags: &[(&str, &str)], fields: &[(&str, Field<'_>)], ts: i64) -> String {
        let mut s = String::new();
        line(&mut s, name, tags, fields.iter().copied(), ts);
        s
    }

    fn fv(v: Field<'_>) -> String {
        let mut s = String::new();
        field_value(&mut s, v);
        s
    }

    #[test]
    fn a_plain_line() {
        assert_eq!(
            one(
                "telemetry",
                &[("kind", "waterlogging"), ("site", "CD-JS-01"), ("street", "chengdong")],
                &[("water_depth_cm", Field::Float(12.5)), ("battery_v", Field::Float(3.61))],
                1_784_613_900_000_000_000
            ),
            "telemetry,kind=waterlogging,site=CD-JS-01,street=chengdong water_depth_cm=12.5,battery_v=3.61 1784613900000000000\n"
        );
    }

    #[test]
    fn measurement_escapes_comma_and_space_only() {
        let mut s = String::new();
        measurement(&mut s, "a b,c=d");
        assert_eq!(s, "a\\ b\\,c=d");
    }

    #[test]
    fn tag_keys_and_values_escape_comma_equals_space() {
        let mut s = String::new();
        tag(&mut s, "k ey", "v,a=l ue");
        assert_eq!(s, ",k\\ ey=v\\,a\\=l\\ ue");
    }

    #[test]
    fn empty_tag_values_are_left_out() {
        assert_eq!(one("m", &[("a", ""), ("b", "x")], &[("f", Field::Bool(true))], 1), "m,b=x f=true 1\n");
    }

    #[test]
    fn field_keys_escape_like_tags() {
        assert_eq!(one("m", &[], &[("a b=c,d", Field::Int(1))], 5), "m a\\ b\\=c\\,d=1i 5\n");
    }

    #[test]
    fn unicode_passes_through() {
        assert_eq!(
            one("telemetry", &[("street", "城东街道")], &[("水位", Field::Float(1.0))], 7),
            "telemetry,street=城东街道 水位=1.0 7\n"
        );
    }

    #[test]
    fn control_characters_never_split_a_line() {
        let s = one("m\n", &[("t", "a\nb")], &[("f\r", Field::Float(1.0))], 1);
        assert_eq!(s.matches('\n').count(), 1, "{s:?}");
        assert_eq!(s, "m\\ ,t=a\\ b f\\ =1.0 1\n");
    }

    #[test]
    fn floats_are_shortest_round_trip() {
        assert_eq!(fv(Field::Float(12.5)), "12.5");
        assert_eq!(fv(Field::Float(3.0)), "3.0");
        assert_eq!(fv(Field::Float(0.1)), "0.1");
        assert_eq!(fv(Field::Float(-0.25)), "-0.25");
        assert_eq!(fv(Field::Float(1e300)), "1e300");
        assert_eq!(fv(Field::Float(1.5e-7)), "1.5e-7");
        assert_eq!(fv(Field::Float(224.87)), "224.87");
        for f in [0.1 + 0.2, 1.0 / 3.0, 4.2e21, f64::MIN_POSITIVE, f64::MAX] {
            assert_eq!(fv(Field::Float(f)).parse::<f64>().unwrap(), f);
        }
    }

    #[test]
    fn integers_carry_the_i_suffix() {
        assert_eq!(fv(Field::Int(0)), "0i");
        assert_eq!(fv(Field::Int(-42)), "-42i");
        assert_eq!(fv(Field::Int(i64::MAX)), "9223372036854775807i");
    }

    #[test]
    fn booleans() {
        assert_eq!(fv(Field::Bool(true)), "true");
        assert_eq!(fv(Field::Bool(false)), "false");
    }

    #[test]
    fn strings_are_quoted_with_quote_and_backslash_escaped() {
        assert_eq!(fv(Field::Str("plain")), "\"plain\"");
        assert_eq!(fv(Field::Str("say \"hi\"")), "\"say \\\"hi\\\"\"");
        assert_eq!(fv(Field::Str("C:\\path")), "\"C:\\\\path\"");
        assert_eq!(fv(Field::Str("a,b=c d")), "\"a,b=c d\"");
        assert_eq!(fv(Field::Str("人民路 Ⅲ级")), "\"人民路 Ⅲ级\"");
    }

    #[test]
    fn newlines_in_strings_are_escaped() {
        assert_eq!(fv(Field::Str("line1\nline2\tx")), "\"line1\\nline2 x\"");
    }

    #[test]
    fn negative_and_zero_timestamps() {
        assert_eq!(one("m", &[], &[("f", Field::Int(1))], 0), "m f=1i 0\n");
        assert_eq!(one("m", &[], &[("f", Field::Int(1))], -1), "m f=1i -1\n");
    }

    #[test]
    fn several_fields_are_comma_separated_in_order() {
        let s =
            one("m", &[], &[("b", Field::Bool(false)), ("a", Field::Float(2.0)), ("s", Field::Str("x"))], 9);
        assert_eq!(s, "m b=false,a=2.0,s=\"x\" 9\n");
    }

    #[test]
    fn equals_in_measurement_is_literal() {
        let s = one("a=b", &[], &[("f", Field::Int(1))], 1);
        assert_eq!(s, "a=b f=1i 1\n");
    }
}
