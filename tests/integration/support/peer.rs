//! An HTTP peer standing in for the SMS and voice providers and the group
//! robots: it records every request, checks Aliyun, Tencent Cloud and
//! DingTalk signatures with an implementation of its own (written from the
//! providers' documentation, sharing no code with floodguard), and answers
//! as told: success, 500 for a while, WeCom's rate-limit code, Aliyun's
//! per-number limit, refused credentials, DingTalk's 130101 and its 20 KB
//! body limit, or slowly — or it takes a message and drops the connection
//! before answering. It keeps what it took, so it answers receipt and
//! call-detail queries as the providers do: Aliyun `QuerySendDetails` and
//! `QueryCallDetailByCallId`, Tencent `PullSmsSendStatus` (each status
//! once).
//!
//! Paths: `/sms` (a generic JSON gateway), `/aliyun` (Dysmsapi), `/dyvms`
//! (Aliyun Dyvmsapi), `/tencent` (SMS), `/vms` (Tencent VMS), `/voice` (a
//! voice gateway), `/wecom`, `/dingtalk`, `/webhook`.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Answered with success (or, dropped, taken all the same).
    pub accepted: bool,
    /// The provider's action (Aliyun `Action`, Tencent `X-TC-Action`):
    /// SendSms, QuerySendDetails, SingleCallByTts, …; empty elsewhere.
    pub action: String,
    /// The body was too large and refused as such.
    pub too_large: bool,
    /// Taken, then the connection was dropped without an answer.
    pub dropped: bool,
    pub at: Instant,
}

impl Req {
    /// A message or call sent (not a query).
    pub fn is_send(&self) -> bool {
        !matches!(self.action.as_str(), "QuerySendDetails" | "PullSmsSendStatus" | "QueryCallDetailByCallId")
    }

    /// A form or JSON field of the request.
    pub fn field(&self, name: &str) -> Option<String> {
        if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
            if let Some(x) = v.get(name) {
                return Some(x.as_str().map_or_else(|| x.to_string(), str::to_string));
            }
        }
        form(&self.body).get(name).cloned()
    }
}

pub struct Behaviour {
    /// Answer 500 to everything until then.
    pub fail_until: Option<Instant>,
    /// Answer WeCom requests with errcode 45009 (too fast) this many times.
    pub wecom_limited: usize,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Aliyun SendSms: at most this many per phone within this long, then
    /// `isv.BUSINESS_LIMIT_CONTROL` ("触发小时级流控Permits:N").
    pub sms_limit: Option<(usize, Duration)>,
    /// Phones whose handset reports a failure (the rest: delivered).
    pub handset_fails: HashSet<String>,
    /// How long after the send the handset's report comes (waiting before).
    pub report_after: Duration,
    /// Take this many SMS or calls and drop the connection before answering.
    pub drop_after_accept: usize,
    /// Refuse the credentials of Aliyun and Tencent requests.
    pub refuse_keys: bool,
    /// Aliyun call state codes by phone (default 200000, heard to the end).
    pub call_state: HashMap<String, String>,
    /// DingTalk: at most this many per robot a minute, then 130101.
    pub dingtalk_per_minute: Option<usize>,
    /// DingTalk: answer the next this many requests with 130101.
    pub dingtalk_limited: usize,
    /// DingTalk refuses bodies over this many bytes.
    pub dingtalk_max_body: usize,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            fail_until: None,
            wecom_limited: 0,
            delay: Duration::ZERO,
            sms_limit: None,
            handset_fails: HashSet::new(),
            report_after: Duration::ZERO,
            drop_after_accept: 0,
            refuse_keys: false,
            call_state: HashMap::new(),
            dingtalk_per_minute: None,
            dingtalk_limited: 0,
            dingtalk_max_body: 20_000,
        }
    }
}

/// An SMS or call the peer took.
#[derive(Debug, Clone)]
pub struct Taken {
    pub path: String,
    pub phone: String,
    /// Floodguard's key: Aliyun OutId, Tencent SessionContext.
    pub key: String,
    /// The provider's id: BizId, SerialNo, CallId.
    pub id: String,
    pub at: Instant,
    /// Tencent: its status was pulled already.
    pub pulled: bool,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Req>,
    behaviour: Behaviour,
    taken: Vec<Taken>,
    serial: u64,
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

