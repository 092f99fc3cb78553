//! M3 multi-packet transfers, reassembled: a station sends a long report
//! (an hourly report with many groups, a picture) as packets 1 … N, each
//! frame carrying (total, number) after SYN and ending with ETB (ETX on
//! the last). The body is the concatenation of the packets' bodies in
//! order; only then is it a message. When the last packet arrives and one
//! is missing (lost, or dropped for its CRC), the centre asks for the first
//! missing one with a NAK; the transfer completes when it comes. Pure: the
//! server keeps one `Transfers` per link.

use std::collections::HashMap;

/// What adding a packet gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// More packets to come.
    Incomplete,
    /// All packets: the whole body, in order.
    Complete(Vec<u8>),
    /// The last one came and this one (from 1) is missing: ask for it.
    Missing(u16),
}

/// Transfers in progress by (station, function).
#[derive(Debug, Default)]
pub struct Transfers {
    open: HashMap<([u8; 5], u8), Vec<Option<Vec<u8>>>>,
}

/// Packets kept per link at most (bytes): a transfer past it is dropped.
pub const MAX_BYTES: usize = 1 << 20;

impl Transfers {
    /// Adds packet `number` of `total` of a station's transfer of `function`.
    /// A new `total` starts the transfer again.
    pub fn add(
        &mut self,
        station: [u8; 5],
        function: u8,
        total: u16,
        number: u16,
        body: Vec<u8>,
    ) -> Progress {
        let total = usize::from(total.max(1));
        let key = (station, function);
        let parts = self.open.entry(key).or_default();
        if parts.len() != total {
            *parts = vec![None; total];
        }
        let i = usize::from(number.max(1)) - 1;
        if i < total {
            parts[i] = Some(body);
        }
        let held: usize = parts.iter().flatten().map(Vec::len).sum();
        if held > MAX_BYTES {
            self.open.remove(&key);
            return Progress::Incomplete;
        }
        match parts.iter().position(Option::is_none) {
            None => {
                let whole =
                    self.open.remove(&key).unwrap_or_default().into_iter().flatten().flatten().collect();
                Progress::Complete(whole)
            }
            Some(missing) if i + 1 == total || parts[total - 1].is_some() => {
                Progress::Missing(missing as u16 + 1)
            }
            Some(_) => Progress::Incomplete,
        }
    }

    /// The serial of a transfer, from its first packet (for a NAK).
    pub fn serial(&self, station: [u8; 5], function: u8) -> u16 {
        self.open
            .get(&(station, function))
            .and_then(|parts| parts.first()?.as_ref())
            .filter(|b| b.len() >= 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// Transfers open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ST: [u8; 5] = [0, 0x12, 0x34, 0x56, 0x78];

    #[test]
    fn packets_in_order_make_the_body() {
        let mut t = Transfers::default();
        assert_eq!(t.add(ST, 0x34, 3, 1, vec![1, 2]), Progress::Incomplete);
        assert_eq!(t.add(ST, 0x34, 3, 2, vec![3]), Progress::Incomplete);
        assert_eq!(t.add(ST, 0x34, 3, 3, vec![4, 5]), Progress::Complete(vec![1, 2, 3, 4, 5]));
        assert!(t.is_empty());
    }

    #[test]
    fn a_missing_packet_is_asked_for_and_then_completes() {
        let mut t = Transfers::default();
        t.add(ST, 0x34, 3, 1, vec![1]);
        assert_eq!(t.add(ST, 0x34, 3, 3, vec![3]), Progress::Missing(2));
        assert_eq!(t.serial(ST, 0x34), 0, "a one-byte first packet has no serial");
        assert_eq!(t.add(ST, 0x34, 3, 2, vec![2]), Progress::Complete(vec![1, 2, 3]));
    }

    #[test]
    fn stations_and_functions_are_apart_and_a_new_total_restarts() {
        let mut t = Transfers::default();
        t.add(ST, 0x34, 2, 1, vec![1]);
        t.add([9; 5], 0x34, 2, 1, vec![9]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.add(ST, 0x34, 3, 1, vec![7]), Progress::Incomplete, "a new transfer of 3");
        assert_eq!(t.add(ST, 0x34, 3, 2, vec![8]), Progress::Incomplete);
        assert_eq!(t.add(ST, 0x34, 3, 3, vec![9]), Progress::Complete(vec![7, 8, 9]));
        assert_eq!(t.add([9; 5], 0x34, 2, 2, vec![10]), Progress::Complete(vec![9, 10]));
    }

    #[test]
    fn a_transfer_past_the_limit_is_dropped() {
        let mut t = Transfers::default();
        assert_eq!(t.add(ST, 0x36, 3, 1, vec![0; MAX_BYTES + 1]), Progress::Incomplete);
        assert!(t.is_empty());
    }
}
