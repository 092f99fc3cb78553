//! An HTTP peer standing in for the SMS providers and group robots: it
//! records every request, checks Aliyun, Tencent Cloud and DingTalk
//! signatures with an implementation of its own (written from the
//! providers' documentation, sharing no code with floodguard), and answers
//! as told: success, 500 for a while, WeCom's rate-limit code, or slowly.
//!
//! Paths: `/sms` (a generic JSON gateway), `/aliyun`, `/tencent`, `/wecom`,
//! `/dingtalk`, `/webhook`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const ALIYUN_SECRET: &str = "aliyun-test-secret";
pub const TENCENT_SECRET: &str = "tencent-test-secret";
pub const DINGTALK_SECRET: &str = "SECdingtalk-test-secret";

/// One request as received, and how it was answered.
#[derive(Debug, Clone)]
pub struct Req {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The provider's idempotency value: the gateway's `request_id`,
    /// Aliyun's OutId, Tencent's SessionContext, the webhook's header.
    pub key: Option<String>,
    /// The phone (SMS) or robot (path) it was for.
    pub to: String,
    /// The text a person reads (SMS text, template parameters, markdown).
    pub text: String,
    /// The signature checked out (or there was none to check).
    pub signature_ok: bool,
    /// Answered with success.
    pub accepted: bool,
    pub at: Instant,
}

#[derive(Default)]
pub struct Behaviour {
    /// Answer 500 to everything until then.
    pub fail_until: Option<Instant>,
    /// Answer WeCom requests with errcode 45009 (too fast) this many times.
    pub wecom_limited: usize,
    /// Wait this long before answering.
    pub delay: Duration,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Req>,
    behaviour: Behaviour,
}

#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Peer {
    /// Starts on a free loopback port, on the current runtime.
    pub async fn start() -> Peer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = Peer { addr, inner: Arc::default() };
        let app = axum::Router::new().fallback(handle).with_state(peer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        peer
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn behave(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.inner.lock().unwrap().behaviour);
    }

    pub fn requests(&self) -> Vec<Req> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests to `path` that were answered with success.
    pub fn accepted(&self, path: &str) -> Vec<Req> {
        self.requests().into_iter().filter(|r| r.path == path && r.accepted).collect()
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// RFC 3986 percent-encoding as Aliyun's POP signature wants it.
fn pop_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(body: &str) -> BTreeMap<String, String> {
    url_pairs(body).collect()
}

fn url_pairs(s: &str) -> impl Iterator<Item = (String, String)> + '_ {
    s.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let dec = |x: &str| {
            percent_encoding::percent_decode_str(&x.replace('+', " ")).decode_utf8_lossy().into_owned()
        };
        (dec(k), dec(v))
    })
}

/// Aliyun RPC signature: HMAC-SHA1 over `POST&%2F&` + the encoded, sorted
/// query, keyed with `secret&`.
fn aliyun_ok(params: &BTreeMap<String, String>) -> bool {
    let Some(given) = params.get("Signature") else { return false };
    let canonical = params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", pop_encode(k), pop_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("POST&{}&{}", pop_encode("/"), pop_encode(&canonical));
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(format!("{ALIYUN_SECRET}&").as_bytes()).unwrap();
    m.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes()) == *given
}

/// Tencent Cloud TC3-HMAC-SHA256, rebuilt from the headers as received.
fn tencent_ok(headers: &HashMap<String, String>, body: &str) -> bool {
    let (Some(auth), Some(ts)) = (headers.get("authorization"), headers.get("x-tc-timestamp")) else {
        return false;
    };
    let field = |name: &str| {
        auth.split([' ', ',']).find_map(|p| p.strip_prefix(name).map(str::to_string)).unwrap_or_default()
    };
    let (credential, signed, signature) =
        (field("Credential="), field("SignedHeaders="), field("Signature="));
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 4 {
        return false;
    }
    let (date, service) = (scope[1], scope[2]);
    let canonical_headers: String =
        signed.split(';').map(|h| format!("{h}:{}\n", headers.get(h).map_or("", |v| v.trim()))).collect();
    let canonical =
        format!("POST\n/\n\n{canonical_headers}\n{signed}\n{}", hex::encode(Sha256::digest(body.as_bytes())));
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{date}/{service}/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac_sha256(format!("TC3{TENCENT_SECRET}").as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, service.as_bytes());
    let k = hmac_sha256(&k, b"tc3_request");
    hex::encode(hmac_sha256(&k, to_sign.as_bytes())) == signature
}