    /// Messages and calls to `path` that were taken (queries left out).
    pub fn accepted(&self, path: &str) -> Vec<Req> {
        self.requests().into_iter().filter(|r| r.path == path && r.accepted && r.is_send()).collect()
    }

    /// Queries (receipts, call details) to `path`.
    pub fn queries(&self, path: &str) -> Vec<Req> {
        self.requests().into_iter().filter(|r| r.path == path && !r.is_send()).collect()
    }

    /// What the peer took, as it keeps it for receipts.
    pub fn taken(&self) -> Vec<Taken> {
        self.inner.lock().unwrap().taken.clone()
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

/// Today's date in China (Aliyun's SendDate).
fn beijing_today() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8)).format("%Y%m%d").to_string()
}

/// The receipt of what the peer took: (SendStatus 1 waiting / 2 failed /
/// 3 delivered, carrier code).
fn report(b: &Behaviour, t: &Taken) -> (i64, &'static str) {
    if t.at.elapsed() < b.report_after {
        (1, "")
    } else if b.handset_fails.contains(&t.phone) {
        (2, "MK:0001")
    } else {
        (3, "DELIVERED")
    }
}

async fn handle(State(peer): State<Peer>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = String::from_utf8_lossy(&body).into_owned();
    let path = uri.path().to_string();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let action = match path.as_str() {
        "/aliyun" | "/dyvms" => form(&body).get("Action").cloned().unwrap_or_default(),
        "/tencent" | "/vms" => headers.get("x-tc-action").cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let (key, to, text, signature_ok) = match path.as_str() {
        "/sms" => (
            json["request_id"].as_str().map(String::from),
            json["mobile"].as_str().unwrap_or_default().to_string(),
            json["content"].as_str().unwrap_or_default().to_string(),
            true,
        ),
        "/voice" => (
            headers.get("idempotency-key").cloned(),
            json["called"].as_str().unwrap_or_default().to_string(),
            json["tts"].as_str().unwrap_or_default().to_string(),
            true,
        ),
        "/aliyun" | "/dyvms" => {
            let p = form(&body);
            let ok = aliyun_ok(&p);
            let to = p.get("PhoneNumbers").or(p.get("CalledNumber")).or(p.get("PhoneNumber")).cloned();
            let text = p.get("TemplateParam").or(p.get("TtsParam")).cloned();
            (p.get("OutId").cloned(), to.unwrap_or_default(), text.unwrap_or_default(), ok)
        }
        "/tencent" | "/vms" => (
            json["SessionContext"].as_str().map(String::from),
            json["PhoneNumberSet"][0]
                .as_str()
                .or(json["CalledNumber"].as_str())
                .unwrap_or_default()
                .to_string(),
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
    let is_send =
        !matches!(action.as_str(), "QuerySendDetails" | "PullSmsSendStatus" | "QueryCallDetailByCallId");
    let (status, answer, drop, delay) = {
        let mut inner = peer.inner.lock().unwrap();
        let now = Instant::now();
        let b = &mut inner.behaviour;
        let delay = b.delay;
        let failing = b.fail_until.is_some_and(|t| now < t);
        let limited = !failing && path == "/wecom" && b.wecom_limited > 0;
        if limited {
            b.wecom_limited -= 1;
        }
        let refused = b.refuse_keys && matches!(path.as_str(), "/aliyun" | "/dyvms" | "/tencent" | "/vms");
        let max_body = b.dingtalk_max_body;
        let too_large = path == "/dingtalk" && body.len() > max_body;
        let dingtalk_limit = b.dingtalk_per_minute;
        let sms_limit = b.sms_limit;
        let recent = |inner: &Inner, pred: &dyn Fn(&Req) -> bool, within: Duration| {
            inner
                .requests
                .iter()
                .filter(|r| r.accepted && r.is_send() && now.duration_since(r.at) < within && pred(r))
                .count()
        };
        let over_sms = path == "/aliyun"
            && action == "SendSms"
            && sms_limit.is_some_and(|(n, w)| recent(&inner, &|r| r.path == "/aliyun" && r.to == to, w) >= n);
        let mut over_dingtalk = path == "/dingtalk"
            && !too_large
            && dingtalk_limit
                .is_some_and(|n| recent(&inner, &|r| r.path == "/dingtalk", Duration::from_secs(60)) >= n);
        if path == "/dingtalk" && !too_large && signature_ok && inner.behaviour.dingtalk_limited > 0 {
            inner.behaviour.dingtalk_limited -= 1;
            over_dingtalk = true;
        }
        let (status, answer, accepted) = if failing {
            (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "down for the test"}), false)
        } else if !signature_ok {
            let answer = match path.as_str() {
                "/aliyun" | "/dyvms" => {
                    json!({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"})
                }
                "/tencent" | "/vms" => {
                    json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}}})
                }
                _ => json!({"errcode": 310000, "errmsg": "sign not match"}),
            };
            (
                if path.starts_with("/aliyun") || path == "/dyvms" {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                },
                answer,
                false,
            )
        } else if refused {
            let answer = match path.as_str() {
                "/aliyun" | "/dyvms" => {
                    json!({"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."})
                }
                _ => {
                    json!({"Response": {"Error": {"Code": "AuthFailure.SecretIdNotFound", "Message": "secret id not found"}}})
                }
            };
            (
                if path.starts_with("/aliyun") || path == "/dyvms" {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                },
                answer,
                false,
            )
        } else if limited {
            (StatusCode::OK, json!({"errcode": 45009, "errmsg": "api freq out of limit"}), false)
        } else if too_large {
            (
                StatusCode::OK,
                json!({"errcode": 460101, "errmsg": format!("message too long, exceed {max_body} bytes")}),
                false,
            )
        } else if over_dingtalk {
            (
                StatusCode::OK,
                json!({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
                false,
            )
        } else if over_sms {
            let n = sms_limit.map_or(0, |l| l.0);
            (
                StatusCode::OK,
                json!({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": format!("触发小时级流控Permits:{n}"), "RequestId": "L1"}),
                false,
            )
        } else {
            let answer = answer_to(&mut inner, &path, &action, &to, key.as_deref().unwrap_or(""), &body, now);
            (StatusCode::OK, answer, true)
        };
        let drop = accepted && is_send && path != "/dingtalk" && path != "/wecom" && {
            let b = &mut inner.behaviour;
            let d = b.drop_after_accept > 0;
            if d {
                b.drop_after_accept -= 1;
            }
            d
        };
        let req = Req {
            path,
            headers,
            body,
            key,
            to,
            text,
            signature_ok,
            accepted,
            action,
            too_large,
            dropped: drop,
            at: now,
        };
        inner.requests.push(req);
        (status, answer, drop, delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if drop {
        // The message is taken; the answer never leaves: the connection is
        // dropped (this task ends without the panic hook printing).
        std::panic::resume_unwind(Box::new("the peer drops the connection"));
    }
    (status, axum::Json(answer)).into_response()
}

/// What a provider answers to a request it takes; sends are kept for
/// later receipt and call-detail queries.
fn answer_to(
    inner: &mut Inner,
    path: &str,
    action: &str,
    to: &str,
    key: &str,
    body: &str,
    now: Instant,
) -> Value {
    inner.serial += 1;
    let serial = inner.serial;
    let take = |inner: &mut Inner, id: String| {
        inner.taken.push(Taken {
            path: path.to_string(),
            phone: to.to_string(),
            key: key.to_string(),
            id: id.clone(),
            at: now,
            pulled: false,
        });
        id
    };
    match (path, action) {
        ("/aliyun", "SendSms") => {
            let biz = take(inner, format!("{serial}^0"));
            json!({"Code": "OK", "Message": "OK", "BizId": biz, "RequestId": "F655A8D5"})
        }
        ("/aliyun", "QuerySendDetails") => {
            let p = form(body);
            let phone = p.get("PhoneNumber").cloned().unwrap_or_default();
            let biz = p.get("BizId").cloned();
            let date_ok = p.get("SendDate").is_some_and(|d| *d == beijing_today());
            let list: Vec<Value> = inner
                .taken
                .iter()
                .filter(|t| t.path == "/aliyun" && t.phone == phone && date_ok)
                .filter(|t| biz.as_ref().is_none_or(|b| *b == t.id))
                .map(|t| {
                    let (status, code) = report(&inner.behaviour, t);
                    json!({"PhoneNum": t.phone, "SendStatus": status, "ErrCode": code, "OutId": t.key, "BizId": t.id,
                        "TemplateCode": "SMS_154950909", "SendDate": "2026-07-21 14:05:00", "ReceiveDate": "2026-07-21 14:05:03"})
                })
                .collect();
            json!({"Code": "OK", "Message": "OK", "TotalCount": list.len(), "SmsSendDetailDTOs": {"SmsSendDetailDTO": list}, "RequestId": "Q1"})
        }
        ("/dyvms", "SingleCallByTts") => {
            let id = take(inner, format!("1160{serial:08}^1028{serial:06}"));
            json!({"Code": "OK", "Message": "OK", "CallId": id, "RequestId": "V1"})
        }
        ("/dyvms", "QueryCallDetailByCallId") => {
            let p = form(body);
            let call = p.get("CallId").cloned().unwrap_or_default();
            let prod_ok = p.get("ProdId").is_some_and(|x| x == "11000000300006");
            match inner.taken.iter().find(|t| t.path == "/dyvms" && t.id == call) {
                Some(t) if prod_ok => {
                    let state =
                        inner.behaviour.call_state.get(&t.phone).cloned().unwrap_or_else(|| "200000".into());
                    let data = json!({"callId": t.id, "state": state, "stateDesc": "", "duration": 12, "callee": t.phone});
                    json!({"Code": "OK", "Message": "OK", "Data": data.to_string(), "RequestId": "V2"})
                }
                _ => json!({"Code": "OK", "Message": "OK", "Data": null, "RequestId": "V2"}),
            }
        }
        ("/tencent", "SendSms") => {
            let sn = take(inner, format!("5000:{serial}"));
            json!({"Response": {"SendStatusSet": [{"Code": "Ok", "Message": "send success", "SerialNo": sn, "PhoneNumber": to}], "RequestId": "a0aabda6"}})
        }
        ("/tencent", "PullSmsSendStatus") => {
            let ready: Vec<usize> = (0..inner.taken.len())
                .filter(|&i| {
                    let t = &inner.taken[i];
                    t.path == "/tencent" && !t.pulled && t.at.elapsed() >= inner.behaviour.report_after
                })
                .take(100)
                .collect();
            let mut set = Vec::new();
            for i in ready {
                inner.taken[i].pulled = true;
                let t = &inner.taken[i];
                let failed = inner.behaviour.handset_fails.contains(&t.phone);
                set.push(json!({"Description": if failed {"MK:0001"} else {"DELIVRD"}, "CountryCode": "86",
                    "SubscriberNumber": t.phone.trim_start_matches("+86"), "PhoneNumber": t.phone,
                    "ReportStatus": if failed {"FAIL"} else {"SUCCESS"}, "SerialNo": t.id, "SessionContext": t.key,
                    "UserReceiveTime": chrono::Utc::now().timestamp()}));
            }
            json!({"Response": {"PullSmsSendStatusSet": set, "RequestId": "p1"}})
        }
        ("/vms", "SendTtsVoice") => {
            let id = take(inner, format!("12582bce-{serial:04}"));
            json!({"Response": {"SendStatus": {"CallId": id, "SessionContext": key}, "RequestId": "v1"}})
        }
        ("/voice", _) => {
            take(inner, format!("gw-{serial}"));
            json!({"code": 0, "call_id": format!("gw-{serial}")})
        }
        ("/tencent", "SendTtsVoice") | ("/wecom" | "/dingtalk", _) => json!({"errcode": 0, "errmsg": "ok"}),
        _ => json!({"code": 0, "message": "queued"}),
    }
}
