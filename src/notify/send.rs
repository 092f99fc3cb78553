//! The channels' senders: e-mail (lettre over SMTP), SMS (a generic HTTP
//! gateway, Aliyun Dysmsapi, Tencent Cloud SMS), phone calls (a gateway,
//! Aliyun Dyvmsapi, Tencent VMS), group robots (WeCom, DingTalk, one part
//! of a message at a time) and a generic JSON webhook. Each send ends in an
//! [`Outcome`] read from the provider's answer by `classify`.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};

pub use super::classify::Outcome;
use super::classify::{self, short};
use super::outbox::Body;
use super::providers::{aliyun_rpc, tencent_api, Tc3Call};
use super::sign;
use crate::config::{BodyFormat, ChannelsSection, SmsChannel, SmsProvider, VoiceChannel, VoiceProvider};

/// The longest one e-mail may take, connection to the server's last answer.
const SMTP_DEADLINE: Duration = Duration::from_secs(60);

/// WeCom's limit on a markdown message's content, in bytes.
pub const WECOM_MAX_BYTES: usize = 4096;
/// DingTalk refuses request bodies over 20 KB.
pub const DINGTALK_MAX_BODY: usize = 20_000;

/// The sending side of every configured channel.
pub struct Senders {
    pub(super) http: reqwest::Client,
    email: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    pub(super) sms: Option<SmsChannel>,
    pub(super) voice: Option<VoiceChannel>,
    throttle: Duration,
    dingtalk_throttle: Duration,
}

