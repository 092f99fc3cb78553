//! Value types shared by the config files: human durations (`"5m"`, `"90s"`)
//! and secrets that never reach a log.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A duration written the human way: `"90s"`, `"5m"`, `"1h 30m"`, `"200ms"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(HumanDuration).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {s:?} ({e}); write it like \"90s\", \"5m\" or \"1h 30m\""
            ))
        })
    }
}

/// A secret (password, token, API key). Written in config as a string —
/// normally through an environment override such as
/// `FLOODGUARD__INFLUXDB__TOKEN` — or as `{ file = "/run/secrets/x" }`, read at
/// load time. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Inline(String),
            File { file: String },
        }
        match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected a string or { file = \"/path/to/secret\" }"))?
        {
            Raw::Inline(s) => Ok(Secret(s)),
            Raw::File { file } => std::fs::read_to_string(&file)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| de::Error::custom(format!("cannot read secret file {file:?}: {e}"))),
        }
    }
}

/// The shortest token or signing secret accepted (`floodguard gen-secret`
/// makes 64 hex digits).
pub const MIN_SECRET_LEN: usize = 32;

/// The environment example as shipped: every value in it is an example.
const ENV_EXAMPLE: &str = include_str!("../../deploy/floodguard.env.example");

/// Secrets that ship as examples (deploy/floodguard.env.example, the docs,
/// earlier releases and the demo): a token equal to one is refused, since
/// whoever read the examples knows it.
pub fn example_secrets() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = ENV_EXAMPLE
        .lines()
        .filter_map(|l| l.trim_start_matches(['#', ' ']).split_once('='))
        .filter(|(k, _)| k.trim().starts_with("FLOODGUARD__"))
        .map(|(_, v)| v.split(" #").next().unwrap_or("").trim())
        .filter(|v| !v.is_empty())
        .collect();
    v.extend([
        "change-me-long-random",
        "change-me-64-hex-chars",
        "demo",
        "demo-ack-secret-not-for-production",
        "<ingest token>",
    ]);
    v
}

/// Why `s` cannot serve as a token or signing secret: too short, or one
/// of the shipped examples. `None` when it is fit (an empty one is judged
/// by the caller: empty means "off" for most of them).
pub fn secret_problem(s: &Secret) -> Option<String> {
    let v = s.expose();
    if example_secrets().contains(&v) {
        return Some(
            "is an example value shipped with floodguard; make one with `floodguard gen-secret`".into(),
        );
    }
    let n = v.chars().count();
    if n < MIN_SECRET_LEN {
        return Some(format!(
            "is {n} characters long; use at least {MIN_SECRET_LEN} (`floodguard gen-secret` makes one)"
        ));
    }
    None
}

/// A fresh random secret: 32 bytes from the operating system's generator,
/// as 64 hex digits (`floodguard gen-secret`).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// Hides the password in a URL's user-info part (`smtps://user:pass@host`),
/// for logs and printed plans.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let hidden = if userinfo.contains(':') { format!("{user}:***") } else { user.to_string() };
    format!("{}://{}@{}", &url[..scheme_end], hidden, &rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_the_human_way() {
        let parse = |s: &str| HumanDuration::deserialize(serde_json::Value::from(s));
        assert_eq!(parse("90s").unwrap().get(), Duration::from_secs(90));
        assert_eq!(parse("5m").unwrap().get(), Duration::from_secs(300));
        assert_eq!(parse("1h 30m").unwrap().get(), Duration::from_secs(5400));
        assert_eq!(parse("200ms").unwrap().get(), Duration::from_millis(200));
        let err = parse("5 minutes please").unwrap_err().to_string();
        assert!(err.contains("invalid duration"), "{err}");
        assert!(HumanDuration::deserialize(serde_json::Value::from(5)).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "\"***\" \"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secrets_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let v = serde_json::json!({ "file": path.to_str().unwrap() });
        assert_eq!(Secret::deserialize(v).unwrap().expose(), "s3cret");
        let v = serde_json::json!({ "file": "/nonexistent/token" });
        assert!(Secret::deserialize(v).unwrap_err().to_string().contains("cannot read secret file"));
    }

    #[test]
    fn short_and_example_secrets_are_refused() {
        assert!(secret_problem(&Secret::new("change-me-long-random")).unwrap().contains("example"));
        assert!(secret_problem(&Secret::new("change-me-64-hex-chars")).unwrap().contains("example"));
        assert!(secret_problem(&Secret::new("x".repeat(31))).unwrap().contains("31 characters"));
        assert_eq!(secret_problem(&Secret::new(generate_secret())), None);
        // Every value the environment example shows is refused, so a copied
        // example never reaches production.
        let shown: Vec<&str> = ENV_EXAMPLE
            .lines()
            .filter_map(|l| l.trim_start_matches(['#', ' ']).split_once('='))
            .filter(|(k, v)| k.starts_with("FLOODGUARD__") && !v.trim().is_empty())
            .map(|(_, v)| v.split(" #").next().unwrap().trim())
            .collect();
        assert!(!shown.is_empty());
        for v in shown {
            assert!(secret_problem(&Secret::new(v)).is_some(), "{v:?} from the env example passes");
        }
    }

    #[test]
    fn generated_secrets_are_fresh_hex() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(redact_url("smtps://flood:pw@mail.example:465"), "smtps://flood:***@mail.example:465");
        assert_eq!(redact_url("mqtt://127.0.0.1:1883"), "mqtt://127.0.0.1:1883");
        assert_eq!(redact_url("mqtt://user@host/x@y"), "mqtt://user@host/x@y");
        assert_eq!(redact_url("http://a:b@h/p?q=@"), "http://a:***@h/p?q=@");
    }
}
