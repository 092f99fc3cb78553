//! SL 651-2014 frames: parse from a byte stream, build for replies and tests.
//!
//! HEX/BCD frame: `7E 7E` | centre 1 B | station 5 B (downlink: station,
//! then centre) | password 2 B | function 1 B | 4 bits direction (`0` up,
//! `8` down) + 12 bits body length | `02` STX, or `16` SYN + 3 B packet
//! total/number (12 + 12 bits, counted in the body length) for M3 | body |
//! end character | CRC-16/MODBUS of everything from the first `7E` through
//! the end character, high byte first.
//!
//! ASCII frame: `01` SOH, the same header fields as hex digits (centre 2,
//! station 10, password 4, function 2, direction + length 4), STX (or SYN +
//! 6 digits of packet total/number), the body as text, the end character,
//! the CRC as 4 hex digits. The body length counts characters.
//!
//! [`next_frame`] takes bytes as they come from a stream; every way a frame
//! can be wrong is a [`FrameError`] with a stable [`cause`](FrameError::cause)
//! for the metrics.

use super::element::{self, Message, Time};

pub const SOH: u8 = 0x01;
pub const STX: u8 = 0x02;
pub const SYN: u8 = 0x16;

/// The smallest HEX frame: header with STX, no body, end, CRC.
const HEX_HEAD: usize = 14;
/// The ASCII header through STX.
const ASCII_HEAD: usize = 24;
/// Bodies are at most 12 bits long.
pub const MAX_BODY: usize = 0x0FFF;

/// Label for elements outside the standard's table ([`Message::unknown_elements`]):
/// counted, the frame is fine.
pub const UNKNOWN_ELEMENT: &str = "unknown_element";

