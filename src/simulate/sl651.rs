//! `floodguard simulate --sl651 HOST:PORT`: the district's SL 651 stations
//! (sites with `sl651_station`) as RTUs. Each station dials the central
//! station over TCP and reports what the scenario's messages say of it:
//! a 加报 (`33`) when rain fell, a timed report (`32`) otherwise, and an
//! hourly report (`34`) with the cumulative rain and the voltage on each
//! hour. SL 651 observation times are whole minutes, so a station's
//! messages within one minute go as one report (rain summed, the rest the
//! latest). Each frame waits for its confirmation (M2) and is sent again
//! up to twice when none comes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeZone, Timelike};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::model::{Field, Message};
use crate::ingest::sl651::element::{Element, Group, Message as Report, Station, Time, Value};
use crate::ingest::sl651::frame::{self, Body, Direction, Encoding, End, Frame, Header};

/// Element and data definition (bytes << 3 | decimals) for a metric.
fn element_of(metric: &str) -> Option<(u16, u8)> {
    Some(match metric {
        "rain_mm" => (0x20, 3 << 3 | 1),
        "rain_total_mm" => (0x26, 4 << 3 | 1),
        "level_m" => (0x39, 4 << 3 | 3),
        "battery_v" => (0x38, 2 << 3 | 2),
        _ => return None,
    })
}

/// One station's link and its report in the making.
struct Rtu {
    station: [u8; 5],
    class: u8,
    serial: u16,
    link: Option<TcpStream>,
    /// The minute being gathered (local), and its values by metric.
    minute: Option<chrono::NaiveDateTime>,
    values: Vec<(String, f64)>,
    rain_total: f64,
    last_hour: Option<u32>,
    battery: Option<f64>,
}

/// What the stations sent.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Sent {
    pub frames: u64,
    pub confirmed: u64,
}

/// The RTUs of the stations in `stations` (site id → 10 hex digits).
pub struct Rtus {
    addr: String,
    centre: u8,
    tz: chrono_tz::Tz,
    rtus: HashMap<String, Rtu>,
    pub sent: Sent,
}

fn station_bytes(hex: &str) -> Option<[u8; 5]> {
    let mut a = [0u8; 5];
    for (i, b) in a.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(a)
}

impl Rtus {
    /// `stations`: (site id, station hex, class letter).
    pub fn new(
        addr: &str,
        centre: u8,
        tz: chrono_tz::Tz,
        stations: &[(String, String, u8)],
    ) -> Result<Rtus, String> {
        let mut rtus = HashMap::new();
        for (site, hex, class) in stations {
            let station = station_bytes(hex).ok_or_else(|| format!("site {site}: sl651_station {hex:?}"))?;
            rtus.insert(
                site.clone(),
                Rtu {
                    station,
                    class: *class,
                    serial: 0,
                    link: None,
                    minute: None,
                    values: Vec::new(),
                    rain_total: 0.0,
                    last_hour: None,
                    battery: None,
                },
            );
        }
        Ok(Rtus { addr: addr.to_string(), centre, tz, rtus, sent: Sent::default() })
    }

    /// Whether a site's messages go over SL 651.
    pub fn has(&self, site: &str) -> bool {
        self.rtus.contains_key(site)
    }

    /// Takes a message of a station, stamped `ts_ms`; reports the minute
    /// before once a later one begins.
    pub async fn take(&mut self, m: &Message, ts_ms: i64) -> Result<(), String> {
        let local = self.tz.timestamp_millis_opt(ts_ms).single().ok_or("bad time")?.naive_local();
        let minute = local.with_second(0).and_then(|t| t.with_nanosecond(0)).ok_or("bad time")?;
        let due = match self.rtus.get(&m.site) {
            Some(r) => r.minute.is_some_and(|t| t != minute),
            None => return Ok(()),
        };
        if due {
            self.flush(&m.site.clone()).await?;
        }
        let r = self.rtus.get_mut(&m.site).expect("a station");
        r.minute = Some(minute);
        for (k, v) in &m.fields {
            let Field::Num(x) = v else { continue };
            if element_of(k).is_none() {
                continue;
            }
            if k == "battery_v" {
                r.battery = Some(*x);
            }
            match r.values.iter_mut().find(|(name, _)| name == k) {
                Some((_, acc)) if k == "rain_mm" => *acc += x,
                Some((_, acc)) => *acc = *x,
                None => r.values.push((k.clone(), *x)),
            }
        }
        Ok(())
    }

