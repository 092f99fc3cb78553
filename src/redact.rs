//! One redaction for every error that is stored or logged, so no key, token
//! or phone number leaves floodguard where it does not belong:
//!
//! - the values of the configured secrets (tokens, passwords, provider keys,
//!   robot webhook URLs and the keys inside them) become `***`;
//! - URLs lose their user-info, query and fragment (`https://h/p?key=…` →
//!   `https://h/p`), and the token of an ack link (`/ack/<token>`);
//! - mobile numbers are masked to `138****0901`, the configured ones in
//!   whatever form they were written.
//!
//! Every log line passes through it (`logging` wraps the writer), and so
//! does every provider or storage error before it is stored
//! (`outbox.last_error`, the delivery log, `/readyz` problems) or printed by
//! `check-config`. The daemon installs the secrets of its configuration at
//! start and at each reload ([`install`]); [`text`] applies them.

use std::sync::{Arc, RwLock};

use crate::config::{Config, Secret};

/// The known values to hide, and the rules for URLs and phone numbers.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Redactor {
    /// Secret values and the secret parts of secret URLs, longest first (a
    /// secret that contains another is hidden whole).
    secrets: Vec<String>,
    /// Phone numbers as configured (`+86 138 0000 0901`), longest first.
    phones: Vec<String>,
}

/// Shorter values are not hidden by value (they would mask ordinary words);
/// tokens are at least 32 characters (`config::MIN_SECRET_LEN`).
const MIN_HIDDEN: usize = 6;

impl Redactor {
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Hides `value` wherever it appears; for a URL, also its password, the
    /// values of its query and its long path segments (a webhook's key).
    pub fn secret(&mut self, value: &str) {
        let value = value.trim();
        if value.chars().count() < MIN_HIDDEN {
            return;
        }
        self.push_secret(value.to_string());
        if let Ok(u) = reqwest::Url::parse(value) {
            if let Some(p) = u.password() {
                self.push_secret(p.to_string());
            }
            for (_, v) in u.query_pairs() {
                self.push_secret(v.into_owned());
            }
            for seg in u.path_segments().into_iter().flatten() {
                if seg.len() >= 16 {
                    self.push_secret(seg.to_string());
                }
            }
            // The URL as reqwest prints it in its errors (normalised).
            self.push_secret(u.to_string());
        }
    }