/// Why bytes were not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{skipped} bytes before a start marker")]
    Garbage { skipped: usize },
    #[error("frame ends inside the {0}")]
    Truncated(&'static str),
    #[error("bad length: {0}")]
    BadLength(&'static str),
    #[error("direction nibble {0:X} is neither 0 (up) nor 8 (down)")]
    BadDirection(u8),
    #[error("control character {found:02X} where {expected} belongs")]
    BadControl { expected: &'static str, found: u8 },
    #[error("CRC {sent:04X} sent, {computed:04X} computed")]
    BadCrc { sent: u16, computed: u16 },
    #[error("{0} is not BCD")]
    BadBcd(&'static str),
    #[error("ASCII {0} malformed")]
    BadAscii(&'static str),
    #[error("packet {number} of {total}")]
    BadPacket { total: u16, number: u16 },
}

impl FrameError {
    /// Every cause, for pre-registering the counters.
    pub const CAUSES: [&'static str; 9] = [
        "garbage",
        "truncated",
        "bad_length",
        "bad_direction",
        "bad_control",
        "bad_crc",
        "bad_bcd",
        "bad_ascii",
        "bad_packet",
    ];

    /// The label of this error in the decode-error counter.
    pub fn cause(&self) -> &'static str {
        match self {
            FrameError::Garbage { .. } => "garbage",
            FrameError::Truncated(_) => "truncated",
            FrameError::BadLength(_) => "bad_length",
            FrameError::BadDirection(_) => "bad_direction",
            FrameError::BadControl { .. } => "bad_control",
            FrameError::BadCrc { .. } => "bad_crc",
            FrameError::BadBcd(_) => "bad_bcd",
            FrameError::BadAscii(_) => "bad_ascii",
            FrameError::BadPacket { .. } => "bad_packet",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Station → centre.
    Up,
    /// Centre → station (station address first).
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Hex,
    Ascii,
}

/// The end character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// `03`: end of the message.
    Etx,
    /// `17`: more packets follow (M3).
    Etb,
    /// `04`: reply, release the link.
    Eot,
    /// `1B`: reply, keep the link (the station stays online).
    Esc,
    /// `05`: a query from the centre.
    Enq,
    /// `06`: positive acknowledgement (M3).
    Ack,
    /// `15`: negative acknowledgement, send again (M3).
    Nak,
}

impl End {
    pub fn byte(self) -> u8 {
        match self {
            End::Etx => 0x03,
            End::Etb => 0x17,
            End::Eot => 0x04,
            End::Esc => 0x1B,
            End::Enq => 0x05,
            End::Ack => 0x06,
            End::Nak => 0x15,
        }
    }

    pub fn from_byte(b: u8) -> Option<End> {
        [End::Etx, End::Etb, End::Eot, End::Esc, End::Enq, End::Ack, End::Nak]
            .into_iter()
            .find(|e| e.byte() == b)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub encoding: Encoding,
    /// The centre's address (1–255; 0 is seen in the field).
    pub centre: u8,
    /// The station's address as sent (BCD digits or hex).
    pub station: [u8; 5],
    pub password: u16,
    pub function: u8,
    pub direction: Direction,
    /// M3: (total, number), from 1.
    pub packet: Option<(u16, u16)>,
    pub end: End,
}

impl Header {
    /// The station address as its 10 hex digits, e.g. `"0012345678"`.
    pub fn station_hex(&self) -> String {
        self.station.iter().map(|b| format!("{b:02X}")).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Message(Message),
    /// The body of an M3 packet after its packet number, kept whole: only the
    /// reassembled body is a message ([`parse_message`]).
    Packet(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub header: Header,
    pub body: Body,
}

impl Frame {
    pub fn message(&self) -> Option<&Message> {
        match &self.body {
            Body::Message(m) => Some(m),
            Body::Packet(_) => None,
        }
    }
}

const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// CRC-16/MODBUS (reflected 0xA001, init 0xFFFF).
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC16.checksum(bytes)
}

/// A start marker at `i`: `Some(true)` complete, `Some(false)` maybe (the
/// buffer ends first), `None` not one. SOH counts only when the header
/// after it is hex digits and STX/SYN, so stray `01` bytes stay garbage.
fn start_at(buf: &[u8], i: usize) -> Option<bool> {
    match buf[i] {
        0x7E => match buf.get(i + 1) {
            None => Some(false),
            Some(0x7E) => Some(true),
            Some(_) => None,
        },
        SOH => {
            let tail = &buf[i + 1..buf.len().min(i + ASCII_HEAD)];
            let ok = tail.iter().enumerate().all(|(k, &b)| match k {
                0..=21 => b.is_ascii_hexdigit(),
                _ => b == STX || b == SYN,
            });
            ok.then_some(tail.len() == ASCII_HEAD - 1)
        }
        _ => None,
    }
}

fn resync(buf: &[u8]) -> usize {
    (1..buf.len()).find(|&i| start_at(buf, i).is_some()).unwrap_or(buf.len())
}

/// Errors in the framing (resynchronise at the next start marker) or in a
/// frame whose CRC is right (skip the frame).
enum Failure {
    Framing(FrameError),
    Content(FrameError, usize),
}

impl From<FrameError> for Failure {
    fn from(e: FrameError) -> Self {
        Failure::Framing(e)
    }
}

/// The next frame in bytes read from a stream: `Ok(Some((frame, used)))`,
/// `Ok(None)` when more bytes are needed, or `Err((error, skip))` with how
/// many bytes to drop before calling again (bytes before a start marker are
/// [`FrameError::Garbage`]; a frame that fails is dropped up to the next
/// start marker, or whole when only its content is wrong).
pub fn next_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, (FrameError, usize)> {
    let Some(start) = (0..buf.len()).find(|&i| start_at(buf, i).is_some()) else {
        return if buf.is_empty() {
            Ok(None)
        } else {
            Err((FrameError::Garbage { skipped: buf.len() }, buf.len()))
        };
    };
    if start > 0 {
        return Err((FrameError::Garbage { skipped: start }, start));
    }
    let result = match (start_at(buf, 0), buf[0]) {
        (Some(true), SOH) => ascii_frame(buf),
        (Some(true), _) => hex_frame(buf),
        _ => return Ok(None),
    };
    result.map_err(|f| match f {
        Failure::Framing(e) => (e, resync(buf)),
        Failure::Content(e, used) => (e, used),
    })
}

/// Exactly one frame.
pub fn parse(buf: &[u8]) -> Result<Frame, FrameError> {
    match next_frame(buf) {
        Ok(Some((frame, used))) if used == buf.len() => Ok(frame),
        Ok(Some(_)) => Err(FrameError::BadLength("bytes after the frame")),
        Ok(None) => Err(FrameError::Truncated("frame")),
        Err((e, _)) => Err(e),
    }
}

/// The message of a body: a frame's, or an M3 transfer's reassembled.
pub fn parse_message(header: &Header, body: &[u8]) -> Result<Message, FrameError> {
    let elements = header.direction == Direction::Up && element::is_report(header.function);
    match header.encoding {
        Encoding::Hex => element::parse_hex(header.function, elements, body),
        Encoding::Ascii => element::parse_ascii(header.function, elements, body),
    }
}

fn direction(nibble: u8) -> Result<Direction, FrameError> {
    match nibble {
        0 => Ok(Direction::Up),
        8 => Ok(Direction::Down),
        n => Err(FrameError::BadDirection(n)),
    }
}

fn packet(total: u16, number: u16) -> Result<Option<(u16, u16)>, FrameError> {
    if total == 0 || number == 0 || number > total {
        return Err(FrameError::BadPacket { total, number });
    }
    Ok(Some((total, number)))
}

/// Checks end and CRC, then reads the body; `head` is where the body starts.
fn finish(
    buf: &[u8],
    mut header: Header,
    head: usize,
    len: usize,
    crc_len: usize,
) -> Result<Option<(Frame, usize)>, Failure> {
    let total = head + len + 1 + crc_len;
    if buf.len() < total {
        return Ok(None);
    }
    let end_byte = buf[head + len];
    header.end =
        End::from_byte(end_byte).ok_or(FrameError::BadControl { expected: "end", found: end_byte })?;
    let computed = crc16(&buf[..head + len + 1]);
    let crc = &buf[head + len + 1..total];
    let sent = match header.encoding {
        Encoding::Hex => Some(u16::from_be_bytes([crc[0], crc[1]])),
        Encoding::Ascii => element::hex_value(crc).map(|v| v as u16),
    };
    let sent = sent.ok_or(FrameError::BadAscii("CRC"))?;
    if sent != computed {
        return Err(FrameError::BadCrc { sent, computed }.into());
    }
    let skip = if header.packet.is_some() {
        if header.encoding == Encoding::Hex {
            3
        } else {
            6
        }
    } else {
        0
    };
    let body = &buf[head + skip..head + len];
    let body = match header.packet {
        Some(_) => Body::Packet(body.to_vec()),
        None => Body::Message(parse_message(&header, body).map_err(|e| Failure::Content(e, total))?),
    };
    Ok(Some((Frame { header, body }, total)))
}

fn hex_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, Failure> {
    if buf.len() < HEX_HEAD {
        return Ok(None);
    }
    let h = &buf[..HEX_HEAD];
    let dir = direction(h[11] >> 4)?;
    let (centre, station) = match dir {
        Direction::Up => (h[2], &h[3..8]),
        Direction::Down => (h[7], &h[2..7]),
    };
    let len = usize::from(h[11] & 0x0F) << 8 | usize::from(h[12]);
    let packet = match h[13] {
        STX => None,
        SYN if len < 3 => return Err(FrameError::BadLength("SYN without packet number").into()),
        SYN if buf.len() < HEX_HEAD + 3 => return Ok(None),
        SYN => {
            let p = &buf[HEX_HEAD..HEX_HEAD + 3];
            packet(
                u16::from(p[0]) << 4 | u16::from(p[1] >> 4),
                u16::from(p[1] & 0x0F) << 8 | u16::from(p[2]),
            )?
        }
        found => return Err(FrameError::BadControl { expected: "STX or SYN", found }.into()),
    };
    let header = Header {
        encoding: Encoding::Hex,
        centre,
        station: station.try_into().expect("5 bytes"),
        password: u16::from_be_bytes([h[8], h[9]]),
        function: h[10],
        direction: dir,
        packet,
        end: End::Etx,
    };
    finish(buf, header, HEX_HEAD, len, 2)
}

fn ascii_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, Failure> {
    // start_at checked 22 hex digits and STX/SYN.
    let field = |a: usize, b: usize| element::hex_value(&buf[a..b]).unwrap_or(0);
    let station =
        |a: usize| element::hex_bytes(&buf[a..a + 10]).and_then(|s| s.try_into().ok()).unwrap_or([0; 5]);
    let dirlen = field(19, 23);
    let dir = direction((dirlen >> 12) as u8)?;
    let (centre, station) = match dir {
        Direction::Up => (field(1, 3) as u8, station(3)),
        Direction::Down => (field(11, 13) as u8, station(1)),
    };
    let len = (dirlen & 0x0FFF) as usize;
    let packet = match buf[23] {
        SYN if len < 6 => return Err(FrameError::BadLength("SYN without packet number").into()),
        SYN if buf.len() < ASCII_HEAD + 6 => return Ok(None),
        SYN => {
            let digits = |a: usize| element::hex_value(&buf[a..a + 3]).ok_or(FrameError::BadAscii("packet"));
            packet(digits(ASCII_HEAD)? as u16, digits(ASCII_HEAD + 3)? as u16)?
        }
        _ => None,
    };
    let header = Header {
        encoding: Encoding::Ascii,
        centre,
        station,
        password: field(13, 17) as u16,
        function: field(17, 19) as u8,
        direction: dir,
        packet,
        end: End::Etx,
    };
    finish(buf, header, ASCII_HEAD, len, 4)
}

/// A frame in HEX/BCD (whatever `header.encoding` says). Panics when the
/// body is longer than 4095 bytes (12 bits).
pub fn build_hex(frame: &Frame) -> Vec<u8> {
    let h = &frame.header;
    let mut body = Vec::new();
    if let Some((total, number)) = h.packet {
        body.extend([(total >> 4) as u8, ((total & 0x0F) << 4 | number >> 8) as u8, number as u8]);
    }
    match &frame.body {
        Body::Message(m) => element::build_hex(m, &mut body),
        Body::Packet(p) => body.extend(p),
    }
    assert!(body.len() <= MAX_BODY, "SL 651 body of {} bytes", body.len());
    let mut out = vec![0x7E, 0x7E];
    match h.direction {
        Direction::Up => (out.push(h.centre), out.extend(h.station)),
        Direction::Down => (out.extend(h.station), out.push(h.centre)),
    };
    out.extend(h.password.to_be_bytes());
    out.push(h.function);
    let dir: u16 = if h.direction == Direction::Down { 0x8000 } else { 0 };
    out.extend((dir | body.len() as u16).to_be_bytes());
    out.push(if h.packet.is_some() { SYN } else { STX });
    out.extend(body);
    out.push(h.end.byte());
    let crc = crc16(&out);
    out.extend(crc.to_be_bytes());
    out
}

/// An ASCII frame around `body` (text; no packet number).
fn build_ascii(h: &Header, body: &[u8]) -> Vec<u8> {
    let station = h.station.iter().map(|b| format!("{b:02X}")).collect::<String>();
    let (first, second) = match h.direction {
        Direction::Up => (format!("{:02X}", h.centre), station),
        Direction::Down => (station, format!("{:02X}", h.centre)),
    };
    let dir: u16 = if h.direction == Direction::Down { 0x8000 } else { 0 };
    let len = dir | body.len().min(MAX_BODY) as u16;
    let head = format!("{first}{second}{:04X}{:02X}{len:04X}", h.password, h.function);
    let mut out = vec![SOH];
    out.extend(head.bytes());
    out.push(STX);
    out.extend(body);
    out.push(h.end.byte());
    let crc = crc16(&out);
    out.extend(format!("{crc:04X}").bytes());
    out
}

/// The reply to an uplink frame (M2 confirmation, M4 answer to a report):
/// downlink, the same function code, password and encoding, body = `serial`
/// and `sent`, ended by `end`: [`End::Eot`] releases the link, [`End::Esc`]
/// keeps it. Public implementations differ on `sent` (the uplink's send time
/// echoed or the centre's clock); either is accepted by stations.
pub fn confirmation(uplink: &Header, serial: u16, sent: Time, end: End) -> Vec<u8> {
    let header = Header { direction: Direction::Down, packet: None, end, ..uplink.clone() };
    match uplink.encoding {
        Encoding::Hex => {
            let message = Message { serial, sent, station: None, groups: vec![], rest: vec![], dropped: 0 };
            build_hex(&Frame { header, body: Body::Message(message) })
        }
        Encoding::Ascii => {
            let t = format!(
                "{:02}{:02}{:02}{:02}{:02}{:02}",
                sent.year % 100,
                sent.month,
                sent.day,
                sent.hour,
                sent.minute,
                sent.second
            );
            build_ascii(&header, format!("{serial:04X} {t}").as_bytes())
        }
    }
}

/// M3: asks the station to send packet `number` again — a HEX downlink with
/// the NAK (`15`) end character and that packet's number after SYN.
/// Unverified: the standard's text on the NAK body was not available to
/// check, so the body is the confirmation's (serial and send time).
pub fn nak(uplink: &Header, serial: u16, sent: Time, number: u16) -> Vec<u8> {
    let total = uplink.packet.map_or(number, |(total, _)| total);
    let header =
        Header { direction: Direction::Down, packet: Some((total, number)), end: End::Nak, ..uplink.clone() };
    let mut body = serial.to_be_bytes().to_vec();
    element::write_time(&mut body, &sent, 6);
    build_hex(&Frame { header, body: Body::Packet(body) })
}
