//! An SL 651-2014 remote station (RTU) for the tests: its own encoder of
//! HEX/BCD frames, written from the standard's layout and independent of
//! floodguard's `frame.rs`, over a plain TCP socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use chrono::{Datelike, NaiveDateTime, Timelike};

/// CRC-16/MODBUS, bit by bit (reflected 0xA001, init 0xFFFF).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

fn bcd2(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

/// `YYMMDDhhmmss` (6 B) or `YYMMDDhhmm` (5 B), BCD.
pub fn bcd_time(t: NaiveDateTime, with_seconds: bool) -> Vec<u8> {
    let mut v =
        vec![bcd2(t.year() as u32 % 100), bcd2(t.month()), bcd2(t.day()), bcd2(t.hour()), bcd2(t.minute())];
    if with_seconds {
        v.push(bcd2(t.second()));
    }
    v
}

/// An element: identifier, data definition (bytes << 3 | decimals), the
/// value in BCD (a leading FF for negatives).
pub fn element(id: u8, bytes: u8, decimals: u8, value: f64) -> Vec<u8> {
    let mut out = vec![id, bytes << 3 | decimals];
    let scaled = (value.abs() * 10f64.powi(decimals.into())).round() as u64;
    let digits = if value < 0.0 { (bytes - 1) * 2 } else { bytes * 2 };
    let text = format!("{scaled:0width$}", width = digits as usize);
    assert_eq!(text.len(), digits as usize, "{value} does not fit {bytes} bytes");
    if value < 0.0 {
        out.push(0xFF);
    }
    for pair in text.as_bytes().chunks(2) {
        out.push((pair[0] - b'0') << 4 | (pair[1] - b'0'));
    }
    out
}

/// A 5-minute block: DRP (`F4 60`, 12 × 1 B, 0.1 mm) or DRZ1 (`F5 C0`,
/// 12 × 2 B, 0.01 m), plain hex.
pub fn block(id: u8, values: &[f64]) -> Vec<u8> {
    assert_eq!(values.len(), 12);
    match id {
        0xF4 => {
            let mut v = vec![0xF4, 0x60];
            v.extend(values.iter().map(|x| (x * 10.0).round() as u8));
            v
        }
        _ => {
            let mut v = vec![id, 0xC0];
            for x in values {
                v.extend(((x * 100.0).round() as u16).to_be_bytes());
            }
            v
        }
    }
}

/// One station.
pub struct Rtu {
    pub centre: u8,
    pub station: [u8; 5],
    pub password: u16,
    /// `P` rain, `H` river.
    pub class: u8,
}

impl Rtu {
    /// A report body: serial, send time, station, one group per
    /// (observation time, elements).
    pub fn body(&self, serial: u16, sent: NaiveDateTime, groups: &[(NaiveDateTime, Vec<u8>)]) -> Vec<u8> {
        let mut b = serial.to_be_bytes().to_vec();
        b.extend(bcd_time(sent, true));
        b.extend([0xF1, 0xF1]);
        b.extend(self.station);
        b.push(self.class);
        for (observed, elements) in groups {
            b.extend([0xF0, 0xF0]);
            b.extend(bcd_time(*observed, false));
            b.extend(elements);
        }
        b
    }

    /// Packet `number` of `total` of an M3 transfer: SYN, 3 bytes of
    /// total/number (12 bits each, counted in the length), ETB — ETX on the
    /// last.
    pub fn packet(&self, function: u8, total: u16, number: u16, part: &[u8]) -> Vec<u8> {
        let mut f = vec![0x7E, 0x7E, self.centre];
        f.extend(self.station);
        f.extend(self.password.to_be_bytes());
        f.push(function);
        f.extend(((part.len() + 3) as u16 & 0x0FFF).to_be_bytes());
        f.push(0x16);
        f.extend([(total >> 4) as u8, ((total & 0x0F) << 4 | number >> 8) as u8, number as u8]);
        f.extend(part);
        f.push(if number == total { 0x03 } else { 0x17 });
        let crc = crc16(&f);
        f.extend(crc.to_be_bytes());
        f
    }

    /// An uplink HEX frame around `body`, ended by ETX.
    pub fn frame(&self, function: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0x7E, 0x7E, self.centre];
        f.extend(self.station);
        f.extend(self.password.to_be_bytes());
        f.push(function);
        f.extend((body.len() as u16 & 0x0FFF).to_be_bytes());
        f.push(0x02);
        f.extend(body);
        f.push(0x03);
        let crc = crc16(&f);
        f.extend(crc.to_be_bytes());
        f
    }

    /// The M2 confirmation the standard asks of the centre for an uplink of
    /// `function` and `serial`, sent at `sent`: downlink, station first.
    pub fn expected_confirmation(&self, function: u8, serial: u16, sent: NaiveDateTime) -> Vec<u8> {
        self.expected_reply(function, serial, sent, 0x04)
    }

    /// The same, ended by `end` (`04` EOT releases the link, `1B` ESC keeps it).
    pub fn expected_reply(&self, function: u8, serial: u16, sent: NaiveDateTime, end: u8) -> Vec<u8> {
        let mut f = vec![0x7E, 0x7E];
        f.extend(self.station);
        f.push(self.centre);
        f.extend(self.password.to_be_bytes());
        f.push(function);
        f.extend([0x80, 0x08]);
        f.push(0x02);
        f.extend(serial.to_be_bytes());
        f.extend(bcd_time(sent, true));
        f.push(end);
        let crc = crc16(&f);
        f.extend(crc.to_be_bytes());
        f
    }
}

/// A TCP link to the central station.
pub struct Link {
    pub stream: TcpStream,
}

impl Link {
    pub fn connect(port: u16) -> std::io::Result<Link> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(Link { stream })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next reply frame (a downlink confirmation: 25 bytes for a HEX
    /// M2 reply), or None when nothing comes within `wait`.
    pub fn reply(&mut self, wait: Duration) -> Option<Vec<u8>> {
        self.reply_of(25, wait)
    }

    /// The next `len` bytes, or None when they do not come within `wait`.
    pub fn reply_of(&mut self, len: usize, wait: Duration) -> Option<Vec<u8>> {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < buf.len() {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return None,
                Ok(n) => got += n,
                Err(_) => return None,
            }
        }
        Some(buf)
    }
}

/// The send time (YYMMDDhhmmss) in a reply, as a local time.
pub fn reply_time(reply: &[u8]) -> NaiveDateTime {
    let d = |i: usize| u32::from(reply[i] >> 4) * 10 + u32::from(reply[i] & 0x0F);
    chrono::NaiveDate::from_ymd_opt(2000 + d(16) as i32, d(17), d(18))
        .and_then(|day| day.and_hms_opt(d(19), d(20), d(21)))
        .expect("a send time in the reply")
}
