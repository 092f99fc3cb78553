//! `[channels.*]` of floodguard.toml: how notifications leave floodguard —
//! e-mail, SMS, group robots — and the ack links they carry.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::values::{HumanDuration, Secret};

/// `[channels.*]`: how notifications leave floodguard.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ChannelsSection {
    pub email: Option<EmailChannel>,
    pub sms: Option<SmsChannel>,
    pub robots: RobotsChannel,
    pub ack: AckLinks,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmailChannel {
    /// `smtp://host:25` (plain), `smtp://host:587?tls=required` (STARTTLS),
    /// `smtps://host:465` (implicit TLS); credentials in `username`/`password`.
    pub smtp_url: String,
    /// `某区防汛指挥部 <flood@example.gov.cn>`
    pub from: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM file of a CA to trust besides the public ones (a mail server
    /// with an internal CA, common on government networks), for every TLS
    /// mode (`smtps://`, `?tls=required`, `?tls=opportunistic`).
    pub ca_file: Option<std::path::PathBuf>,
    /// Send the password over plain `smtp://` without TLS (a relay on
    /// the same host); refused otherwise.
    #[serde(default)]
    pub allow_insecure_auth: bool,
}

string_enum! {
    pub enum SmsProvider ("SMS provider") {
        Http = "http",
        Aliyun = "aliyun",
        Tencent = "tencent",
        /// Writes each SMS to the log instead of sending it: `demo` and dry runs.
        Log = "log",
    }
}

string_enum! {
    #[derive(Default)]
    pub enum BodyFormat ("body format") {
        #[default]
        Json = "json",
        Form = "form",
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SmsChannel {
    pub provider: SmsProvider,
    /// `http`: the gateway URL. `aliyun`/`tencent`: the API endpoint (their
    /// public one by default).
    pub url: Option<String>,
    /// `http`: body fields, with `{phone}`, `{text}` and `{id}` (the
    /// idempotency key) filled in: `{ mobile = "{phone}", content = "{text}" }`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub format: BodyFormat,
    /// `http`: extra headers (an API key through the environment, say).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `aliyun`: AccessKey; `tencent`: SecretId.
    pub key_id: Option<String>,
    /// `aliyun`: AccessKeySecret; `tencent`: SecretKey.
    pub key_secret: Option<Secret>,
    /// Approved signature (签名) and template (模板) of the provider.
    pub sign_name: Option<String>,
    pub template: Option<String>,
    /// `tencent`: the template's parameters {1}, {2} … in order, from
    /// street, site, level, value, action (Aliyun takes them by name).
    #[serde(default = "template_order")]
    pub template_params: Vec<String>,
    /// `tencent`: SmsSdkAppId and region.
    pub app_id: Option<String>,
    pub region: Option<String>,
    /// At most one SMS per recipient this often; more are merged.
    #[serde(default = "one_minute")]
    pub min_interval: HumanDuration,
}

fn template_order() -> Vec<String> {
    ["street", "site", "level", "value", "action"].map(String::from).to_vec()
}

fn one_minute() -> HumanDuration {
    HumanDuration::secs(60)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RobotsChannel {
    /// Messages per minute per robot (WeCom and DingTalk allow 20).
    pub per_minute: u32,
    /// After a robot says "too fast": wait this long (DingTalk throttles 10 min).
    pub throttled_for: HumanDuration,
}

impl Default for RobotsChannel {
    fn default() -> Self {
        RobotsChannel { per_minute: 20, throttled_for: HumanDuration::secs(60) }
    }
}

/// `[channels.ack]`: links in messages that acknowledge from a phone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AckLinks {
    /// Where phones reach the live page: `https://flood.example.gov.cn`.
    /// Empty: messages carry no ack link.
    pub base_url: String,
    /// HMAC key of the tokens, needed with a `base_url`; set it through the
    /// environment or a file (`floodguard gen-secret`).
    pub secret: Secret,
    /// How long a link works (at most `MAX_ACK_TTL`).
    pub ttl: HumanDuration,
}

/// The longest an ack link may live: a flood season (a longer one would
/// overflow the token's expiry, or never expire in practice).
pub const MAX_ACK_TTL: HumanDuration = HumanDuration::secs(180 * 24 * 3600);

impl Default for AckLinks {
    fn default() -> Self {
        AckLinks { base_url: String::new(), secret: Secret::default(), ttl: HumanDuration::secs(24 * 3600) }
    }
}

/// `[channels.retry]`: backoff of failed sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    pub min: HumanDuration,
    pub max: HumanDuration,
    /// A message not delivered after this long is given up (and logged).
    pub give_up_after: HumanDuration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min: HumanDuration::secs(2),
            max: HumanDuration::secs(300),
            give_up_after: HumanDuration::secs(24 * 3600),
        }
    }
}
