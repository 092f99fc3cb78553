//! The channels' senders: e-mail (lettre over SMTP), SMS (a generic HTTP
//! gateway, Aliyun Dysmsapi, Tencent Cloud SMS), group robots (WeCom,
//! DingTalk) and a generic JSON webhook. Each send ends in an [`Outcome`],
//! decided from the provider's answer by pure functions tested alone.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};

use super::outbox::Body;
use super::sign;
use crate::config::{BodyFormat, ChannelsSection, SmsChannel, SmsProvider};

/// How a send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accepted by the provider (its answer, shortened).
    Sent(String),
    /// Try again later (after the provider's wait, or the backoff).
    Retry { after: Option<Duration>, reason: String },
    /// The provider says too fast for this recipient: wait, then merge.
    Throttled { after: Duration, reason: String },
    /// It will not work (a bad number, a refused template): give up.
    Failed(String),
}

/// The longest one e-mail may take, connection to the server's last answer.
const SMTP_DEADLINE: Duration = Duration::from_secs(60);

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn retry_after(h: Option<&str>) -> Option<Duration> {
    h.and_then(|v| crate::tsdb::retry::parse_retry_after(v, std::time::SystemTime::now()))
}

/// A plain HTTP answer: 2xx sent, 429 throttled, 408/5xx retried, other 4xx failed.
pub fn classify_http(status: u16, retry: Option<&str>, body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Sent(short(body)),
        429 => Outcome::Throttled {
            after: retry_after(retry).unwrap_or(Duration::from_secs(60)),
            reason: format!("HTTP 429 {}", short(body)),
        },
        408 | 500..=599 => {
            Outcome::Retry { after: retry_after(retry), reason: format!("HTTP {status} {}", short(body)) }
        }
        _ => Outcome::Failed(format!("HTTP {status} {}", short(body))),
    }
}

/// WeCom group robot: `errcode` 0 sent, 45009 too fast, -1 busy (retry).
pub fn classify_wecom(status: u16, body: &str, throttle: Duration) -> Outcome {
    if !(200..300).contains(&status) {
        return classify_http(status, None, body);
    }
    match serde_json::from_str::<Value>(body).ok().and_then(|v| v["errcode"].as_i64()) {
        Some(0) => Outcome::Sent(short(body)),
        Some(45009) => Outcome::Throttled { after: throttle, reason: short(body) },
        Some(-1) => Outcome::Retry { after: None, reason: short(body) },
        _ => Outcome::Failed(short(body)),
    }
}

/// DingTalk robot: `errcode` 0 sent, 130101 too fast (throttled ~10 min).
pub fn classify_dingtalk(status: u16, body: &str, throttle: Duration) -> Outcome {
    if !(200..300).contains(&status) {
        return classify_http(status, None, body);
    }
    match serde_json::from_str::<Value>(body).ok().and_then(|v| v["errcode"].as_i64()) {
        Some(0) => Outcome::Sent(short(body)),
        Some(130101) => {
            Outcome::Throttled { after: throttle.max(Duration::from_secs(600)), reason: short(body) }
        }
        _ => Outcome::Failed(short(body)),
    }
}

/// Aliyun SendSms: `Code` OK sent; flow control throttled; others failed.
pub fn classify_aliyun(status: u16, body: &str) -> Outcome {
    let code = serde_json::from_str::<Value>(body).ok().and_then(|v| v["Code"].as_str().map(str::to_string));
    match (status, code.as_deref()) {
        (200..=299, Some("OK")) => Outcome::Sent(short(body)),
        (_, Some(c)) if c.starts_with("isv.BUSINESS_LIMIT_CONTROL") || c.starts_with("Throttling") => {
            Outcome::Throttled { after: Duration::from_secs(60), reason: short(body) }
        }
        (_, Some(c)) if c.starts_with("isp.") || c == "InternalError" || c == "ServiceUnavailable" => {
            Outcome::Retry { after: None, reason: short(body) }
        }
        (500..=599 | 408 | 429, _) => classify_http(status, None, body),
        _ => Outcome::Failed(short(body)),
    }
}

