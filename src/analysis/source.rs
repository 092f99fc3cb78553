//! Where an event's readings come from: InfluxDB when configured (InfluxQL
//! over `/query`: v1's database, or a v2 bucket through the v1-compatible
//! endpoint, which needs a DBRP mapping on InfluxDB 2.x), the spool
//! otherwise (spool-only daemons keep every segment), or line-protocol
//! files (`--input`, as `replay` reads them).
//!
//! The spool is read without opening it as the daemon does (no torn tail
//! is cut, nothing is written): a running daemon can keep appending.

use std::path::{Path, PathBuf};

use crate::reading::{Reading, TimestampNs, Value};
use crate::tsdb::line_parse::{parse_line, FieldValue};

/// Readings of `telemetry` in `[since, until)`, and where they came from.
pub fn load(
    config: &crate::config::Config,
    since: TimestampNs,
    until: TimestampNs,
    files: &[PathBuf],
) -> Result<(Vec<Reading>, String), String> {
    if !files.is_empty() {
        let mut all = Vec::new();
        for f in files {
            let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let rec = crate::replay::load(std::io::BufReader::new(file))
                .map_err(|e| format!("{}: {e}", f.display()))?;
            all.extend(rec.readings.into_iter().filter(|r| r.ts >= since && r.ts < until));
        }
        all.sort_by_key(|r| r.ts);
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Ok((all, names.join(", ")));
    }
    match crate::tsdb::InfluxClient::new(&config.daemon.influxdb)? {
        Some(client) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("runtime: {e}"))?;
            let body = rt.block_on(client.query(&telemetry_query(since, until)))?;
            let readings = parse_query(&body)?;
            Ok((readings, format!("InfluxDB {}", redacted(&config.daemon.influxdb.url))))
        }
        None => {
            let dir = config.data_dir().join("spool");
            let readings = read_spool(&dir, since, until)?;
            Ok((readings, format!("spool {}", dir.display())))
        }
    }
}

fn redacted(url: &str) -> String {
    crate::config::redact_url(url)
}

/// Every field of `telemetry` in `[since, until)`, a series per site.
pub fn telemetry_query(since: TimestampNs, until: TimestampNs) -> String {
    format!("SELECT * FROM \"telemetry\" WHERE time >= {since} AND time < {until} GROUP BY \"site\"")
}

/// Readings from a chunked `/query` answer (one JSON document per line,
/// times in epoch ns): each number and flag of each row; tags and strings
/// are left out.
pub fn parse_query(body: &str) -> Result<Vec<Reading>, String> {
    let mut out = Vec::new();
    let mut names: std::collections::HashMap<String, std::sync::Arc<str>> = Default::default();
    let mut intern = |s: &str| names.entry(s.to_string()).or_insert_with(|| std::sync::Arc::from(s)).clone();
    for doc in serde_json::Deserializer::from_str(body).into_iter::<serde_json::Value>() {
        let doc = doc.map_err(|e| format!("InfluxDB answer: {e}"))?;
        if let Some(e) = doc["error"].as_str() {
            return Err(format!("InfluxDB: {e}"));
        }
        for result in doc["results"].as_array().into_iter().flatten() {
            if let Some(e) = result["error"].as_str() {
                return Err(format!("InfluxDB: {e}"));
            }
            for s in result["series"].as_array().into_iter().flatten() {
                let Some(site) = s["tags"]["site"].as_str() else { continue };
                let site = intern(site);
                let columns: Vec<&str> =
                    s["columns"].as_array().into_iter().flatten().map(|c| c.as_str().unwrap_or("")).collect();
                let metrics: Vec<std::sync::Arc<str>> = columns.iter().map(|c| intern(c)).collect();
                for row in s["values"].as_array().into_iter().flatten() {
                    let Some(row) = row.as_array() else { continue };
                    let Some(ts) = row.first().and_then(|t| t.as_i64()) else { continue };
                    for (i, v) in row.iter().enumerate().skip(1) {
                        let value = match v {
                            serde_json::Value::Number(n) => match n.as_f64() {
                                Some(f) if f.is_finite() => Value::Float(f),
                                _ => continue,
                            },
                            serde_json::Value::Bool(b) => Value::Bool(*b),
                            _ => continue,
                        };
                        out.push(Reading { site: site.clone(), metric: metrics[i].clone(), value, ts });
                    }
                }
            }
        }
    }
    out.sort_by_key(|r| r.ts);
    Ok(out)
}

