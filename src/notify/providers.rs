//! Requests to the cloud providers, signed (`sign.rs`): Aliyun's RPC style
//! (Dysmsapi, Dyvmsapi: HMAC-SHA1 over the sorted form) and Tencent Cloud
//! API 3.0 (SMS, VMS: TC3-HMAC-SHA256) — and the queries that say what
//! became of a message: Aliyun `QuerySendDetails` and
//! `QueryCallDetailByCallId`, Tencent `PullSmsSendStatus`.

use reqwest::RequestBuilder;
use serde_json::json;

use super::classify::{self, Outcome, Pulled, Report};
use super::send::respond;
use super::sign;
use crate::config::{SmsChannel, VoiceChannel};
use crate::reading::TimestampNs;

/// An Aliyun RPC request (POST, form body): the common parameters, the
/// action's, and the signature over all of them.
pub fn aliyun_rpc(
    http: &reqwest::Client,
    url: &str,
    key_id: &str,
    secret: &str,
    region: Option<&str>,
    action: &str,
    params: &[(&str, &str)],
) -> RequestBuilder {
    let nonce = super::acklink::nonce();
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut p: Vec<(&str, &str)> = vec![
        ("AccessKeyId", key_id),
        ("Action", action),
        ("Format", "JSON"),
        ("RegionId", region.unwrap_or("cn-hangzhou")),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", &nonce),
        ("SignatureVersion", "1.0"),
        ("Timestamp", &ts),
        ("Version", "2017-05-25"),
    ];
    p.extend_from_slice(params);
    let signature = sign::aliyun_signature("POST", &p, secret);
    p.push(("Signature", &signature));
    http.post(url).form(&p)
}

/// A Tencent Cloud API 3.0 call.
pub struct Tc3Call<'a> {
    pub url: &'a str,
    pub key_id: &'a str,
    pub key_secret: &'a str,
    /// `sms`, `vms`.
    pub service: &'a str,
    pub action: &'a str,
    pub version: &'a str,
    pub region: &'a str,
}

/// A Tencent Cloud API 3.0 request (POST, JSON body), signed TC3-HMAC-SHA256.
pub fn tencent_api(http: &reqwest::Client, c: &Tc3Call<'_>, payload: &str) -> RequestBuilder {
    let host = reqwest::Url::parse(c.url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_default();
    let ts = chrono::Utc::now().timestamp();
    let content_type = "application/json; charset=utf-8";
    let tc3 = sign::Tc3 {
        secret_id: c.key_id,
        secret_key: c.key_secret,
        service: c.service,
        host: &host,
        content_type,
        payload,
        timestamp: ts,
    };
    http.post(c.url)
        .header("Authorization", tc3.authorization())
        .header("Content-Type", content_type)
        .header("X-TC-Action", c.action)
        .header("X-TC-Version", c.version)
        .header("X-TC-Timestamp", ts.to_string())
        .header("X-TC-Region", c.region)
        .body(payload.to_string())
}

/// The date of `t` in China (Aliyun keeps its records by Beijing date).
fn beijing_date(t: TimestampNs) -> String {
    chrono::DateTime::from_timestamp_nanos(t)
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y%m%d")
        .to_string()
}

/// Aliyun QuerySendDetails for the SMS with idempotency key `key` (its
/// OutId) sent to `phone` at `sent_at`.
pub async fn aliyun_sms_report(
    http: &reqwest::Client,
    c: &SmsChannel,
    phone: &str,
    key: &str,
    biz_id: Option<&str>,
    sent_at: TimestampNs,
) -> Report {
    let date = beijing_date(sent_at);
    let mut p =
        vec![("PhoneNumber", phone), ("SendDate", date.as_str()), ("PageSize", "50"), ("CurrentPage", "1")];
    if let Some(b) = biz_id.filter(|b| !b.is_empty()) {
        p.push(("BizId", b));
    }
    let url = c.url.as_deref().unwrap_or("https://dysmsapi.aliyuncs.com/");
    let secret = c.key_secret.as_ref().map_or("", |s| s.expose());
    let req = aliyun_rpc(
        http,
        url,
        c.key_id.as_deref().unwrap_or(""),
        secret,
        c.region.as_deref(),
        "QuerySendDetails",
        &p,
    );
    match respond(req).await {
        Ok((s, _, b)) => classify::aliyun_details(s, &b, key, biz_id),
        Err(o) => Report::QueryFailed(o.text().to_string()),
    }
}

/// Tencent PullSmsSendStatus: up to 100 statuses not pulled before.
pub async fn tencent_sms_pull(http: &reqwest::Client, c: &SmsChannel) -> Result<Vec<Pulled>, String> {
    let payload = json!({ "Limit": 100, "SmsSdkAppId": c.app_id.clone().unwrap_or_default() }).to_string();
    let call = Tc3Call {
        url: c.url.as_deref().unwrap_or("https://sms.tencentcloudapi.com/"),
        key_id: c.key_id.as_deref().unwrap_or(""),
        key_secret: c.key_secret.as_ref().map_or("", |s| s.expose()),
        service: "sms",
        action: "PullSmsSendStatus",
        version: "2021-01-11",
        region: c.region.as_deref().unwrap_or("ap-guangzhou"),
    };
    match respond(tencent_api(http, &call, &payload)).await {
        Ok((s, _, b)) => classify::tencent_pulled(s, &b),
        Err(o) => Err(o.text().to_string()),
    }
}

/// Aliyun's product id of voice notifications (语音通知), for
/// QueryCallDetailByCallId.
pub const ALIYUN_VOICE_PROD_ID: &str = "11000000300006";

/// Aliyun QueryCallDetailByCallId for a call placed at `placed_at`.
pub async fn aliyun_call_report(
    http: &reqwest::Client,
    v: &VoiceChannel,
    call_id: &str,
    placed_at: TimestampNs,
) -> Report {
    let query_date = (placed_at / 1_000_000).to_string();
    let p = [("CallId", call_id), ("ProdId", ALIYUN_VOICE_PROD_ID), ("QueryDate", query_date.as_str())];
    let url = v.url.as_deref().unwrap_or("https://dyvmsapi.aliyuncs.com/");
    let secret = v.key_secret.as_ref().map_or("", |s| s.expose());
    let req = aliyun_rpc(
        http,
        url,
        v.key_id.as_deref().unwrap_or(""),
        secret,
        v.region.as_deref(),
        "QueryCallDetailByCallId",
        &p,
    );
    match respond(req).await {
        Ok((s, _, b)) => classify::aliyun_call_detail(s, &b),
        Err(Outcome::Unknown(e) | Outcome::Retry { reason: e, .. }) => Report::QueryFailed(e),
        Err(o) => Report::QueryFailed(o.text().to_string()),
    }
}
