//! What to do after a write to InfluxDB: a pure decision over the outcome,
//! tested alone (the shape of Vector's `RetryLogic`).
//!
//! | outcome | decision |
//! |---|---|
//! | 2xx | done |
//! | 404 "database not found" (v1) | create the database, then retry |
//! | 429, 5xx, 408 | retry after `Retry-After` or the backoff |
//! | 401, 403, other 404 | retry: the token, user or bucket is wrong, not the data — moving the data aside would lose it over a config mistake; `/readyz` and the log say so |
//! | other 4xx (400 bad line, 413, 422 …) | move the batch to `rejected/` with the reason |
//! | timeout, connection refused or reset | retry |

use std::time::{Duration, SystemTime};

/// How a write request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Status { code: u16, retry_after: Option<String>, body: String },
    Timeout,
    Connection(String),
}

/// What the writer does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Done,
    /// Try again; `after` is the server's `Retry-After` if it gave one.
    /// `class` labels `floodguard_influxdb_write_failures_total`.
    Retry {
        after: Option<Duration>,
        class: &'static str,
        reason: String,
    },
    /// The batch itself is refused: move it aside.
    Reject {
        reason: String,
    },
    /// The v1 database is missing: create it, then retry.
    CreateDatabase,
}

/// Longest `Retry-After` honoured; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Failure classes, for pre-registering counters.
pub const CLASSES: [&str; 7] =
    ["rejected", "throttled", "server_error", "auth", "not_found", "timeout", "connection"];

pub fn classify(outcome: &Outcome, now: SystemTime) -> Decision {
    match outcome {
        Outcome::Status { code, .. } if (200..300).contains(code) => Decision::Done,
        Outcome::Status { code, retry_after, body } => {
            let reason = format!("HTTP {code}: {}", short(body));
            let after = retry_after.as_deref().and_then(|v| parse_retry_after(v, now));
            match code {
                404 if body.contains("database not found") => Decision::CreateDatabase,
                429 => Decision::Retry { after, class: "throttled", reason },
                408 | 500..=599 => Decision::Retry { after, class: "server_error", reason },
                401 | 403 => Decision::Retry { after, class: "auth", reason },
                404 => Decision::Retry { after, class: "not_found", reason },
                _ => Decision::Reject { reason },
            }
        }
        Outcome::Timeout => {
            Decision::Retry { after: None, class: "timeout", reason: "request timed out".into() }
        }
        Outcome::Connection(e) => Decision::Retry { after: None, class: "connection", reason: e.clone() },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, capped.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(v).ok()?.duration_since(now).unwrap_or(Duration::ZERO),
    };
    Some(d.min(MAX_RETRY_AFTER))
}

fn short(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, body: &str) -> Outcome {
        Outcome::Status { code, retry_after: None, body: body.into() }
    }

    fn now() -> SystemTime {
        httpdate::parse_http_date("Tue, 21 Jul 2026 06:05:00 GMT").unwrap()
    }

    fn class(o: &Outcome) -> &'static str {
        match classify(o, now()) {
            Decision::Retry { class, .. } => class,
            Decision::Reject { .. } => "REJECT",
            Decision::Done => "DONE",
            Decision::CreateDatabase => "CREATE",
        }
    }

    #[test]
    fn the_table() {
        let cases = [
            (status(204, ""), "DONE"),
            (status(200, "{}"), "DONE"),
            (status(404, r#"{"error":"database not found: \"flood\""}"#), "CREATE"),
            (status(404, r#"{"code":"not found","message":"bucket \"flood\" not found"}"#), "not_found"),
            (status(429, "slow down"), "throttled"),
            (status(500, "boom"), "server_error"),
            (status(502, ""), "server_error"),
            (status(503, ""), "server_error"),
            (status(408, ""), "server_error"),
            (status(401, "unauthorized"), "auth"),
            (status(403, "forbidden"), "auth"),
            (status(400, r#"{"error":"unable to parse 'x': missing fields"}"#), "REJECT"),
            (status(400, "partial write: field type conflict"), "REJECT"),
            (status(413, "too large"), "REJECT"),
            (status(422, "unprocessable"), "REJECT"),
            (Outcome::Timeout, "timeout"),
            (Outcome::Connection("connection refused".into()), "connection"),
        ];
        for (o, want) in cases {
            assert_eq!(class(&o), want, "{o:?}");
            if want != "DONE" && want != "CREATE" {
                assert!(CLASSES.contains(&want) || want == "REJECT");
            }
        }
    }

    #[test]
    fn rejection_keeps_the_server_reason() {
        match classify(&status(400, "unable to parse 'bad line'"), now()) {
            Decision::Reject { reason } => {
                assert_eq!(reason, "HTTP 400: unable to parse 'bad line'")
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_is_honoured_and_capped() {
        let o = Outcome::Status { code: 429, retry_after: Some("7".into()), body: String::new() };
        assert!(
            matches!(classify(&o, now()), Decision::Retry { after: Some(d), .. } if d == Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("Tue, 21 Jul 2026 06:05:30 GMT", now()), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Tue, 21 Jul 2026 06:04:00 GMT", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now()), None);
    }
}
