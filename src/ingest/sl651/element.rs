//! The body of an SL 651 message: serial, send time, station, observation
//! groups and their elements, in HEX/BCD and in ASCII.
//!
//! A HEX/BCD element is an identifier (1 byte; `FF nn` for the user
//! extension range), a data definition byte (high 5 bits: byte count, low 3
//! bits: decimal places) and the value: BCD digits, all `F` nibbles for a
//! missing value, a leading `FF` byte for a negative one. The blocks DRP
//! (`F4`: 12 × 1 byte, 0.1 mm, `FF` invalid) and DRZ1–8 (`F5`–`FC`: 12 × 2
//! bytes, 0.01 m, `FFFF` invalid) are plain binary of a fixed size: some
//! stations send another definition byte (`F5 5C` in the Fujian samples), so
//! the size comes from the standard, not from that byte. Per the note to the
//! standard's element table a block's values are at the group's observation
//! time, +5 min, …, +55 min.
//!
//! Identifiers outside the standard's table (vendor ids, `FF nn`) keep their
//! bytes as [`Value::Raw`] and are counted by [`Message::unknown_elements`].

use super::frame::FrameError;

/// Element identifiers the intake maps by default (ASCII names in brackets).
pub mod id {
    /// Time-step code of a uniform-interval report (DRxnn).
    pub const STEP: u16 = 0x04;
    /// Current rainfall (PJ), mm.
    pub const PJ: u16 = 0x20;
    /// Cumulative rainfall (PT), mm.
    pub const PT: u16 = 0x26;
    /// Supply voltage (VT), V.
    pub const VT: u16 = 0x38;
    /// River level (Z), m.
    pub const Z: u16 = 0x39;
    /// Status and alarm word (ZT), 32 bits.
    pub const ZT: u16 = 0x45;
    /// 5-minute rainfall of one hour (DRP), 12 values, mm.
    pub const DRP: u16 = 0xF4;
    /// 5-minute levels of one hour (DRZ1; DRZ2–8 are `F6`–`FC`), 12 values, m.
    pub const DRZ1: u16 = 0xF5;
    /// Manual-set data (`F2 F2` + text to the end of the body).
    pub const MANUAL: u16 = 0xF2;
    /// Picture (`F3 F3` + picture bytes to the end of the body).
    pub const PICTURE: u16 = 0xF3;
}

/// A calendar time as the station's clock sent it, without a time zone
/// (the caller applies it); `year` is 2000 + the two digits sent. The fields
/// are the decoded BCD digits, not checked for a real date: see [`Time::naive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Time {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// 0 in observation times (sent to the minute).
    pub second: u8,
}

impl Time {
    /// The time as a chrono value; `None` when the station sent no real date.
    pub fn naive(&self) -> Option<chrono::NaiveDateTime> {
        chrono::NaiveDate::from_ymd_opt(self.year.into(), self.month.into(), self.day.into())?.and_hms_opt(
            self.hour.into(),
            self.minute.into(),
            self.second.into(),
        )
    }

    /// From a chrono value; only years 2000–2099 can be sent.
    pub fn from_naive(t: chrono::NaiveDateTime) -> Time {
        use chrono::{Datelike, Timelike};
        let n = |v: u32| v as u8;
        Time {
            year: t.year().clamp(2000, 2099) as u16,
            month: n(t.month()),
            day: n(t.day()),
            hour: n(t.hour()),
            minute: n(t.minute()),
            second: n(t.second()),
        }
    }

    fn fields(&self) -> [u8; 6] {
        [(self.year % 100) as u8, self.month, self.day, self.hour, self.minute, self.second]
    }
}

/// The time step of a uniform-interval report (element `04`, DDHHmm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeStep {
    pub days: u8,
    pub hours: u8,
    pub minutes: u8,
}

impl TimeStep {
    pub fn total_minutes(&self) -> u32 {
        (u32::from(self.days) * 24 + u32::from(self.hours)) * 60 + u32::from(self.minutes)
    }
}

/// The value of one element.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A BCD number; `None` when the station sent all `F` (no value).
    Number(Option<f64>),
    /// The values of one element in a uniform-interval report (`31`), one
    /// per time step from the group's observation time.
    Series(Vec<Option<f64>>),
    /// DRP or DRZ1–8: 12 values, 5 minutes apart from the group's time.
    Block5min(Vec<Option<f64>>),
    /// Element `04`: the step of the following series.
    Step(TimeStep),
    /// ZT: the status and alarm bits as sent.
    Status(u32),
    /// Bytes not read: identifiers outside the standard's table, manual-set
    /// text, pictures.
    Raw(Vec<u8>),
}

