//! A device's register map, pure: which reads to send ([`blocks`]: nearby
//! addresses of a table in as few requests as the protocol allows) and how
//! the words and bits that come back become values ([`Block::values`]).
//!
//! Numbers: `u16`/`i16` in one register, `u32`/`i32`/`f32` in two — high
//! word first (`ABCD`, Modbus's own order) or low word first (`CDAB`, as
//! many PLCs store floats) — then `raw × scale + offset`. Flags: coils,
//! discrete inputs and single bits of a register (a status word) become
//! `true`/`false`.

use std::sync::Arc;

use crate::config::{ModbusRegister, RegisterTable, RegisterType, WordOrder};
use crate::reading::Value;

/// Registers one read may ask for (function 3 and 4: 125).
pub const MAX_REGISTERS: u16 = 125;
/// Coils or discrete inputs one read may ask for (function 1 and 2: 2000).
pub const MAX_BITS: u16 = 2000;

/// How a point's value comes out of the device's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decode {
    /// A coil or a discrete input.
    Flag,
    /// Bit `n` (0 = least significant) of a 16-bit register.
    Bit(u8),
    /// A number in one or two registers: `raw × scale + offset`.
    Number { kind: RegisterType, order: WordOrder, scale: f64, offset: f64 },
}

/// One metric of the map.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: Arc<str>,
    pub table: RegisterTable,
    pub address: u16,
    pub decode: Decode,
}

impl Point {
    /// The point a checked `[[modbus.devices]]` register describes.
    pub fn from_config(r: &ModbusRegister) -> Point {
        let decode = if r.table.is_bits() {
            Decode::Flag
        } else if let Some(b) = r.bit {
            Decode::Bit(b)
        } else {
            Decode::Number {
                kind: r.kind.unwrap_or_default(),
                order: r.word_order.unwrap_or_default(),
                scale: r.scale.unwrap_or(1.0),
                offset: r.offset.unwrap_or(0.0),
            }
        };
        Point { metric: Arc::from(r.metric.as_str()), table: r.table, address: r.address, decode }
    }

    /// Registers (or bits) it takes.
    pub fn width(&self) -> u16 {
        match self.decode {
            Decode::Number { kind, .. } => kind.width(),
            Decode::Flag | Decode::Bit(_) => 1,
        }
    }

    /// Its value from `raw`, the answer to a read that started at `start`.
    pub fn value(&self, start: u16, raw: Raw<'_>) -> Result<Value, ValueError> {
        let at = usize::from(self.address - start);
        let width = usize::from(self.width());
        let short = |got: usize| ValueError::Short { wanted: at + width, got };
        match (self.decode, raw) {
            (Decode::Flag, Raw::Bits(bits)) => bits.get(at).map(|b| Value::Bool(*b)).ok_or(short(bits.len())),
            (Decode::Bit(n), Raw::Words(words)) => {
                words.get(at).map(|w| Value::Bool(w >> n & 1 == 1)).ok_or(short(words.len()))
            }
            (Decode::Number { kind, order, scale, offset }, Raw::Words(words)) => {
                let w = words.get(at..at + width).ok_or(short(words.len()))?;
                let raw = number(kind, order, w);
                let v = tidy(raw * scale + offset);
                if v.is_finite() {
                    Ok(Value::Float(v))
                } else {
                    Err(ValueError::NotFinite(raw))
                }
            }
            // A block reads one table: bits for coils and discrete inputs,
            // words for registers.
            (Decode::Flag, Raw::Words(w)) => Err(short(w.len())),
            (_, Raw::Bits(b)) => Err(short(b.len())),
        }
    }
}

/// The number in one or two registers (`words` holds exactly its width).
pub fn number(kind: RegisterType, order: WordOrder, words: &[u16]) -> f64 {
    let pair = || {
        let (hi, lo) = match order {
            WordOrder::Abcd => (words[0], words[1]),
            WordOrder::Cdab => (words[1], words[0]),
        };
        u32::from(hi) << 16 | u32::from(lo)
    };
    match kind {
        RegisterType::U16 => f64::from(words[0]),
        RegisterType::I16 => f64::from(words[0] as i16),
        RegisterType::U32 => f64::from(pair()),
        RegisterType::I32 => f64::from(pair() as i32),
        // Through its shortest decimal form: 1.23f32 is stored as 1.23,
        // not as 1.2300000190734863.
        RegisterType::F32 => {
            let f = f32::from_bits(pair());
            if f.is_finite() {
                f.to_string().parse().unwrap_or(f64::from(f))
            } else {
                f64::from(f)
            }
        }
    }
}

