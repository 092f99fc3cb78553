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
    /// Phone calls (语音通知) for unacknowledged Ⅰ (and, if configured, Ⅱ) alerts.
    pub voice: Option<VoiceChannel>,
    pub robots: RobotsChannel,
    pub ack: AckLinks,
    pub retry: RetryPolicy,
    /// Who hears of a channel whose credentials the provider refuses.
    pub it_contact: Option<ItContact>,
}

/// One window of a carrier budget: at most `max` messages per `per` to one
/// recipient (`{ max = 5, per = "1h" }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub max: u32,
    pub per: HumanDuration,
}

impl Window {
    pub const fn new(max: u32, per_secs: u64) -> Self {
        Window { max, per: HumanDuration::secs(per_secs) }
    }
}

/// Aliyun's default per-number SMS limits: 1 a minute, 5 an hour, 10 a day.
pub const SMS_BUDGET: [Window; 3] = [Window::new(1, 60), Window::new(5, 3600), Window::new(10, 86_400)];
/// Aliyun's default per-number voice limits: 1 a minute, 5 an hour, 20 a day.
pub const VOICE_BUDGET: [Window; 3] = [Window::new(1, 60), Window::new(5, 3600), Window::new(20, 86_400)];

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
    /// The older way to say the per-minute window: at most one SMS per
    /// phone this often (`"0s"`: no such window). Not together with `budget`.
    pub min_interval: Option<HumanDuration>,
    /// Per phone, every window at once (Aliyun's defaults: 1 a minute, 5 an
    /// hour, 10 a day). What a window has no room for waits and goes as one
    /// digest; Ⅱ/Ⅰ notices take the next channel instead (`[alerting] fallback`).
    pub budget: Option<Vec<Window>>,
    /// Of each window allowing more than this many, the last `reserve` are
    /// kept for Ⅱ/Ⅰ: Ⅳ/Ⅲ notices then wait for the window's end.
    #[serde(default = "one")]
    pub reserve: u32,
    /// `aliyun`/`tencent`: ask the provider whether each SMS reached the
    /// handset (QuerySendDetails, PullSmsSendStatus).
    #[serde(default = "yes")]
    pub receipts: bool,
    /// How often receipts are asked for.
    #[serde(default = "fifteen_seconds")]
    pub receipt_poll: HumanDuration,
    /// A Ⅱ/Ⅰ SMS not delivered this long after it was sent counts as not
    /// sent: the next channel or the next person in the chain is tried.
    #[serde(default = "five_minutes")]
    pub receipt_timeout: HumanDuration,
}

impl SmsChannel {
    /// The budget's windows: `budget`, or the defaults with `min_interval`
    /// in place of the minute window.
    pub fn windows(&self) -> Vec<Window> {
        if let Some(b) = &self.budget {
            return b.clone();
        }
        let mut w = SMS_BUDGET.to_vec();
        if let Some(i) = self.min_interval {
            w.remove(0);
            if !i.get().is_zero() {
                w.insert(0, Window { max: 1, per: i });
            }
        }
        w
    }

    /// Whether this provider can be asked for receipts.
    pub fn has_receipts(&self) -> bool {
        self.receipts && matches!(self.provider, SmsProvider::Aliyun | SmsProvider::Tencent)
    }
}

fn template_order() -> Vec<String> {
    ["street", "site", "level", "value", "action"].map(String::from).to_vec()
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn fifteen_seconds() -> HumanDuration {
    HumanDuration::secs(15)
}

fn five_minutes() -> HumanDuration {
    HumanDuration::secs(300)
}

string_enum! {
    pub enum VoiceProvider ("voice provider") {
        /// A gateway of the district's own: URL and body template, as for SMS.
        Http = "http",
        /// Aliyun Dyvmsapi SingleCallByTts; results by QueryCallDetailByCallId.
        Aliyun = "aliyun",
        /// Tencent Cloud VMS SendTtsVoice; results by its status callback.
        Tencent = "tencent",
        /// Writes each call to the log instead of placing it: `demo` and dry runs.
        Log = "log",
    }
}

/// `[channels.voice]`: phone calls that read a template out (语音通知).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VoiceChannel {
    pub provider: VoiceProvider,
    /// `http`: the gateway URL. `aliyun`/`tencent`: the API endpoint (their
    /// public one by default).
    pub url: Option<String>,
    /// `http`: body fields with `{phone}`, `{text}` (what is read out) and `{id}`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub format: BodyFormat,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `aliyun`: AccessKey; `tencent`: SecretId.
    pub key_id: Option<String>,
    /// `aliyun`: AccessKeySecret; `tencent`: SecretKey.
    pub key_secret: Option<Secret>,
    /// `aliyun`: CalledShowNumber, the number the callee sees (empty: the
    /// provider's public pool).
    pub show_number: Option<String>,
    /// The approved TTS template: Aliyun TtsCode, Tencent TemplateId.
    pub template: Option<String>,
    /// `tencent`: the template's parameters in order (Aliyun takes them by name).
    #[serde(default = "voice_template_order")]
    pub template_params: Vec<String>,
    /// `tencent`: VoiceSdkAppid and region.
    pub app_id: Option<String>,
    pub region: Option<String>,
    /// How often the message is read out in one call (1–3).
    #[serde(default = "two")]
    pub play_times: u32,
    /// Per phone (Aliyun's defaults: 1 a minute, 5 an hour, 20 a day).
    #[serde(default = "voice_budget")]
    pub budget: Vec<Window>,
    /// `aliyun`: how often the result of a call is asked for.
    #[serde(default = "fifteen_seconds")]
    pub result_poll: HumanDuration,
    /// `tencent`: the secret path of its status callback,
    /// `POST /callbacks/tencent-voice/{callback_token}` (set the same URL in
    /// Tencent's console). Empty: results are not received.
    #[serde(default)]
    pub callback_token: Secret,
}

fn voice_template_order() -> Vec<String> {
    ["street", "site", "level"].map(String::from).to_vec()
}

fn two() -> u32 {
    2
}

fn voice_budget() -> Vec<Window> {
    VOICE_BUDGET.to_vec()
}

/// `[channels.it_contact]`: the IT operator told when a provider refuses
/// floodguard's credentials (by e-mail, or SMS when e-mail is what fails).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItContact {
    #[serde(default = "it_name")]
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

fn it_name() -> String {
    "信息中心值班".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RobotsChannel {
    /// Messages per minute per robot (WeCom and DingTalk allow 20).
    pub per_minute: u32,
    /// After WeCom says "too fast" (45009): wait this long.
    pub throttled_for: HumanDuration,
    /// After DingTalk says "too fast" (130101): it holds the robot 10 minutes.
    pub dingtalk_throttled_for: HumanDuration,
}

impl Default for RobotsChannel {
    fn default() -> Self {
        RobotsChannel {
            per_minute: 20,
            throttled_for: HumanDuration::secs(60),
            dingtalk_throttled_for: HumanDuration::secs(600),
        }
    }
}

impl RobotsChannel {
    pub fn windows(&self) -> Vec<Window> {
        if self.per_minute == 0 {
            return Vec::new();
        }
        vec![Window::new(self.per_minute, 60)]
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