/// One element: identifier (`0xFFnn` for the extension `FF nn`), the data
/// definition byte as sent (in ASCII frames only the decimals, low 3 bits),
/// and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub id: u16,
    pub def: u8,
    pub value: Value,
}

impl Element {
    /// Byte count from the data definition.
    pub fn size(&self) -> usize {
        usize::from(self.def >> 3)
    }

    /// Decimal places from the data definition.
    pub fn decimals(&self) -> u8 {
        self.def & 7
    }

    /// The ASCII identifier (`PJ`, `Z`, `VT`, …) when the table has one.
    pub fn name(&self) -> Option<&'static str> {
        NAMES.iter().find(|(i, _)| *i == self.id).map(|(_, n)| *n)
    }

    /// Whether the identifier is in the standard's element table.
    pub fn is_standard(&self) -> bool {
        matches!(self.id, 0x01..=0x75 | 0xF2..=0xFC)
    }
}

/// `F1 F1`: the station's address (again) and its class (`P` rain, `H`
/// river, `K` reservoir, `Z` gate, `D` pump station …, the ASCII letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Station {
    pub address: [u8; 5],
    pub class: u8,
}

/// Elements after one `F0 F0` observation time (`None` for elements sent
/// before any, such as manual-set data).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub observed: Option<Time>,
    pub elements: Vec<Element>,
}

/// A message body (everything but M3 packets).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub serial: u16,
    pub sent: Time,
    pub station: Option<Station>,
    pub groups: Vec<Group>,
    /// Bytes after the send time that are not read as elements: downlink
    /// bodies and function codes other than reports (`30`–`3A`).
    pub rest: Vec<u8>,
    /// ASCII elements with an identifier this codec does not know, dropped.
    pub dropped: u16,
}

impl Message {
    /// Elements outside the standard's table (kept raw) plus dropped ones:
    /// counted as `unknown_element`, the frame itself is fine.
    pub fn unknown_elements(&self) -> usize {
        let raw = self.groups.iter().flat_map(|g| &g.elements).filter(|e| !e.is_standard()).count();
        raw + usize::from(self.dropped)
    }
}

/// Whether a function code's uplink body carries station and elements.
pub fn is_report(function: u8) -> bool {
    (0x30..=0x3A).contains(&function)
}

/// ASCII identifiers of the common elements (the standard's element table).
#[rustfmt::skip]
const NAMES: &[(u16, &str)] = &[
    (0x01, "AC"), (0x02, "AI"), (0x03, "C"), (0x05, "DT"), (0x06, "ED"), (0x07, "EJ"),
    (0x08, "FL"), (0x09, "GH"), (0x0E, "H"), (0x0F, "HW"), (0x10, "M10"), (0x11, "M20"),
    (0x12, "M30"), (0x13, "M40"), (0x14, "M50"), (0x15, "M60"), (0x16, "M80"), (0x17, "M100"),
    (0x18, "MST"), (0x1A, "P1"), (0x1B, "P2"), (0x1C, "P3"), (0x1D, "P6"), (0x1E, "P12"),
    (0x1F, "PD"), (0x20, "PJ"), (0x21, "PN01"), (0x22, "PN05"), (0x23, "PN10"), (0x24, "PN30"),
    (0x25, "PR"), (0x26, "PT"), (0x27, "Q"), (0x30, "QA"), (0x33, "UC"), (0x34, "UE"),
    (0x35, "US"), (0x36, "VA"), (0x37, "VJ"), (0x38, "VT"), (0x39, "Z"), (0x3A, "ZB"),
    (0x3B, "ZU"), (0x45, "ZT"), (0xF4, "DRP"), (0xF5, "DRZ1"), (0xF6, "DRZ2"), (0xF7, "DRZ3"),
    (0xF8, "DRZ4"), (0xF9, "DRZ5"), (0xFA, "DRZ6"), (0xFB, "DRZ7"), (0xFC, "DRZ8"),
];

fn bcd_byte(b: u8) -> Option<u8> {
    let (h, l) = (b >> 4, b & 0x0F);
    (h < 10 && l < 10).then_some(h * 10 + l)
}

fn to_bcd(n: u8) -> u8 {
    ((n / 10 % 10) << 4) | (n % 10)
}

/// A BCD time of 5 (YYMMDDhhmm) or 6 (…ss) bytes.
pub(super) fn read_time(b: &[u8]) -> Result<Time, FrameError> {
    let mut f = [0u8; 6];
    for (slot, &byte) in f.iter_mut().zip(b) {
        *slot = bcd_byte(byte).ok_or(FrameError::BadBcd("time"))?;
    }
    let [y, month, day, hour, minute, second] = f;
    Ok(Time { year: 2000 + u16::from(y), month, day, hour, minute, second })
}