/// Rounds away the binary noise of a decimal scale (`123 × 0.01` is
/// 1.2300000000000002): 12 significant digits, more than any register holds.
fn tidy(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    format!("{v:.11e}").parse().unwrap_or(v)
}

/// What a device answered to one read.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Words(&'a [u16]),
    Bits(&'a [bool]),
}

/// Why a point gave no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("the answer holds {got} values, the point needs {wanted}")]
    Short { wanted: usize, got: usize },
    #[error("{0} is not a number a reading can hold")]
    NotFinite(f64),
}

impl ValueError {
    /// The `cause` label of the error counter.
    pub fn cause(&self) -> &'static str {
        match self {
            ValueError::Short { .. } => "protocol",
            ValueError::NotFinite(_) => "bad_value",
        }
    }
}

/// One read request and the points it brings.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub table: RegisterTable,
    pub start: u16,
    /// Registers or bits asked for.
    pub count: u16,
    /// Indices into the map's points.
    pub points: Vec<usize>,
}

impl Block {
    /// The values of the block's points from the device's answer; each
    /// with its point's index.
    pub fn values(&self, points: &[Point], raw: Raw<'_>) -> Vec<(usize, Result<Value, ValueError>)> {
        self.points.iter().map(|&i| (i, points[i].value(self.start, raw))).collect()
    }
}