/// Tencent SendSms: `Response.SendStatusSet[0].Code` Ok sent; limit codes
/// throttled; internal errors retried.
pub fn classify_tencent(status: u16, body: &str) -> Outcome {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = v["Response"]["Error"]["Code"]
        .as_str()
        .or_else(|| v["Response"]["SendStatusSet"][0]["Code"].as_str())
        .unwrap_or("");
    match code {
        "Ok" if (200..300).contains(&status) => Outcome::Sent(short(body)),
        c if c.contains("LimitExceeded") => {
            Outcome::Throttled { after: Duration::from_secs(60), reason: short(body) }
        }
        c if c.starts_with("InternalError") || c == "RequestLimitExceeded.Global" => {
            Outcome::Retry { after: None, reason: short(body) }
        }
        "" => classify_http(status, None, body),
        _ => Outcome::Failed(short(body)),
    }
}

/// The sending side of every configured channel.
pub struct Senders {
    http: reqwest::Client,
    email: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    sms: Option<SmsChannel>,
    throttle: Duration,
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
        Ok(Senders { http, email, sms: c.sms.clone(), throttle: c.robots.throttled_for.get() })
    }

    pub fn has(&self, channel: &str) -> bool {
        match channel {
            "email" => self.email.is_some(),
            "sms" => self.sms.is_some(),
            _ => true,
        }
    }

    /// Sends one row. `key` is the idempotency key, passed on where the
    /// provider has a field for it.
    pub async fn send(&self, channel: &str, body: &Body, name: &str, key: &str) -> Outcome {
        match channel {
            "email" => self.email(body, name, key).await,
            "sms" => self.sms(body, key).await,
            "wecom" => {
                let msg = json!({"msgtype": "markdown", "markdown": {"content": body.rendered.markdown}});
                match self.post_json(&body.to, &msg, None).await {
                    Ok((s, _, b)) => classify_wecom(s, &b, self.throttle),
                    Err(o) => o,
                }
            }
            "dingtalk" => {
                let mut url = body.to.clone();
                if let Some(secret) = &body.secret {
                    let ts = chrono::Utc::now().timestamp_millis();
                    let sign = sign::dingtalk_sign(secret, ts);
                    let sep = if url.contains('?') { '&' } else { '?' };
                    url = format!("{url}{sep}timestamp={ts}&sign={}", sign::aliyun_encode(&sign));
                }
                let msg = json!({"msgtype": "markdown", "markdown": {"title": body.rendered.subject, "text": body.rendered.markdown}});
                match self.post_json(&url, &msg, None).await {
                    Ok((s, _, b)) => classify_dingtalk(s, &b, self.throttle),
                    Err(o) => o,
                }
            }
            "webhook" => {
                let msg = json!({
                    "idempotency_key": key, "subject": body.rendered.subject, "text": body.rendered.text,
                    "markdown": body.rendered.markdown, "alert_ids": body.alert_ids,
                });
                match self.post_json(&body.to, &msg, Some(key)).await {
                    Ok((s, r, b)) => classify_http(s, r.as_deref(), &b),
                    Err(o) => o,
                }
            }
            other => Outcome::Failed(format!("unknown channel {other}")),
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
            Ok(resp) => Outcome::Sent(short(&format!(
                "{} {}",
                resp.code(),
                resp.message().collect::<Vec<_>>().join(" ")
            ))),
            Err(e) if e.is_permanent() => Outcome::Failed(short(&e.to_string())),
            Err(e) => Outcome::Retry { after: None, reason: short(&e.to_string()) },
        }
    }

    async fn sms(&self, body: &Body, key: &str) -> Outcome {
        let Some(c) = &self.sms else { return Outcome::Failed("no [channels.sms]".into()) };
        match c.provider {
            SmsProvider::Http => {
                let url = c.url.clone().unwrap_or_default();
                let fill = |t: &str| {
                    t.replace("{phone}", &body.to).replace("{text}", &body.rendered.sms).replace("{id}", key)
                };
                let fields: BTreeMap<String, String> =
                    c.fields.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
                let mut req = self.http.post(&url).header("Idempotency-Key", key);
                for (h, v) in &c.headers {
                    req = req.header(h.as_str(), v.expose());
                }
                req = match c.format {
                    BodyFormat::Json => req.json(&fields),
                    BodyFormat::Form => req.form(&fields),
                };
                match respond(req).await {
                    Ok((s, r, b)) => classify_http(s, r.as_deref(), &b),
                    Err(o) => o,
                }
            }
            SmsProvider::Aliyun => self.aliyun(c, body, key).await,
            SmsProvider::Tencent => self.tencent(c, body, key).await,
            SmsProvider::Log => {
                // Masked: the log is no place for a phone number or a live ack link.
                tracing::info!(
                    to = %crate::redact::phone(&body.to),
                    key,
                    text = %crate::redact::text(&body.rendered.sms),
                    "SMS (provider \"log\": not sent)"
                );
                Outcome::Sent("written to the log".into())
            }
        }
    }

    async fn aliyun(&self, c: &SmsChannel, body: &Body, key: &str) -> Outcome {
        let url = c.url.clone().unwrap_or_else(|| "https://dysmsapi.aliyuncs.com/".into());
        let params_json = serde_json::to_string(&body.rendered.params).unwrap_or_default();
        let nonce = super::acklink::nonce();
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut p: Vec<(&str, &str)> = vec![
            ("AccessKeyId", c.key_id.as_deref().unwrap_or("")),
            ("Action", "SendSms"),
            ("Format", "JSON"),
            ("OutId", key),
            ("PhoneNumbers", &body.to),
            ("RegionId", c.region.as_deref().unwrap_or("cn-hangzhou")),
            ("SignName", c.sign_name.as_deref().unwrap_or("")),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", &nonce),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", c.template.as_deref().unwrap_or("")),
            ("TemplateParam", &params_json),
            ("Timestamp", &ts),
            ("Version", "2017-05-25"),
        ];
        let secret = c.key_secret.as_ref().map_or("", |s| s.expose());
        let signature = sign::aliyun_signature("POST", &p, secret);
        p.push(("Signature", &signature));
        match respond(self.http.post(&url).form(&p)).await {
            Ok((s, _, b)) => classify_aliyun(s, &b),
            Err(o) => o,
        }
    }

    async fn tencent(&self, c: &SmsChannel, body: &Body, key: &str) -> Outcome {
        let url = c.url.clone().unwrap_or_else(|| "https://sms.tencentcloudapi.com/".into());
        let host = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            })
            .unwrap_or_default();
        let phone = if body.to.starts_with('+') { body.to.clone() } else { format!("+86{}", body.to) };
        let payload = json!({
            "PhoneNumberSet": [phone],
            "SmsSdkAppId": c.app_id.clone().unwrap_or_default(),
            "SignName": c.sign_name.clone().unwrap_or_default(),
            "TemplateId": c.template.clone().unwrap_or_default(),
            "TemplateParamSet": c.template_params.iter()
                .map(|k| body.rendered.params.get(k).cloned().unwrap_or_default())
                .collect::<Vec<_>>(),
            "SessionContext": key,
        })
        .to_string();
        let ts = chrono::Utc::now().timestamp();
        let content_type = "application/json; charset=utf-8";
        let tc3 = sign::Tc3 {
            secret_id: c.key_id.as_deref().unwrap_or(""),
            secret_key: c.key_secret.as_ref().map_or("", |s| s.expose()),
            service: "sms",
            host: &host,
            content_type,
            payload: &payload,
            timestamp: ts,
        };
        let req = self
            .http
            .post(&url)
            .header("Authorization", tc3.authorization())
            .header("Content-Type", content_type)
            .header("X-TC-Action", "SendSms")
            .header("X-TC-Version", "2021-01-11")
            .header("X-TC-Timestamp", ts.to_string())
            .header("X-TC-Region", c.region.clone().unwrap_or_else(|| "ap-guangzhou".into()))
            .body(payload);
        match respond(req).await {
            Ok((s, _, b)) => classify_tencent(s, &b),
            Err(o) => o,
        }
    }
}