/// The `telemetry` readings in `[since, until)` of the spool in `dir`.
pub fn read_spool(dir: &Path, since: TimestampNs, until: TimestampNs) -> Result<Vec<Reading>, String> {
    use crate::spool::record::{parse, resync, Frame};
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for seg in segments {
        let buf = match std::fs::read(&seg) {
            Ok(b) => b,
            // Deleted by the writer meanwhile: its records are in InfluxDB.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", seg.display())),
        };
        let mut at = 0;
        while at < buf.len() {
            match parse(&buf[at..]) {
                Frame::Record { payload, size, .. } => {
                    lines(payload, since, until, &mut out);
                    at += size;
                }
                // The tail being written, or torn: the rest is not there yet.
                Frame::Incomplete => break,
                Frame::Corrupt => match resync(&buf[at..]) {
                    Some(skip) => at += skip,
                    None => break,
                },
            }
        }
    }
    out.sort_by_key(|r| r.ts);
    Ok(out)
}

fn lines(payload: &[u8], since: TimestampNs, until: TimestampNs, out: &mut Vec<Reading>) {
    let Ok(text) = std::str::from_utf8(payload) else { return };
    for line in text.lines() {
        let Ok(Some(l)) = parse_line(line) else { continue };
        if l.measurement != crate::catalog::TELEMETRY {
            continue;
        }
        let (Some(site), Some(ts)) = (l.tag("site"), l.ts) else { continue };
        if ts < since || ts >= until {
            continue;
        }
        let site: std::sync::Arc<str> = std::sync::Arc::from(site);
        for (name, v) in &l.fields {
            let value = match v {
                FieldValue::Float(f) if f.is_finite() => Value::Float(*f),
                FieldValue::Int(i) => Value::Float(*i as f64),
                FieldValue::UInt(u) => Value::Float(*u as f64),
                FieldValue::Bool(b) => Value::Bool(*b),
                _ => continue,
            };
            out.push(Reading { site: site.clone(), metric: std::sync::Arc::from(&**name), value, ts });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_answer_gives_every_number_and_flag_per_site() {
        let body = concat!(
            r#"{"results":[{"statement_id":0,"series":[{"name":"telemetry","tags":{"site":"A"},"columns":["time","kind","pump1_running","rain_mm"],"values":[[2,"rain_gauge",null,0.5],[1,"rain_gauge",true,null]],"partial":true}],"partial":true}]}"#,
            "\n",
            r#"{"results":[{"statement_id":0,"series":[{"name":"telemetry","tags":{"site":"B"},"columns":["time","rain_mm"],"values":[[3,1.25]]}]}]}"#,
            "\n"
        );
        let r = parse_query(body).unwrap();
        let got: Vec<(&str, &str, i64)> = r.iter().map(|r| (&*r.site, &*r.metric, r.ts)).collect();
        assert_eq!(got, [("A", "pump1_running", 1), ("A", "rain_mm", 2), ("B", "rain_mm", 3)]);
        assert_eq!(r[0].value, Value::Bool(true));
        assert_eq!(r[2].value, Value::Float(1.25));
        let err = parse_query(r#"{"results":[{"statement_id":0,"error":"database not found: flood"}]}"#);
        assert_eq!(err.unwrap_err(), "InfluxDB: database not found: flood");
    }

    #[test]
    fn the_spool_is_read_frame_by_frame_skipping_damage_and_the_tail_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Vec::new();
        crate::spool::record::encode(
            &mut seg,
            0,
            b"telemetry,site=A rain_mm=0.5 100\nsite_info,site=A lat=1 1\n",
        );
        seg.extend_from_slice(b"\xF1\x0Dgarbage");
        crate::spool::record::encode(&mut seg, 0, b"telemetry,site=A rain_mm=1.5,pump1_running=true 200\n");
        crate::spool::record::encode(&mut seg, 0, b"telemetry,site=A rain_mm=9 900\n");
        let mut torn = Vec::new();
        crate::spool::record::encode(&mut torn, 0, b"telemetry,site=A rain_mm=7 300\n");
        seg.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(dir.path().join("00000000000000000001.seg"), &seg).unwrap();
        std::fs::write(dir.path().join("cursor"), "1 0").unwrap();
        let r = read_spool(dir.path(), 0, 500).unwrap();
        let got: Vec<(&str, i64)> = r.iter().map(|r| (&*r.metric, r.ts)).collect();
        assert_eq!(got, [("rain_mm", 100), ("rain_mm", 200), ("pump1_running", 200)]);
    }
}