/// The reads that bring every point: per table (holding, input, coils,
/// discrete inputs), addresses in order, joined while the gap of unmapped
/// addresses between two is at most `max_gap` and the read stays within the
/// protocol's limit ([`MAX_REGISTERS`], [`MAX_BITS`]).
pub fn blocks(points: &[Point], max_gap: u16) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for table in RegisterTable::ALL {
        let max = if table.is_bits() { MAX_BITS } else { MAX_REGISTERS };
        let mut idx: Vec<usize> = (0..points.len()).filter(|&i| points[i].table == *table).collect();
        idx.sort_by_key(|&i| (points[i].address, std::cmp::Reverse(points[i].width())));
        let mut current: Option<(Block, u32)> = None; // the block and its end (exclusive)
        for i in idx {
            let p = &points[i];
            let (a, end_p) = (u32::from(p.address), u32::from(p.address) + u32::from(p.width()));
            if let Some((b, end)) = current.as_mut() {
                let start = u32::from(b.start);
                let new_end = (*end).max(end_p);
                if a <= *end + u32::from(max_gap) && new_end - start <= u32::from(max) {
                    *end = new_end;
                    b.count = (new_end - start) as u16;
                    b.points.push(i);
                    continue;
                }
                out.push(current.take().expect("a block").0);
            }
            current =
                Some((Block { table: *table, start: p.address, count: p.width(), points: vec![i] }, end_p));
        }
        if let Some((b, _)) = current {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(metric: &str, table: RegisterTable, address: u16) -> ModbusRegister {
        ModbusRegister::plain(metric, table, address)
    }

    fn typed(address: u16, kind: RegisterType, order: WordOrder) -> Point {
        Point::from_config(&ModbusRegister {
            kind: Some(kind),
            word_order: Some(order),
            ..reg("x", RegisterTable::Holding, address)
        })
    }

    fn float(v: Result<Value, ValueError>) -> f64 {
        match v {
            Ok(Value::Float(f)) => f,
            other => panic!("not a number: {other:?}"),
        }
    }

    #[test]
    fn f32_in_both_word_orders() {
        // 4.5 = 0x4090_0000: ABCD sends 0x4090 first, CDAB 0x0000 first.
        assert_eq!(number(RegisterType::F32, WordOrder::Abcd, &[0x4090, 0x0000]), 4.5);
        assert_eq!(number(RegisterType::F32, WordOrder::Cdab, &[0x0000, 0x4090]), 4.5);
        // -1.5 = 0xBFC0_0000; 1.23 = 0x3F9D_70A4, kept as 1.23.
        assert_eq!(number(RegisterType::F32, WordOrder::Abcd, &[0xBFC0, 0x0000]), -1.5);
        assert_eq!(number(RegisterType::F32, WordOrder::Cdab, &[0x70A4, 0x3F9D]), 1.23);
        // Read in the wrong order, 4.5 is a tiny number: the order matters.
        assert!(number(RegisterType::F32, WordOrder::Cdab, &[0x4090, 0x0000]).abs() < 1e-30);
    }

    #[test]
    fn integers_signed_and_unsigned() {
        use RegisterType::*;
        use WordOrder::*;
        assert_eq!(number(U16, Abcd, &[0xFFFF]), 65535.0);
        assert_eq!(number(I16, Abcd, &[0xFFFF]), -1.0);
        assert_eq!(number(I16, Abcd, &[0x8000]), -32768.0);
        assert_eq!(number(U32, Abcd, &[0x0001, 0x0002]), 65538.0);
        assert_eq!(number(U32, Cdab, &[0x0002, 0x0001]), 65538.0);
        assert_eq!(number(U32, Abcd, &[0xFFFF, 0xFFFF]), 4_294_967_295.0);
        assert_eq!(number(I32, Abcd, &[0xFFFF, 0xFFFE]), -2.0);
        assert_eq!(number(I32, Cdab, &[0xFFFE, 0xFFFF]), -2.0);
        assert_eq!(number(I32, Abcd, &[0x8000, 0x0000]), -2_147_483_648.0);
    }

    #[test]
    fn scale_and_offset_without_binary_noise() {
        let level = Point::from_config(&ModbusRegister {
            scale: Some(0.01),
            ..reg("forebay_level_m", RegisterTable::Holding, 0)
        });
        assert_eq!(float(level.value(0, Raw::Words(&[123]))), 1.23);
        assert_eq!(float(level.value(0, Raw::Words(&[200]))), 2.0);
        assert_eq!(float(level.value(0, Raw::Words(&[0]))), 0.0);
        // A 4–20 mA level transmitter scaled in the PLC to 0–10000 = −0.5…4.5 m.
        let offset = Point::from_config(&ModbusRegister {
            scale: Some(0.0005),
            offset: Some(-0.5),
            ..reg("level_m", RegisterTable::Input, 7)
        });
        assert_eq!(float(offset.value(5, Raw::Words(&[0, 0, 7000]))), 3.0);
        let temp = Point::from_config(&ModbusRegister {
            kind: Some(RegisterType::I16),
            scale: Some(0.1),
            ..reg("temp_c", RegisterTable::Input, 0)
        });
        assert_eq!(float(temp.value(0, Raw::Words(&[(-125i16) as u16]))), -12.5);
    }

    #[test]
    fn flags_from_coils_inputs_and_bits() {
        let coil = Point::from_config(&reg("pump2_fault", RegisterTable::Coil, 9));
        assert_eq!(coil.value(8, Raw::Bits(&[false, true])), Ok(Value::Bool(true)));
        assert_eq!(coil.value(9, Raw::Bits(&[false])), Ok(Value::Bool(false)));
        let status = |bit| {
            Point::from_config(&ModbusRegister { bit: Some(bit), ..reg("s", RegisterTable::Holding, 10) })
        };
        // Status word 0b1000_0000_0000_0101: bits 0, 2 and 15.
        let w = [0x8005u16];
        for (bit, on) in [(0, true), (1, false), (2, true), (3, false), (15, true)] {
            assert_eq!(status(bit).value(10, Raw::Words(&w)), Ok(Value::Bool(on)), "bit {bit}");
        }
    }

    #[test]
    fn short_answers_and_non_numbers_are_errors() {
        let p = typed(4, RegisterType::F32, WordOrder::Abcd);
        assert_eq!(p.value(0, Raw::Words(&[0; 5])), Err(ValueError::Short { wanted: 6, got: 5 }));
        assert_eq!(p.value(0, Raw::Words(&[0, 0, 0, 0, 0x7FC0, 0])).unwrap_err().cause(), "bad_value", "NaN");
        assert_eq!(
            p.value(0, Raw::Words(&[0, 0, 0, 0, 0x7F80, 0])).unwrap_err().cause(),
            "bad_value",
            "+inf"
        );
        let coil = Point::from_config(&reg("c", RegisterTable::Coil, 3));
        assert_eq!(coil.value(0, Raw::Bits(&[true; 3])).unwrap_err().cause(), "protocol");
    }

    #[test]
    fn nearby_addresses_share_a_read() {
        let points = vec![
            Point::from_config(&reg("a", RegisterTable::Holding, 0)),
            typed(4, RegisterType::F32, WordOrder::Cdab),
            Point::from_config(&reg("c", RegisterTable::Coil, 9)),
            Point::from_config(&reg("d", RegisterTable::Holding, 100)),
            Point::from_config(&reg("e", RegisterTable::Coil, 0)),
            Point::from_config(&ModbusRegister { bit: Some(3), ..reg("f", RegisterTable::Holding, 5) }),
            Point::from_config(&reg("g", RegisterTable::Discrete, 8)),
            Point::from_config(&reg("h", RegisterTable::Input, 2)),
        ];
        let b = blocks(&points, 16);
        let view: Vec<(RegisterTable, u16, u16, Vec<usize>)> =
            b.iter().map(|b| (b.table, b.start, b.count, b.points.clone())).collect();
        assert_eq!(
            view,
            vec![
                // 0, the f32 at 4–5 and a bit of 5: one read of 0–5.
                (RegisterTable::Holding, 0, 6, vec![0, 1, 5]),
                (RegisterTable::Holding, 100, 1, vec![3]),
                (RegisterTable::Input, 2, 1, vec![7]),
                (RegisterTable::Coil, 0, 10, vec![4, 2]),
                (RegisterTable::Discrete, 8, 1, vec![6]),
            ]
        );
        // Without gaps, each run of adjacent addresses is a read of its own.
        let strict: Vec<(u16, u16)> = blocks(&points, 0)
            .iter()
            .filter(|b| b.table == RegisterTable::Holding)
            .map(|b| (b.start, b.count))
            .collect();
        assert_eq!(strict, vec![(0, 1), (4, 2), (100, 1)]);
    }

    #[test]
    fn reads_stay_within_the_protocol_limits() {
        let regs: Vec<Point> =
            (0..300).map(|a| Point::from_config(&reg(&format!("r{a}"), RegisterTable::Input, a))).collect();
        let b = blocks(&regs, 16);
        assert_eq!(
            b.iter().map(|b| (b.start, b.count)).collect::<Vec<_>>(),
            [(0, 125), (125, 125), (250, 50)]
        );
        let bits: Vec<Point> = (0..4100)
            .step_by(2)
            .map(|a| Point::from_config(&reg(&format!("b{a}"), RegisterTable::Coil, a)))
            .collect();
        let b = blocks(&bits, 16);
        assert!(b.iter().all(|b| b.count <= MAX_BITS), "{:?}", b.iter().map(|b| b.count).collect::<Vec<_>>());
        assert_eq!(b.iter().map(|b| b.points.len()).sum::<usize>(), bits.len());
        // A 32-bit value is never cut between two reads.
        let f: Vec<Point> = (0..63).map(|k| typed(2 * k, RegisterType::F32, WordOrder::Abcd)).collect();
        let b = blocks(&f, 0);
        assert_eq!(b.iter().map(|b| (b.start, b.count)).collect::<Vec<_>>(), [(0, 124), (124, 2)]);
        // The last address of the table.
        let top = [typed(65534, RegisterType::U32, WordOrder::Abcd)];
        assert_eq!(blocks(&top, 16)[0].count, 2);
    }

    #[test]
    fn a_block_gives_each_point_its_value() {
        let points = vec![
            Point::from_config(&ModbusRegister {
                scale: Some(0.01),
                ..reg("forebay_level_m", RegisterTable::Holding, 0)
            }),
            typed(2, RegisterType::F32, WordOrder::Cdab),
        ];
        let b = &blocks(&points, 16)[0];
        let got = b.values(&points, Raw::Words(&[215, 0xFFFF, 0x0000, 0x4090]));
        assert_eq!(got, vec![(0, Ok(Value::Float(2.15))), (1, Ok(Value::Float(4.5)))]);
    }
}