impl Senders {
    pub fn new(c: &ChannelsSection) -> Result<Senders, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("floodguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let email = match &c.email {
            None => None,
            Some(e) => {
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::from_url(&e.smtp_url)
                    .map_err(|err| format!("channels.email.smtp_url: {err}"))?
                    .timeout(Some(Duration::from_secs(20)));
                if let Some(ca) = &e.ca_file {
                    b = b.tls(smtp_tls(&e.smtp_url, ca)?);
                }
                if let (Some(u), Some(p)) = (&e.username, &e.password) {
                    b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(
                        u.clone(),
                        p.expose().to_string(),
                    ));
                }
                let from: Mailbox = e.from.parse().map_err(|err| format!("channels.email.from: {err}"))?;
                Some((b.build(), from))
            }
        };
        Ok(Senders {
            http,
            email,
            sms: c.sms.clone(),
            voice: c.voice.clone(),
            throttle: c.robots.throttled_for.get(),
            dingtalk_throttle: c.robots.dingtalk_throttled_for.get(),
        })
    }

    pub fn has(&self, channel: &str) -> bool {
        match channel {
            "email" => self.email.is_some(),
            "sms" => self.sms.is_some(),
            "voice" => self.voice.is_some(),
            _ => true,
        }
    }

    /// Sends one message whole (a robot's markdown as one part). `key` is
    /// the idempotency key, passed on where the provider has a field for it.
    pub async fn send(&self, channel: &str, body: &Body, name: &str, key: &str) -> Outcome {
        match channel {
            "email" => self.email(body, name, key).await,
            "sms" => self.sms(body, key).await,
            "voice" => self.voice(body, key).await,
            "wecom" | "dingtalk" => self.robot(channel, body, &body.rendered.markdown).await,
            "webhook" => {
                let msg = json!({
                    "idempotency_key": key, "subject": body.rendered.subject, "text": body.rendered.text,
                    "markdown": body.rendered.markdown, "alert_ids": body.alert_ids,
                });
                match self.post_json(&body.to, &msg, Some(key)).await {
                    Ok((s, r, b)) => classify::http(s, r.as_deref(), &b),
                    Err(o) => o,
                }
            }
            other => Outcome::Failed(format!("unknown channel {other}")),
        }
    }

    /// Sends one part (`text`) of a robot message.
    pub async fn robot(&self, channel: &str, body: &Body, text: &str) -> Outcome {
        match channel {
            "wecom" => {
                let msg = json!({"msgtype": "markdown", "markdown": {"content": text}});
                match self.post_json(&body.to, &msg, None).await {
                    Ok((s, _, b)) => classify::wecom(s, &b, self.throttle),
                    Err(o) => o,
                }
            }
            _ => {
                let mut url = body.to.clone();
                if let Some(secret) = &body.secret {
                    let ts = chrono::Utc::now().timestamp_millis();
                    let sign = sign::dingtalk_sign(secret, ts);
                    let sep = if url.contains('?') { '&' } else { '?' };
                    url = format!("{url}{sep}timestamp={ts}&sign={}", sign::aliyun_encode(&sign));
                }
                let msg = dingtalk_body(&body.rendered.subject, text);
                match self.post_json(&url, &msg, None).await {
                    Ok((s, _, b)) => classify::dingtalk(s, &b, self.dingtalk_throttle),
                    Err(o) => o,
                }
            }
        }
    }

    async fn post_json(
        &self,
        url: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Result<(u16, Option<String>, String), Outcome> {
        let mut req = self.http.post(url).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        respond(req).await
    }

    async fn email(&self, body: &Body, name: &str, key: &str) -> Outcome {
        let Some((transport, from)) = &self.email else {
            return Outcome::Failed("no [channels.email]".into());
        };
        let to: Mailbox = match format!("{name} <{}>", body.to).parse().or_else(|_| body.to.parse()) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(format!("address {:?}: {e}", body.to)),
        };
        let r = &body.rendered;
        let msg = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(r.subject.clone())
            .message_id(Some(format!("<{key}@floodguard>")))
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(r.text.clone()))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(r.html.clone())),
            );
        let msg = match msg {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(format!("cannot build the e-mail: {e}")),
        };
        // lettre's timeout covers each read, not a server that stops
        // answering mid-conversation (seen with a refused AUTH): bound it all.
        let sent = tokio::time::timeout(SMTP_DEADLINE, transport.send(msg)).await;
        let Ok(sent) = sent else {
            return Outcome::Retry {
                after: None,
                reason: format!("no answer from the SMTP server within {} s", SMTP_DEADLINE.as_secs()),
            };
        };
        match sent {
            Ok(resp) => {
                Outcome::sent(&format!("{} {}", resp.code(), resp.message().collect::<Vec<_>>().join(" ")))
            }
            // 535: authentication credentials invalid; 530: authentication required.
            Err(e) if e.status().is_some_and(|c| matches!(u16::from(c), 530 | 535)) => {
                Outcome::Refused(short(&e.to_string()))
            }
            Err(e) if e.is_permanent() => Outcome::Failed(short(&e.to_string())),
            Err(e) => Outcome::Retry { after: None, reason: short(&e.to_string()) },
        }
    }

    async fn sms(&self, body: &Body, key: &str) -> Outcome {
        let Some(c) = &self.sms else { return Outcome::Failed("no [channels.sms]".into()) };
        match c.provider {
            SmsProvider::Http => {
                let url = c.url.clone().unwrap_or_default();
                self.gateway(&url, &c.fields, &c.headers, c.format, body, &body.rendered.sms, key).await
            }
            SmsProvider::Aliyun => {
                let params_json = serde_json::to_string(&body.rendered.params).unwrap_or_default();
                let p = [
                    ("OutId", key),
                    ("PhoneNumbers", body.to.as_str()),
                    ("SignName", c.sign_name.as_deref().unwrap_or("")),
                    ("TemplateCode", c.template.as_deref().unwrap_or("")),
                    ("TemplateParam", params_json.as_str()),
                ];
                let url = c.url.as_deref().unwrap_or("https://dysmsapi.aliyuncs.com/");
                let secret = c.key_secret.as_ref().map_or("", |s| s.expose());
                let req = aliyun_rpc(
                    &self.http,
                    url,
                    c.key_id.as_deref().unwrap_or(""),
                    secret,
                    c.region.as_deref(),
                    "SendSms",
                    &p,
                );
                match respond(req).await {
                    Ok((s, _, b)) => classify::aliyun(s, &b),
                    Err(o) => o,
                }
            }
            SmsProvider::Tencent => {
                let payload = json!({
                    "PhoneNumberSet": [e164(&body.to)],
                    "SmsSdkAppId": c.app_id.clone().unwrap_or_default(),
                    "SignName": c.sign_name.clone().unwrap_or_default(),
                    "TemplateId": c.template.clone().unwrap_or_default(),
                    "TemplateParamSet": ordered(&c.template_params, &body.rendered.params),
                    "SessionContext": key,
                });
                let call = Tc3Call {
                    url: c.url.as_deref().unwrap_or("https://sms.tencentcloudapi.com/"),
                    key_id: c.key_id.as_deref().unwrap_or(""),
                    key_secret: c.key_secret.as_ref().map_or("", |s| s.expose()),
                    service: "sms",
                    action: "SendSms",
                    version: "2021-01-11",
                    region: c.region.as_deref().unwrap_or("ap-guangzhou"),
                };
                match respond(tencent_api(&self.http, &call, &payload.to_string())).await {
                    Ok((s, _, b)) => classify::tencent(s, &b),
                    Err(o) => o,
                }
            }
            SmsProvider::Log => {
                // Masked: the log is no place for a phone number or a live ack link.
                tracing::info!(
                    to = %crate::redact::phone(&body.to),
                    key,
                    text = %crate::redact::text(&body.rendered.sms),
                    "SMS (provider \"log\": not sent)"
                );
                Outcome::sent("written to the log")
            }
        }
    }

    /// A phone call that reads the message out (语音通知).
    async fn voice(&self, body: &Body, key: &str) -> Outcome {
        let Some(v) = &self.voice else { return Outcome::Failed("no [channels.voice]".into()) };
        let secret = v.key_secret.as_ref().map_or("", |s| s.expose());
        match v.provider {
            VoiceProvider::Http => {
                let url = v.url.clone().unwrap_or_default();
                self.gateway(&url, &v.fields, &v.headers, v.format, body, &body.rendered.voice, key).await
            }
            VoiceProvider::Aliyun => {
                let params_json = serde_json::to_string(&body.rendered.params).unwrap_or_default();
                let plays = v.play_times.to_string();
                let mut p = vec![
                    ("CalledNumber", body.to.trim_start_matches("+86")),
                    ("TtsCode", v.template.as_deref().unwrap_or("")),
                    ("TtsParam", params_json.as_str()),
                    ("PlayTimes", plays.as_str()),
                    ("OutId", key),
                ];
                if let Some(show) = v.show_number.as_deref().filter(|s| !s.is_empty()) {
                    p.push(("CalledShowNumber", show));
                }
                let url = v.url.as_deref().unwrap_or("https://dyvmsapi.aliyuncs.com/");
                let req = aliyun_rpc(
                    &self.http,
                    url,
                    v.key_id.as_deref().unwrap_or(""),
                    secret,
                    v.region.as_deref(),
                    "SingleCallByTts",
                    &p,
                );
                match respond(req).await {
                    Ok((s, _, b)) => classify::aliyun(s, &b),
                    Err(o) => o,
                }
            }
            VoiceProvider::Tencent => {
                let payload = json!({
                    "TemplateId": v.template.clone().unwrap_or_default(),
                    "CalledNumber": e164(&body.to),
                    "VoiceSdkAppid": v.app_id.clone().unwrap_or_default(),
                    "TemplateParamSet": ordered(&v.template_params, &body.rendered.params),
                    "PlayTimes": v.play_times,
                    "SessionContext": key,
                });
                let call = Tc3Call {
                    url: v.url.as_deref().unwrap_or("https://vms.tencentcloudapi.com/"),
                    key_id: v.key_id.as_deref().unwrap_or(""),
                    key_secret: secret,
                    service: "vms",
                    action: "SendTtsVoice",
                    version: "2020-09-02",
                    region: v.region.as_deref().unwrap_or("ap-guangzhou"),
                };
                match respond(tencent_api(&self.http, &call, &payload.to_string())).await {
                    Ok((s, _, b)) => classify::tencent(s, &b),
                    Err(o) => o,
                }
            }
            VoiceProvider::Log => {
                tracing::info!(
                    to = %crate::redact::phone(&body.to),
                    key,
                    text = %crate::redact::text(&body.rendered.voice),
                    "call (provider \"log\": not placed)"
                );
                Outcome::Sent { answer: "written to the log".into(), id: Some(format!("log-{key}")) }
            }
        }
    }

    /// A gateway of one's own: the body fields with `{phone}`, `{text}`
    /// and `{id}` filled in, the idempotency key as a header too.
    #[allow(clippy::too_many_arguments)]
    async fn gateway(
        &self,
        url: &str,
        fields: &BTreeMap<String, String>,
        headers: &BTreeMap<String, crate::config::Secret>,
        format: BodyFormat,
        body: &Body,
        text: &str,
        key: &str,
    ) -> Outcome {
        let fill = |t: &str| t.replace("{phone}", &body.to).replace("{text}", text).replace("{id}", key);
        let fields: BTreeMap<String, String> = fields.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
        let mut req = self.http.post(url).header("Idempotency-Key", key);
        for (h, v) in headers {
            req = req.header(h.as_str(), v.expose());
        }
        req = match format {
            BodyFormat::Json => req.json(&fields),
            BodyFormat::Form => req.form(&fields),
        };
        match respond(req).await {
            Ok((s, r, b)) => classify::http(s, r.as_deref(), &b),
            Err(o) => o,
        }
    }
}