async fn respond(req: reqwest::RequestBuilder) -> Result<(u16, Option<String>, String), Outcome> {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok((status, retry, r.text().await.unwrap_or_default()))
        }
        // reqwest's errors name the URL, with its key: redacted whole, before shortening.
        Err(e) => Err(Outcome::Retry { after: None, reason: short(&crate::redact::text(&chain(&e))) }),
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
fn chain(e: &dyn std::error::Error) -> String {
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

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn http_answers() {
        assert!(matches!(classify_http(200, None, "ok"), Outcome::Sent(_)));
        assert!(
            matches!(classify_http(429, Some("7"), ""), Outcome::Throttled { after, .. } if after == Duration::from_secs(7))
        );
        assert!(matches!(classify_http(429, None, ""), Outcome::Throttled { after, .. } if after == T));
        assert!(
            matches!(classify_http(503, Some("3"), ""), Outcome::Retry { after: Some(a), .. } if a == Duration::from_secs(3))
        );
        assert!(matches!(classify_http(500, None, ""), Outcome::Retry { after: None, .. }));
        assert!(
            matches!(classify_http(400, None, "bad number"), Outcome::Failed(r) if r.contains("bad number"))
        );
    }

    #[test]
    fn robot_answers() {
        assert!(matches!(classify_wecom(200, r#"{"errcode":0,"errmsg":"ok"}"#, T), Outcome::Sent(_)));
        assert!(matches!(
            classify_wecom(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#, T),
            Outcome::Throttled { .. }
        ));
        assert!(matches!(classify_wecom(200, r#"{"errcode":-1}"#, T), Outcome::Retry { .. }));
        assert!(matches!(
            classify_wecom(200, r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#, T),
            Outcome::Failed(_)
        ));
        assert!(matches!(classify_wecom(502, "", T), Outcome::Retry { .. }));
        assert!(matches!(classify_dingtalk(200, r#"{"errcode":0}"#, T), Outcome::Sent(_)));
        assert!(
            matches!(classify_dingtalk(200, r#"{"errcode":130101,"errmsg":"send too fast"}"#, T), Outcome::Throttled { after, .. } if after == Duration::from_secs(600)),
            "DingTalk holds a robot 10 minutes"
        );
        assert!(matches!(
            classify_dingtalk(200, r#"{"errcode":310000,"errmsg":"sign not match"}"#, T),
            Outcome::Failed(_)
        ));
    }

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

    #[test]
    fn provider_answers() {
        assert!(matches!(classify_aliyun(200, r#"{"Code":"OK","BizId":"1"}"#), Outcome::Sent(_)));
        assert!(matches!(
            classify_aliyun(200, r#"{"Code":"isv.BUSINESS_LIMIT_CONTROL"}"#),
            Outcome::Throttled { .. }
        ));
        assert!(matches!(
            classify_aliyun(200, r#"{"Code":"isv.MOBILE_NUMBER_ILLEGAL"}"#),
            Outcome::Failed(_)
        ));
        assert!(matches!(classify_aliyun(503, ""), Outcome::Retry { .. }));
        assert!(matches!(
            classify_tencent(200, r#"{"Response":{"SendStatusSet":[{"Code":"Ok"}],"RequestId":"x"}}"#),
            Outcome::Sent(_)
        ));
        assert!(matches!(
            classify_tencent(
                200,
                r#"{"Response":{"SendStatusSet":[{"Code":"LimitExceeded.PhoneNumberThirtySecondLimit"}]}}"#
            ),
            Outcome::Throttled { .. }
        ));
        assert!(matches!(
            classify_tencent(200, r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure"}}}"#),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            classify_tencent(200, r#"{"Response":{"Error":{"Code":"InternalError.Timeout"}}}"#),
            Outcome::Retry { .. }
        ));
    }
}