/// DingTalk 加签: `sign` = base64(HMAC-SHA256(secret, timestamp\nsecret)),
/// the timestamp within an hour of now.
fn dingtalk_ok(query: &str) -> bool {
    let q: HashMap<String, String> = url_pairs(query).collect();
    let (Some(ts), Some(sign)) = (q.get("timestamp"), q.get("sign")) else { return false };
    let fresh =
        ts.parse::<i64>().is_ok_and(|t| (chrono::Utc::now().timestamp_millis() - t).abs() < 3_600_000);
    let mac = hmac_sha256(DINGTALK_SECRET.as_bytes(), format!("{ts}\n{DINGTALK_SECRET}").as_bytes());
    fresh && base64::engine::general_purpose::STANDARD.encode(mac) == *sign
}

async fn handle(State(peer): State<Peer>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = String::from_utf8_lossy(&body).into_owned();
    let path = uri.path().to_string();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let (key, to, text, signature_ok) = match path.as_str() {
        "/sms" => (
            json["request_id"].as_str().map(String::from),
            json["mobile"].as_str().unwrap_or_default().to_string(),
            json["content"].as_str().unwrap_or_default().to_string(),
            true,
        ),
        "/aliyun" => {
            let p = form(&body);
            let ok = aliyun_ok(&p);
            (
                p.get("OutId").cloned(),
                p.get("PhoneNumbers").cloned().unwrap_or_default(),
                p.get("TemplateParam").cloned().unwrap_or_default(),
                ok,
            )
        }
        "/tencent" => (
            json["SessionContext"].as_str().map(String::from),
            json["PhoneNumberSet"][0].as_str().unwrap_or_default().to_string(),
            json["TemplateParamSet"].to_string(),
            tencent_ok(&headers, &body),
        ),
        "/wecom" => {
            (None, path.clone(), json["markdown"]["content"].as_str().unwrap_or_default().to_string(), true)
        }
        "/dingtalk" => (
            None,
            path.clone(),
            json["markdown"]["text"].as_str().unwrap_or_default().to_string(),
            dingtalk_ok(uri.query().unwrap_or("")),
        ),
        _ => (
            headers.get("idempotency-key").cloned(),
            path.clone(),
            json["text"].as_str().unwrap_or_default().to_string(),
            true,
        ),
    };
    let (delay, failing, limited) = {
        let mut inner = peer.inner.lock().unwrap();
        let b = &mut inner.behaviour;
        let failing = b.fail_until.is_some_and(|t| Instant::now() < t);
        let limited = !failing && path == "/wecom" && b.wecom_limited > 0;
        if limited {
            b.wecom_limited -= 1;
        }
        (b.delay, failing, limited)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, answer, accepted) = if failing {
        (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "down for the test"}), false)
    } else if !signature_ok {
        let answer = match path.as_str() {
            "/aliyun" => {
                json!({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"})
            }
            "/tencent" => {
                json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}}})
            }
            _ => json!({"errcode": 310000, "errmsg": "sign not match"}),
        };
        (if path == "/aliyun" { StatusCode::BAD_REQUEST } else { StatusCode::OK }, answer, false)
    } else if limited {
        (StatusCode::OK, json!({"errcode": 45009, "errmsg": "api freq out of limit"}), false)
    } else {
        let answer = match path.as_str() {
            "/aliyun" => {
                json!({"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5"})
            }
            "/tencent" => json!({"Response": {"SendStatusSet": [{"Code": "Ok", "Message": "send success",
                "SerialNo": "5000:1045710669157053657849499619", "PhoneNumber": to}], "RequestId": "a0aabda6"}}),
            "/wecom" | "/dingtalk" => json!({"errcode": 0, "errmsg": "ok"}),
            _ => json!({"code": 0, "message": "queued"}),
        };
        (StatusCode::OK, answer, true)
    };
    let req = Req { path, headers, body, key, to, text, signature_ok, accepted, at: Instant::now() };
    peer.inner.lock().unwrap().requests.push(req);
    (status, axum::Json(answer)).into_response()
}