/// DingTalk's markdown message.
pub fn dingtalk_body(title: &str, text: &str) -> Value {
    json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}})
}

/// `+86…` as Tencent wants phone numbers.
fn e164(phone: &str) -> String {
    if phone.starts_with('+') {
        phone.to_string()
    } else {
        format!("+86{phone}")
    }
}

/// Template parameters in the configured order.
fn ordered(order: &[String], params: &BTreeMap<String, String>) -> Vec<String> {
    order.iter().map(|k| params.get(k).cloned().unwrap_or_default()).collect()
}

/// Sends a request: (status, Retry-After, body). No connection: not sent
/// (retry). Sent and no whole answer (a timeout, a dropped connection): the
/// provider may have taken it — [`Outcome::Unknown`].
pub(super) async fn respond(req: reqwest::RequestBuilder) -> Result<(u16, Option<String>, String), Outcome> {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match r.text().await {
                Ok(body) => Ok((status, retry, body)),
                // The status came but the body was cut: for a success the
                // provider took it, its id is lost.
                Err(e) if (200..300).contains(&status) => Err(Outcome::Unknown(short(&chain(&e)))),
                Err(_) => Ok((status, retry, String::new())),
            }
        }
        // reqwest's errors name the URL, with its key: redacted whole, before shortening.
        Err(e) if e.is_connect() || e.is_builder() => {
            Err(Outcome::Retry { after: None, reason: short(&crate::redact::text(&chain(&e))) })
        }
        Err(e) => Err(Outcome::Unknown(short(&crate::redact::text(&chain(&e))))),
    }
}