pub(super) fn write_time(out: &mut Vec<u8>, t: &Time, len: usize) {
    out.extend(t.fields()[..len].iter().map(|&v| to_bcd(v)));
}

/// An element value in BCD: all `FF` is no value, a leading `FF` byte makes
/// the digits of the remaining bytes negative. Public for identifiers the
/// codec keeps raw (`FF nn` extensions) that a mapping wants as numbers.
pub fn bcd_number(bytes: &[u8], decimals: u8) -> Result<Option<f64>, FrameError> {
    if bytes.iter().all(|&b| b == 0xFF) {
        return Ok(None);
    }
    let (negative, digits) = match bytes {
        [0xFF, rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    let mut m = 0f64;
    for &b in digits {
        m = m * 100.0 + f64::from(bcd_byte(b).ok_or(FrameError::BadBcd("value"))?);
    }
    let v = m / 10f64.powi(decimals.into());
    Ok(Some(if negative { -v } else { v }))
}

/// The inverse of [`bcd_number`] in `len` bytes (digits that do not fit are lost).
fn write_number(out: &mut Vec<u8>, v: Option<f64>, len: usize, decimals: u8) {
    let Some(v) = v else {
        out.resize(out.len() + len, 0xFF);
        return;
    };
    let negative = v < 0.0 && len > 1;
    let n = if negative { len - 1 } else { len };
    let mut m = (v.abs() * 10f64.powi(decimals.into())).round();
    let mut digits = vec![0u8; n];
    for d in digits.iter_mut().rev() {
        *d = to_bcd((m % 100.0) as u8);
        m = (m / 100.0).floor();
    }
    if negative {
        out.push(0xFF);
    }
    out.extend(digits);
}

fn block_size(id: u16) -> Option<usize> {
    match id {
        0xF4 => Some(12),
        0xF5..=0xFC => Some(24),
        _ => None,
    }
}

fn read_block(id: u16, b: &[u8]) -> Value {
    Value::Block5min(if id == 0xF4 {
        b.iter().map(|&v| (v != 0xFF).then(|| f64::from(v) / 10.0)).collect()
    } else {
        b.chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .map(|v| (v != 0xFFFF).then(|| f64::from(v) / 100.0))
            .collect()
    })
}

/// Reads the value of a HEX/BCD element; `series` for the values after a
/// time step in a uniform-interval report (until the next group or the end).
fn read_value(
    id: u16,
    len: usize,
    decimals: u8,
    b: &[u8],
    series: bool,
) -> Result<(Value, usize), FrameError> {
    let short = FrameError::Truncated("element value");
    if let Some(size) = block_size(id) {
        return Ok((read_block(id, b.get(..size).ok_or(short)?), size));
    }
    let v = b.get(..len).ok_or(short.clone())?;
    let standard = matches!(id, 0x01..=0x75);
    let value = match id {
        id::ZT if len <= 4 => Value::Status(v.iter().fold(0, |a, &x| a << 8 | u32::from(x))),
        id::STEP if len == 3 && v != [0xFF; 3] => {
            let f = |x: u8| bcd_byte(x).ok_or(FrameError::BadBcd("time step"));
            Value::Step(TimeStep { days: f(v[0])?, hours: f(v[1])?, minutes: f(v[2])? })
        }
        _ if standard && series && len > 0 => {
            let mut values = Vec::new();
            let mut pos = 0;
            while pos < b.len() && !b[pos..].starts_with(&[0xF0, 0xF0]) {
                values.push(bcd_number(b.get(pos..pos + len).ok_or(short.clone())?, decimals)?);
                pos += len;
            }
            return Ok((Value::Series(values), pos));
        }
        _ if standard => Value::Number(bcd_number(v, decimals)?),
        _ => Value::Raw(v.to_vec()),
    };
    Ok((value, len))
}

/// Parses a HEX/BCD body; `elements` is false for downlink frames and
/// functions other than reports, whose bytes after the send time stay raw.
pub(super) fn parse_hex(function: u8, elements: bool, b: &[u8]) -> Result<Message, FrameError> {
    if b.len() < 8 {
        return Err(FrameError::Truncated("serial and send time"));
    }
    let mut m = Message {
        serial: u16::from_be_bytes([b[0], b[1]]),
        sent: read_time(&b[2..8])?,
        station: None,
        groups: Vec::new(),
        rest: Vec::new(),
        dropped: 0,
    };
    let mut pos = 8;
    if !elements {
        m.rest = b[pos..].to_vec();
        return Ok(m);
    }
    if b[pos..].starts_with(&[0xF1, 0xF1]) {
        let s = b.get(pos + 2..pos + 8).ok_or(FrameError::Truncated("station"))?;
        m.station = Some(Station { address: s[..5].try_into().expect("5 bytes"), class: s[5] });
        pos += 8;
    }
    while pos < b.len() {
        let rest = &b[pos..];
        if rest.starts_with(&[0xF0, 0xF0]) {
            let t = rest.get(2..7).ok_or(FrameError::Truncated("observation time"))?;
            m.groups.push(Group { observed: Some(read_time(t)?), elements: Vec::new() });
            pos += 7;
            continue;
        }
        if m.groups.is_empty() {
            m.groups.push(Group { observed: None, elements: Vec::new() });
        }
        let group = m.groups.last_mut().expect("a group");
        let (id, def, head) = match rest {
            [a @ (0xF2 | 0xF3), b2, ..] if a == b2 => {
                let value = Value::Raw(rest[2..].to_vec());
                group.elements.push(Element { id: u16::from(*a), def: *b2, value });
                break;
            }
            [0xFF, ext, def, ..] => (0xFF00 | u16::from(*ext), *def, 3),
            [id, def, ..] => (u16::from(*id), *def, 2),
            _ => return Err(FrameError::Truncated("element")),
        };
        let series = function == 0x31
            && group.elements.iter().any(|e| matches!(e.value, Value::Step(_)))
            && !matches!(id, id::STEP | id::ZT);
        let (value, used) = read_value(id, usize::from(def >> 3), def & 7, &rest[head..], series)?;
        group.elements.push(Element { id, def, value });
        pos += head + used;
    }
    Ok(m)
}

/// Writes a message body in HEX/BCD.
pub(super) fn build_hex(m: &Message, out: &mut Vec<u8>) {
    out.extend(m.serial.to_be_bytes());
    write_time(out, &m.sent, 6);
    if let Some(s) = &m.station {
        out.extend([0xF1, 0xF1]);
        out.extend(s.address);
        out.push(s.class);
    }
    for g in &m.groups {
        if let Some(t) = &g.observed {
            out.extend([0xF0, 0xF0]);
            write_time(out, t, 5);
        }
        for e in &g.elements {
            if e.id > 0xFF {
                out.push(0xFF);
            }
            out.extend([e.id as u8, e.def]);
            let (len, dec) = (e.size(), e.decimals());
            match &e.value {
                Value::Number(v) => write_number(out, *v, len, dec),
                Value::Series(vs) => vs.iter().for_each(|v| write_number(out, *v, len, dec)),
                Value::Block5min(vs) if e.id == id::DRP => {
                    out.extend(vs.iter().map(|v| v.map_or(0xFF, |v| (v * 10.0).round() as u8)))
                }
                Value::Block5min(vs) => vs
                    .iter()
                    .for_each(|v| out.extend(v.map_or(0xFFFF, |v| (v * 100.0).round() as u16).to_be_bytes())),
                Value::Step(s) => out.extend([s.days, s.hours, s.minutes].map(to_bcd)),
                Value::Status(s) => out.extend(&s.to_be_bytes()[4 - len.min(4)..]),
                Value::Raw(r) => out.extend(r),
            }
        }
    }
    out.extend(&m.rest);
}

/// Hex digits (only: `from_str_radix` alone would take a sign) as a number.
pub(super) fn hex_value(s: &[u8]) -> Option<u32> {
    let ok = !s.is_empty() && s.len() <= 8 && s.iter().all(u8::is_ascii_hexdigit);
    ok.then(|| s.iter().fold(0, |a, &c| a << 4 | (c as char).to_digit(16).unwrap_or(0)))
}

pub(super) fn hex_bytes(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2).map(|c| hex_value(c).map(|v| v as u8)).collect()
}

fn ascii_time(s: &str) -> Result<Time, FrameError> {
    let digits = matches!(s.len(), 10 | 12) && s.bytes().all(|c| c.is_ascii_digit());
    let b = hex_bytes(s.as_bytes()).filter(|_| digits);
    read_time(&b.ok_or(FrameError::BadAscii("time"))?)
}

fn ascii_number(s: &str) -> Result<(Option<f64>, u8), FrameError> {
    if !s.is_empty() && s.bytes().all(|c| c == b'F' || c == b'f') {
        return Ok((None, 0));
    }
    let numeric = s.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+'));
    let v: f64 = s.parse().ok().filter(|_| numeric).ok_or(FrameError::BadAscii("value"))?;
    let decimals = s.split_once('.').map_or(0, |(_, f)| f.len().min(7)) as u8;
    Ok((Some(v), decimals))
}

/// Parses an ASCII body: space-separated fields. What is implemented
/// (public descriptions of the ASCII layout are thin; verified against no
/// captured ASCII frame): serial (4 hex) and send time (12 digits), as two
/// fields or one; `ST` address (10 hex) class (1 letter); `TT` YYMMDDhhmm
/// opening a group; `DRxnn` (x = D/H/N: days/hours/minutes) a time step;
/// `DRP`/`DRZn` one field of 24/48 hex digits; `ZT` 8 hex digits; other
/// identifiers of the table followed by a decimal number (all `F`: no value);
/// in a `31` report after a step, every following number of the element.
/// Unknown identifiers are dropped with the field after them and counted.
pub(super) fn parse_ascii(function: u8, elements: bool, b: &[u8]) -> Result<Message, FrameError> {
    let text = std::str::from_utf8(b).ok().filter(|t| t.is_ascii()).ok_or(FrameError::BadAscii("body"))?;
    let mut tokens = text.split_ascii_whitespace().peekable();
    let missing = FrameError::Truncated("ASCII field");
    let first = tokens.next().ok_or(missing.clone())?;
    let (serial, sent) = match first.len() {
        16 => (&first[..4], first.get(4..).unwrap_or_default()),
        _ => (first, tokens.next().ok_or(missing.clone())?),
    };
    let serial = hex_value(serial.as_bytes()).filter(|_| serial.len() == 4);
    let serial = serial.ok_or(FrameError::BadAscii("serial"))? as u16;
    let mut m = Message {
        serial,
        sent: ascii_time(sent)?,
        station: None,
        groups: Vec::new(),
        rest: Vec::new(),
        dropped: 0,
    };
    if !elements {
        m.rest = tokens.collect::<Vec<_>>().join(" ").into_bytes();
        return Ok(m);
    }
    while let Some(tok) = tokens.next() {
        let mut value = || tokens.next().ok_or(missing.clone());
        match tok {
            "ST" => {
                let address = hex_bytes(value()?.as_bytes()).and_then(|a| <[u8; 5]>::try_from(a).ok());
                let class = *value()?.as_bytes().first().unwrap_or(&0);
                m.station = Some(Station { address: address.ok_or(FrameError::BadAscii("ST"))?, class });
                continue;
            }
            "TT" => {
                m.groups.push(Group { observed: Some(ascii_time(value()?)?), elements: Vec::new() });
                continue;
            }
            _ => {}
        }
        if m.groups.is_empty() {
            m.groups.push(Group { observed: None, elements: Vec::new() });
        }
        let group = m.groups.last_mut().expect("a group");
        let step = tok.strip_prefix("DR").filter(|s| s.len() == 3).and_then(|s| {
            let n: u8 = s[1..].parse().ok()?;
            let (days, hours, minutes) = match &s[..1] {
                "D" => (n, 0, 0),
                "H" => (0, n, 0),
                "N" => (0, 0, n),
                _ => return None,
            };
            Some(TimeStep { days, hours, minutes })
        });
        if let Some(s) = step {
            group.elements.push(Element { id: id::STEP, def: 0x18, value: Value::Step(s) });
            continue;
        }
        let Some(&(id, _)) = NAMES.iter().find(|(_, n)| *n == tok) else {
            value()?;
            m.dropped = m.dropped.saturating_add(1);
            continue;
        };
        let element = if let Some(size) = block_size(id) {
            let raw = hex_bytes(value()?.as_bytes())
                .filter(|r| r.len() == size)
                .ok_or(FrameError::BadAscii("block"))?;
            Element { id, def: 0, value: read_block(id, &raw) }
        } else if id == id::ZT {
            let s = hex_value(value()?.as_bytes()).ok_or(FrameError::BadAscii("ZT"))?;
            Element { id, def: 0, value: Value::Status(s) }
        } else {
            let (first, decimals) = ascii_number(value()?)?;
            let series = function == 0x31 && group.elements.iter().any(|e| matches!(e.value, Value::Step(_)));
            if series {
                let mut values = vec![first];
                while let Some(v) = tokens.peek().and_then(|t| ascii_number(t).ok()) {
                    values.push(v.0);
                    tokens.next();
                }
                Element { id, def: decimals, value: Value::Series(values) }
            } else {
                Element { id, def: decimals, value: Value::Number(first) }
            }
        };
        group.elements.push(element);
    }
    Ok(m)
}
