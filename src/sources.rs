//! Where each site's readings last came from — the protocol, the sender
//! (MQTT topic, SL 651 station and peer, HTTP endpoint, Modbus device) and
//! when — for the live page and `/api/v1/sites`. The intakes record; the
//! HTTP handlers read. A leaf: it knows nothing of the intakes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The last input of one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastInput {
    /// `mqtt`, `sl651`, `http`, `modbus`.
    pub protocol: &'static str,
    /// The sender, as people look for it: a topic, `station 0010000001 from
    /// 10.0.0.7:40211`, `POST /write`, `device BH-BZ-01-plc at 10.0.0.9:502`.
    pub from: String,
    /// Received, ms since the epoch.
    pub at_ms: i64,
}

/// Every site's last input.
#[derive(Debug, Default)]
pub struct Sources {
    last: Mutex<HashMap<Arc<str>, LastInput>>,
}

impl Sources {
    /// Notes an input of `site`; costs no allocation when it came the same
    /// way as the last one.
    pub fn record(&self, site: &Arc<str>, protocol: &'static str, from: &str, at_ms: i64) {
        let mut last = self.last.lock().expect("sources lock");
        match last.get_mut(site) {
            Some(l) if l.protocol == protocol && l.from == from => l.at_ms = at_ms,
            _ => {
                last.insert(site.clone(), LastInput { protocol, from: from.to_string(), at_ms });
            }
        }
    }

    pub fn get(&self, site: &str) -> Option<LastInput> {
        self.last.lock().expect("sources lock").get(site).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_input_of_each_site_is_kept() {
        let s = Sources::default();
        let a: Arc<str> = Arc::from("CD-YL-01");
        s.record(&a, "mqtt", "flood/CD-YL-01/telemetry", 1);
        s.record(&a, "mqtt", "flood/CD-YL-01/telemetry", 2);
        assert_eq!(s.get("CD-YL-01").unwrap().at_ms, 2);
        s.record(&a, "sl651", "station 0010000001 from 10.0.0.7:40211", 3);
        let l = s.get("CD-YL-01").unwrap();
        assert_eq!((l.protocol, l.at_ms), ("sl651", 3));
        assert!(s.get("BH-SW-01").is_none());
    }
}
