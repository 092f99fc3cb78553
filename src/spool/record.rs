//! The on-disk record of the spool: a checksummed frame around one payload.
//!
//! ```text
//! offset  size  field
//! 0       2     magic 0xF1 0x0D
//! 2       4     payload length, u32 little-endian
//! 6       4     CRC-32 of the next 8 bytes and the payload, little-endian
//! 10      8     append time, ms since the epoch, i64 little-endian
//! 18      len   payload
//! ```
//! A crash can leave the last frame half-written (a torn tail): its length
//! runs past the end of the file or its checksum fails. Readers detect this
//! and skip to the next frame that checks out.

/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = [0xF1, 0x0D];
/// Bytes before the payload.
pub const HEADER: usize = 18;
/// Payloads above this are refused when appending; a length above it when
/// reading means the frame is damaged.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Appends one frame to `out`.
pub fn encode(out: &mut Vec<u8>, appended_at_ms: i64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let time = appended_at_ms.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&time);
    crc.update(payload);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&time);
    out.extend_from_slice(payload);
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole frame that checks out; `size` is header + payload.
    Record { appended_at_ms: i64, payload: &'a [u8], size: usize },
    /// The buffer ends before the frame does: read more, or it is a torn tail.
    Incomplete,
    /// Not a valid frame.
    Corrupt,
}

/// Parses the frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Frame<'_> {
    if buf.len() < HEADER {
        // A prefix of a header can't be judged yet, unless its magic is wrong.
        return if buf.iter().zip(MAGIC.iter()).any(|(a, b)| a != b) {
            Frame::Corrupt
        } else {
            Frame::Incomplete
        };
    }
    if buf[0..2] != MAGIC {
        return Frame::Corrupt;
    }
    let len = u32::from_le_bytes(buf[2..6].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Frame::Corrupt;
    }
    let size = HEADER + len;
    if buf.len() < size {
        return Frame::Incomplete;
    }
    let want = u32::from_le_bytes(buf[6..10].try_into().expect("4 bytes"));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[10..size]);
    if crc.finalize() != want {
        return Frame::Corrupt;
    }
    let appended_at_ms = i64::from_le_bytes(buf[10..18].try_into().expect("8 bytes"));
    Frame::Record { appended_at_ms, payload: &buf[HEADER..size], size }
}

/// After a corrupt frame at the start of `buf`: the offset of the next frame
/// that checks out, or of a frame that may yet (it runs past the end of
/// `buf`); `None` if there is neither.
pub fn resync(buf: &[u8]) -> Option<usize> {
    (1..buf.len()).find(|&i| buf[i] == MAGIC[0] && !matches!(parse(&buf[i..]), Frame::Corrupt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: i64, p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(&mut v, t, p);
        v
    }

    #[test]
    fn round_trip() {
        let f = frame(1_784_613_900_000, b"telemetry,site=A x=1 1\n");
        assert_eq!(f.len(), HEADER + 23);
        assert_eq!(
            parse(&f),
            Frame::Record {
                appended_at_ms: 1_784_613_900_000,
                payload: b"telemetry,site=A x=1 1\n",
                size: f.len()
            }
        );
    }

    #[test]
    fn an_empty_payload_is_a_record() {
        let f = frame(5, b"");
        assert_eq!(parse(&f), Frame::Record { appended_at_ms: 5, payload: b"", size: HEADER });
    }

    #[test]
    fn every_truncation_is_incomplete_never_a_record() {
        let f = frame(7, b"abcdefgh");
        for cut in 0..f.len() {
            assert_eq!(parse(&f[..cut]), Frame::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let f = frame(7, b"abcdefgh");
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x40;
            assert!(!matches!(parse(&g), Frame::Record { .. }), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn zeros_are_corrupt() {
        assert_eq!(parse(&[0u8; 64]), Frame::Corrupt);
        assert_eq!(parse(&[0u8; 3]), Frame::Corrupt);
    }

    #[test]
    fn resync_finds_the_next_good_frame() {
        let mut buf = frame(1, b"first");
        buf[12] ^= 1; // damage the first
        let second_at = buf.len() + 3;
        buf.extend_from_slice(&[0xF1, 0x00, 0xF1]); // noise with a false magic byte
        buf.extend_from_slice(&frame(2, b"second"));
        assert_eq!(parse(&buf), Frame::Corrupt);
        assert_eq!(resync(&buf), Some(second_at));
        assert_eq!(resync(&frame(3, b"x")[..5]), None);
        // A frame cut off by the end of the buffer may still be good.
        let mut cut = vec![0u8, 1, 2];
        cut.extend_from_slice(&frame(4, b"long payload")[..10]);
        assert_eq!(resync(&cut), Some(3));
    }
}