/// The TLS of `smtp_url` (as lettre reads it) trusting the CA in `ca`
/// besides the public roots.
fn smtp_tls(smtp_url: &str, ca: &std::path::Path) -> Result<Tls, String> {
    let url = reqwest::Url::parse(smtp_url).map_err(|e| format!("channels.email.smtp_url: {e}"))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let pem = std::fs::read(ca).map_err(|e| format!("channels.email.ca_file {}: {e}", ca.display()))?;
    let cert =
        Certificate::from_pem(&pem).map_err(|e| format!("channels.email.ca_file {}: {e}", ca.display()))?;
    let params = TlsParameters::builder(host)
        .add_root_certificate(cert)
        .build_rustls()
        .map_err(|e| format!("channels.email.ca_file: {e}"))?;
    let mode = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.to_string());
    Ok(match (url.scheme(), mode.as_deref()) {
        ("smtps", _) => Tls::Wrapper(params),
        (_, Some("required")) => Tls::Required(params),
        (_, Some("opportunistic")) => Tls::Opportunistic(params),
        _ => Tls::None,
    })
}

/// An error with its causes ("error sending request: … Connection refused").
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_ca_is_trusted_in_every_tls_mode() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["mail.example".into()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let tls = |url: &str| smtp_tls(url, &path).unwrap();
        assert!(matches!(tls("smtps://mail.example:465"), Tls::Wrapper(_)));
        assert!(matches!(tls("smtp://mail.example:587?tls=required"), Tls::Required(_)));
        assert!(matches!(tls("smtp://mail.example:587?tls=opportunistic"), Tls::Opportunistic(_)));
        assert!(matches!(tls("smtp://127.0.0.1:25"), Tls::None));
        assert!(smtp_tls("smtps://mail.example", &dir.path().join("missing.pem")).is_err());
    }
}