    fn push_secret(&mut self, s: String) {
        if s.chars().count() >= MIN_HIDDEN && !self.secrets.contains(&s) {
            self.secrets.push(s);
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Masks `phone` (as written in teams.toml) wherever it appears.
    pub fn phone(&mut self, phone: &str) {
        let p = phone.trim().to_string();
        if p.chars().filter(char::is_ascii_digit).count() >= 5 && !self.phones.contains(&p) {
            self.phones.push(p);
            self.phones.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Adds what `other` hides (a reload hides the old secrets and the new).
    pub fn extend(&mut self, other: &Redactor) {
        for s in &other.secrets {
            self.push_secret(s.clone());
        }
        for p in &other.phones {
            self.phone(p);
        }
    }

    /// Every secret and phone number of a configuration.
    pub fn from_config(c: &Config) -> Redactor {
        let mut r = Redactor::new();
        let d = &c.daemon;
        let mut secrets: Vec<&Secret> = vec![
            &d.http.api_token,
            &d.http.read_token,
            &d.http.metrics_token,
            &d.http.ingest_token,
            &d.influxdb.token,
            &d.influxdb.password,
            &d.channels.ack.secret,
        ];
        secrets.extend(d.mqtt.password.iter());
        secrets.extend(d.state.password.iter());
        r.secret_url_parts(&d.state.url);
        if let Some(e) = &d.channels.email {
            secrets.extend(e.password.iter());
            r.secret_url_parts(&e.smtp_url);
        }
        if let Some(s) = &d.channels.sms {
            secrets.extend(s.key_secret.iter());
            secrets.extend(s.headers.values());
            if let Some(u) = &s.url {
                r.secret_url_parts(u);
            }
        }
        if let Some(v) = &d.channels.voice {
            secrets.extend(v.key_secret.iter());
            secrets.extend(v.headers.values());
            secrets.push(&v.callback_token);
            if let Some(u) = &v.url {
                r.secret_url_parts(u);
            }
        }
        if let Some(it) = &d.channels.it_contact {
            if let Some(p) = &it.phone {
                r.phone(p);
            }
        }
        for t in &c.teams.teams {
            for robot in &t.robots {
                secrets.push(&robot.url);
                secrets.extend(robot.secret.iter());
            }
            for m in &t.members {
                if let Some(p) = &m.phone {
                    r.phone(p);
                }
            }
        }
        for s in secrets {
            r.secret(s.expose());
        }
        r
    }

    /// The secret parts of a URL that is not a secret as a whole (a
    /// gateway's URL with a key in its query, an SMTP URL with a password).
    fn secret_url_parts(&mut self, url: &str) {
        if let Ok(u) = reqwest::Url::parse(url) {
            if let Some(p) = u.password() {
                self.push_secret(p.to_string());
            }
            for (_, v) in u.query_pairs() {
                if v.len() >= MIN_HIDDEN {
                    self.push_secret(v.into_owned());
                }
            }
        }
    }

    /// The secrets of `FLOODGUARD__…` overrides whose names say they are one
    /// (token, secret, password, key): what is known when the configuration
    /// did not load.
    pub fn from_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Redactor {
        let mut r = Redactor::new();
        for (k, v) in vars {
            let k = k.to_ascii_uppercase();
            if k.starts_with("FLOODGUARD__")
                && ["TOKEN", "SECRET", "PASSWORD", "KEY", "URL"].iter().any(|w| k.contains(w))
            {
                if k.ends_with("URL") {
                    r.secret_url_parts(v);
                } else {
                    r.secret(v);
                }
            }
        }
        r
    }

    /// `s` with every known secret, URL credential and phone number hidden.
    pub fn apply(&self, s: &str) -> String {
        let mut out = s.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        for p in &self.phones {
            if out.contains(p.as_str()) {
                out = out.replace(p.as_str(), &phone(p));
            }
        }
        let out = if out.contains("://") { urls(&out) } else { out };
        mobiles(&out)
    }
}

/// The redactor in force, installed by the daemon (`None`: the rules for
/// URLs and phone numbers alone).
static CURRENT: RwLock<Option<Arc<Redactor>>> = RwLock::new(None);

/// Makes `r` the redaction of [`text`] and of the logs.
pub fn install(r: Redactor) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(r));
}

/// `s` redacted with the installed secrets.
pub fn text(s: &str) -> String {
    let current = CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone();
    match current {
        Some(r) => r.apply(s),
        None => Redactor::default().apply(s),
    }
}

/// A URL as it may be shown: scheme, host, port and path; no user-info,
/// query or fragment, and no ack-link token.
pub fn url(u: &str) -> String {
    let Some(scheme_end) = u.find("://") else {
        return u.to_string();
    };
    let rest = &u[scheme_end + 3..];
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = match path.find("/ack/") {
        Some(i) => format!("{}/ack/***", &path[..i]),
        None => path.to_string(),
    };
    format!("{}://{host}{path}", &u[..scheme_end])
}

/// A mobile number masked as `138****0901` (its last four digits kept, and
/// the first three of an 11-digit Chinese mobile).
pub fn phone(p: &str) -> String {
    let digits: String = p.chars().filter(char::is_ascii_digit).collect();
    let core = if digits.len() == 13 && digits.starts_with("86") { &digits[2..] } else { &digits[..] };
    match core.len() {
        11 => format!("{}****{}", &core[..3], &core[7..]),
        n if n > 4 => format!("****{}", &core[n - 4..]),
        _ => "****".into(),
    }
}

/// Every URL in free text, redacted by [`url`].
fn urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        // The scheme: letters, digits, + - . right before "://".
        let start = rest[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(i, |(j, _)| j);
        let tail = &rest[i + 3..];
        let len = tail
            .char_indices()
            .find(|(_, c)| {
                !c.is_ascii()
                    || c.is_ascii_whitespace()
                    || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | '}' | '\\')
            })
            .map_or(tail.len(), |(j, _)| j);
        if start == i {
            // "://" without a scheme: not a URL.
            out.push_str(&rest[..i + 3]);
            rest = tail;
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..i + 3 + len]));
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Chinese mobile numbers in free text (11 digits from 13x–19x, alone or
/// after 86), masked by [`phone`].
fn mobiles(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let run = &s[start..i];
        let core = match run.len() {
            11 => run,
            13 if run.starts_with("86") => &run[2..],
            _ => continue,
        };
        let cb = core.as_bytes();
        if cb[0] == b'1' && (b'3'..=b'9').contains(&cb[1]) {
            out.push_str(&s[last..start]);
            if run.len() == 13 {
                out.push_str("86");
            }
            out.push_str(&phone(core));
            last = i;
        }
    }
    out.push_str(&s[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_query_and_ack_tokens() {
        assert_eq!(
            url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc"),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
        );
        assert_eq!(url("smtps://flood:pw@mail.example:465"), "smtps://mail.example:465");
        assert_eq!(url("http://hq.example/ack/eyJh.sig"), "http://hq.example/ack/***");
        assert_eq!(url("http://h:1/p#frag"), "http://h:1/p");
        let e =
            "error sending request for url (http://u:p@127.0.0.1:9/sms?token=zzz&x=1): connection refused";
        assert_eq!(
            Redactor::new().apply(e),
            "error sending request for url (http://127.0.0.1:9/sms): connection refused"
        );
        assert_eq!(Redactor::new().apply("no url :// here"), "no url :// here");
        assert_eq!(
            Redactor::new().apply("确认收到：http://hq/ack/AAA.BBB；谢谢"),
            "确认收到：http://hq/ack/***；谢谢"
        );
    }

    #[test]
    fn known_secrets_are_masked_even_inside_other_text() {
        let mut r = Redactor::new();
        r.secret("SECdingtalk-signing-secret");
        r.secret("https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef0123");
        r.secret("abc"); // too short to hide by value
        let out =
            r.apply("sign failed with SECdingtalk-signing-secret; token 0123456789abcdef0123 refused; abc");
        assert_eq!(out, "sign failed with ***; token *** refused; abc");
        // Path-style webhook keys.
        r.secret("https://hooks.example/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX");
        assert_eq!(r.apply("posting to XXXXXXXXXXXXXXXXXXXXXXXX failed"), "posting to *** failed");
    }

    #[test]
    fn phones_are_masked() {
        assert_eq!(phone("13800000901"), "138****0901");
        assert_eq!(phone("+86 138 0000 0901"), "138****0901");
        let r = Redactor::new();
        assert_eq!(r.apply("to=13800000901 key=n5"), "to=138****0901 key=n5");
        assert_eq!(r.apply("+8613912345678"), "+86139****5678");
        // Not a mobile: timestamps in ms, short ids, a 12-digit run.
        assert_eq!(r.apply("ts=1784613900000 id=42 x=123456789012"), "ts=1784613900000 id=42 x=123456789012");
        let mut r = Redactor::new();
        r.phone("+86 138-0000-0901");
        assert_eq!(r.apply("bad number +86 138-0000-0901"), "bad number 138****0901");
    }

    #[test]
    fn env_overrides_name_their_secrets() {
        let r = Redactor::from_env([
            ("FLOODGUARD__HTTP__API_TOKEN", "tok-0123456789-abcdefghij-0123456789"),
            ("FLOODGUARD__CHANNELS__SMS__URL", "http://gw/sms?apikey=gateway-key-123"),
            ("FLOODGUARD__MQTT__CLIENT_ID", "floodguard-a"),
        ]);
        assert_eq!(
            r.apply("tok-0123456789-abcdefghij-0123456789 gateway-key-123 floodguard-a"),
            "*** *** floodguard-a"
        );
    }
}