    /// Reports what every station has gathered.
    pub async fn finish(&mut self) -> Result<(), String> {
        let sites: Vec<String> = self.rtus.keys().cloned().collect();
        for s in sites {
            self.flush(&s).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, site: &str) -> Result<(), String> {
        let (centre, tz) = (self.centre, self.tz);
        let r = self.rtus.get_mut(site).expect("a station");
        let Some(minute) = r.minute.take() else { return Ok(()) };
        let values = std::mem::take(&mut r.values);
        let rain = values.iter().find(|(k, _)| k == "rain_mm").map_or(0.0, |(_, v)| *v);
        r.rain_total += rain;
        let mut elements: Vec<Element> = values
            .iter()
            .filter_map(|(k, v)| {
                element_of(k).map(|(id, def)| Element { id, def, value: Value::Number(Some(*v)) })
            })
            .collect();
        if rain > 0.0 && !values.iter().any(|(k, _)| k == "rain_total_mm") {
            elements.push(Element { id: 0x26, def: 4 << 3 | 1, value: Value::Number(Some(r.rain_total)) });
        }
        let function = if rain > 0.0 { 0x33 } else { 0x32 };
        let mut frames = vec![(function, minute, elements)];
        if r.last_hour.is_some_and(|h| h != minute.hour()) && minute.minute() == 0 {
            let mut hourly =
                vec![Element { id: 0x26, def: 4 << 3 | 1, value: Value::Number(Some(r.rain_total)) }];
            if let Some(b) = r.battery {
                hourly.push(Element { id: 0x38, def: 2 << 3 | 2, value: Value::Number(Some(b)) });
            }
            frames.push((0x34, minute, hourly));
        }
        r.last_hour = Some(minute.hour());
        for (function, observed, elements) in frames {
            r.serial = r.serial.wrapping_add(1);
            let now = chrono::Utc::now().with_timezone(&tz).naive_local();
            let header = Header {
                encoding: Encoding::Hex,
                centre,
                station: r.station,
                password: 0,
                function,
                direction: Direction::Up,
                packet: None,
                end: End::Etx,
            };
            let report = Report {
                serial: r.serial,
                sent: Time::from_naive(now),
                station: Some(Station { address: r.station, class: r.class }),
                groups: vec![Group { observed: Some(Time::from_naive(observed)), elements }],
                rest: vec![],
                dropped: 0,
            };
            let bytes = frame::build_hex(&Frame { header, body: Body::Message(report) });
            self.sent.frames += 1;
            if send(&self.addr, &mut r.link, &bytes).await {
                self.sent.confirmed += 1;
            }
        }
        Ok(())
    }
}

/// Sends a frame, waits for a downlink reply; again up to twice, dialling
/// anew when the link broke. Whether it was confirmed.
async fn send(addr: &str, link: &mut Option<TcpStream>, bytes: &[u8]) -> bool {
    for _ in 0..3 {
        if link.is_none() {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => *link = Some(s),
                _ => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let s = link.as_mut().expect("a link");
        if s.write_all(bytes).await.is_err() {
            *link = None;
            continue;
        }
        let mut buf = Vec::with_capacity(64);
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let mut chunk = [0u8; 64];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Ok(Some((f, _))) = frame::next_frame(&buf) {
                    return f.header.direction == Direction::Down;
                }
            }
        })
        .await;
        match got {
            Ok(true) => return true,
            Ok(false) => *link = None,
            Err(_) => {}
        }
    }
    false
}

/// The station class letter for a site kind (`P` rain, `H` river).
pub fn class_of(kind: crate::config::Kind) -> u8 {
    match kind {
        crate::config::Kind::RainGauge => b'P',
        crate::config::Kind::River => b'H',
        crate::config::Kind::PumpStation => b'D',
        _ => b'H',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_take_the_elements_floodguard_maps_back() {
        for metric in ["rain_mm", "rain_total_mm", "level_m", "battery_v"] {
            let (id, _) = element_of(metric).unwrap();
            let back = crate::ingest::sl651::map::DEFAULTS.iter().find(|(e, _)| *e == id).unwrap().1;
            assert_eq!(back, metric);
        }
        assert!(element_of("sensor_fault").is_none());
    }
}
