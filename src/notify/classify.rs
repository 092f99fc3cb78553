//! Providers' answers, read: every send ends in an [`Outcome`], every
//! receipt or call-detail query in a [`Receipt`] — pure functions of the
//! status and body, tested alone against the providers' documented answers.
//!
//! What matters most is telling apart what the provider *took* from what
//! it did not: a refusal is retried, a limit answer waits for the window's
//! end, refused credentials wait for the operator, and an answer that never
//! came after the request went out is [`Outcome::Unknown`] — resolved by a
//! receipt query where the provider has one, never simply sent again.

use std::time::Duration;

use serde_json::Value;

/// How long a provider's limit answer holds the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Until the end of the provider's window of this length (its minute,
    /// hour, day), counted from what was sent (`budget::limit_until`).
    Window(Duration),
    /// This long from now (a Retry-After, DingTalk's 10 minutes).
    For(Duration),
}

pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

/// How a send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Taken by the provider: its answer (shortened) and its id of the
    /// message or call (Aliyun BizId / CallId, Tencent SerialNo / CallId).
    Sent { answer: String, id: Option<String> },
    /// Not taken; try again later (after the provider's wait, or the backoff).
    Retry { after: Option<Duration>, reason: String },
    /// The provider's budget for this recipient is spent: hold, then merge.
    Limited { hold: Hold, reason: String },
    /// The request went out and no answer came back (a timeout, a dropped
    /// connection): the provider may have taken it.
    Unknown(String),
    /// The provider refuses floodguard's credentials (401/403, a bad access
    /// key or signature): an operator's alarm; messages wait for the fix.
    Refused(String),
    /// The body is over the provider's size limit: send it in smaller parts.
    TooLarge(String),
    /// It will not work (a bad number, a refused template): give up.
    Failed(String),
}

impl Outcome {
    pub fn sent(answer: &str) -> Outcome {
        Outcome::Sent { answer: short(answer), id: None }
    }

    /// The reason or answer, for logs and the delivery log.
    pub fn text(&self) -> &str {
        match self {
            Outcome::Sent { answer, .. } => answer,
            Outcome::Retry { reason, .. }
            | Outcome::Limited { reason, .. }
            | Outcome::Unknown(reason)
            | Outcome::Refused(reason)
            | Outcome::TooLarge(reason)
            | Outcome::Failed(reason) => reason,
        }
    }

    /// The `result` label of `floodguard_notifications_sent_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Retry { .. } => "retry",
            Outcome::Limited { .. } => "throttled",
            Outcome::Unknown(_) => "unknown",
            Outcome::Refused(_) => "refused",
            Outcome::TooLarge(_) => "split",
            Outcome::Failed(_) => "failed",
        }
    }
}

pub fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn retry_after(h: Option<&str>) -> Option<Duration> {
    h.and_then(|v| crate::tsdb::retry::parse_retry_after(v, std::time::SystemTime::now()))
}

/// A plain HTTP answer: 2xx sent, 429 limited, 401/403 refused, 413 too
/// large, 408/5xx retried, other 4xx failed.
pub fn http(status: u16, retry: Option<&str>, body: &str) -> Outcome {
    let reason = || format!("HTTP {status} {}", short(body));
    match status {
        200..=299 => Outcome::sent(body),
        429 => Outcome::Limited { hold: Hold::For(retry_after(retry).unwrap_or(MINUTE)), reason: reason() },
        401 | 403 => Outcome::Refused(reason()),
        413 => Outcome::TooLarge(reason()),
        408 | 500..=599 => Outcome::Retry { after: retry_after(retry), reason: reason() },
        _ => Outcome::Failed(reason()),
    }
}

/// WeCom group robot: `errcode` 0 sent, 45009 too fast, -1 busy, 40058 too
/// long, 93000 (invalid key) refused.
pub fn wecom(status: u16, body: &str, throttle: Duration) -> Outcome {
    if !(200..300).contains(&status) {
        return http(status, None, body);
    }
    match serde_json::from_str::<Value>(body).ok().and_then(|v| v["errcode"].as_i64()) {
        Some(0) => Outcome::sent(body),
        Some(45009) => Outcome::Limited { hold: Hold::For(throttle), reason: short(body) },
        Some(-1) => Outcome::Retry { after: None, reason: short(body) },
        Some(40058) => Outcome::TooLarge(short(body)),
        Some(93000) => Outcome::Refused(short(body)),
        _ => Outcome::Failed(short(body)),
    }
}

/// DingTalk robot: `errcode` 0 sent, 130101 too fast (DingTalk then holds
/// the robot ten minutes), 310000 signature or keyword refused, 300001/
/// 400013 bad token refused, a message-too-long answer too large.
pub fn dingtalk(status: u16, body: &str, throttle: Duration) -> Outcome {
    if !(200..300).contains(&status) {
        return http(status, None, body);
    }
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let msg = v["errmsg"].as_str().unwrap_or("").to_ascii_lowercase();
    match v["errcode"].as_i64() {
        Some(0) => Outcome::sent(body),
        Some(130101) => Outcome::Limited { hold: Hold::For(throttle), reason: short(body) },
        Some(310000 | 300001 | 400013) => Outcome::Refused(short(body)),
        Some(_) if msg.contains("too long") || msg.contains("too large") || msg.contains("exceed") => {
            Outcome::TooLarge(short(body))
        }
        _ => Outcome::Failed(short(body)),
    }
}

/// The window an Aliyun flow-control message names: "触发分钟级流控Permits:1",
/// "触发小时级流控Permits:5", "触发天级流控Permits:10"; a minute when it names none.
fn aliyun_window(message: &str) -> Duration {
    if message.contains("天级") {
        DAY
    } else if message.contains("小时级") {
        HOUR
    } else {
        MINUTE
    }
}

fn aliyun_refused(code: &str) -> bool {
    code.starts_with("InvalidAccessKeyId")
        || code.starts_with("SignatureDoesNotMatch")
        || code.starts_with("IncompleteSignature")
        || code.starts_with("Forbidden")
        || code == "InvalidTimeStamp.Expired"
}

/// An Aliyun RPC answer (Dysmsapi SendSms, Dyvmsapi SingleCallByTts):
/// `Code` OK sent (with `BizId` or `CallId`); flow control limited; bad
/// keys refused; `isp.*` and internal errors retried.
pub fn aliyun(status: u16, body: &str) -> Outcome {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = v["Code"].as_str().unwrap_or("");
    let message = v["Message"].as_str().unwrap_or("");
    match (status, code) {
        (200..=299, "OK") => Outcome::Sent {
            answer: short(body),
            id: v["BizId"].as_str().or(v["CallId"].as_str()).map(str::to_string),
        },
        (_, c) if c.starts_with("isv.BUSINESS_LIMIT_CONTROL") || c.starts_with("isv.DAY_LIMIT_CONTROL") => {
            let window = if c.starts_with("isv.DAY") { DAY } else { aliyun_window(message) };
            Outcome::Limited { hold: Hold::Window(window), reason: short(body) }
        }
        (_, c) if c.starts_with("Throttling") => Outcome::Retry { after: Some(MINUTE), reason: short(body) },
        (_, c) if aliyun_refused(c) => Outcome::Refused(short(body)),
        (_, c) if c.starts_with("isp.") || c == "InternalError" || c == "ServiceUnavailable" => {
            Outcome::Retry { after: None, reason: short(body) }
        }
        (500..=599 | 408 | 429 | 401 | 403, _) => http(status, None, body),
        _ => Outcome::Failed(short(body)),
    }
}

/// The window a Tencent per-number limit names.
fn tencent_window(code: &str) -> Duration {
    if code.contains("ThirtySecond") {
        Duration::from_secs(30)
    } else if code.contains("OneHour") {
        HOUR
    } else if code.contains("Daily") || code.contains("Day") {
        DAY
    } else {
        MINUTE
    }
}

/// Tencent Cloud API 3.0 (SMS SendSms, VMS SendTtsVoice): the error code,
/// or the first send status's code. `Ok` sent (with `SerialNo` or
/// `CallId`); per-number limits limited; `AuthFailure.*` refused; internal
/// errors and the request-rate limit retried.
pub fn tencent(status: u16, body: &str) -> Outcome {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let r = &v["Response"];
    let sms = &r["SendStatusSet"][0];
    let voice = &r["SendStatus"];
    let code = r["Error"]["Code"]
        .as_str()
        .or_else(|| sms["Code"].as_str())
        .or_else(|| voice["CallId"].as_str().map(|_| "Ok"))
        .unwrap_or("");
    match code {
        "Ok" if (200..300).contains(&status) => Outcome::Sent {
            answer: short(body),
            id: sms["SerialNo"].as_str().or(voice["CallId"].as_str()).map(str::to_string),
        },
        c if c.starts_with("RequestLimitExceeded") => {
            Outcome::Retry { after: Some(MINUTE), reason: short(body) }
        }
        c if c.starts_with("LimitExceeded") => {
            Outcome::Limited { hold: Hold::Window(tencent_window(c)), reason: short(body) }
        }
        c if c.starts_with("AuthFailure") || c.starts_with("UnauthorizedOperation") => {
            Outcome::Refused(short(body))
        }
        c if c.starts_with("InternalError") => Outcome::Retry { after: None, reason: short(body) },
        "" => http(status, None, body),
        _ => Outcome::Failed(short(body)),
    }
}

string_enum! {
    /// What became of a message after the provider took it: an SMS on the
    /// handset, a call on the phone.
    pub enum Receipt ("receipt") {
        /// Taken, no report yet.
        Waiting = "waiting",
        /// On the handset.
        Delivered = "delivered",
        /// The handset or the carrier refused it.
        Failed = "failed",
        /// No report came within the receipt timeout, or the provider has
        /// no record of a send whose answer was lost.
        Unknown = "unknown",
        /// The call was answered.
        Answered = "answered",
        Busy = "busy",
        NoAnswer = "no_answer",
        /// The call did not connect (off, out of service, a bad number).
        Unreachable = "unreachable",
    }
}

impl Receipt {
    /// No later report changes it.
    pub fn is_final(self) -> bool {
        self != Receipt::Waiting
    }

    /// The person has it.
    pub fn reached(self) -> bool {
        matches!(self, Receipt::Delivered | Receipt::Answered)
    }
}

/// What a receipt or call-detail query said of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The provider knows the message: its state, a note, its id.
    Found { receipt: Receipt, note: String, id: Option<String> },
    /// The provider has no record of it.
    NotFound,
    /// The query itself failed (try again later).
    QueryFailed(String),
}

/// Aliyun QuerySendDetails: the record whose `OutId` is `key` (or whose
/// BizId's receipt part matches `biz_id`). `SendStatus` 1 waiting, 2 failed
/// (with the carrier's `ErrCode`), 3 delivered.
pub fn aliyun_details(status: u16, body: &str, key: &str, biz_id: Option<&str>) -> Report {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) || v["Code"].as_str() != Some("OK") {
        return Report::QueryFailed(format!("HTTP {status} {}", short(body)));
    }
    let list = v["SmsSendDetailDTOs"]["SmsSendDetailDTO"].as_array().cloned().unwrap_or_default();
    let found = list.iter().find(|d| {
        d["OutId"].as_str() == Some(key)
            || biz_id.is_some_and(|b| d["BizId"].as_str().is_some_and(|x| x == b))
    });
    let Some(d) = found else { return Report::NotFound };
    let err = d["ErrCode"].as_str().unwrap_or("").to_string();
    let receipt = match d["SendStatus"].as_i64() {
        Some(3) => Receipt::Delivered,
        Some(2) => Receipt::Failed,
        _ => Receipt::Waiting,
    };
    Report::Found { receipt, note: err, id: d["BizId"].as_str().map(str::to_string) }
}

/// One status pulled from Tencent's PullSmsSendStatus (a queue: each
/// status is given once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub serial_no: String,
    /// The `SessionContext` of the send: floodguard's idempotency key.
    pub session: String,
    pub phone: String,
    pub receipt: Receipt,
    pub note: String,
}

/// Tencent PullSmsSendStatus: `ReportStatus` SUCCESS delivered, FAIL failed.
pub fn tencent_pulled(status: u16, body: &str) -> Result<Vec<Pulled>, String> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let r = &v["Response"];
    if !(200..300).contains(&status) || r["Error"].is_object() || !r["PullSmsSendStatusSet"].is_array() {
        return Err(format!("HTTP {status} {}", short(body)));
    }
    Ok(r["PullSmsSendStatusSet"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Pulled {
            serial_no: s["SerialNo"].as_str().unwrap_or("").to_string(),
            session: s["SessionContext"].as_str().unwrap_or("").to_string(),
            phone: s["PhoneNumber"].as_str().unwrap_or("").to_string(),
            receipt: if s["ReportStatus"].as_str() == Some("SUCCESS") {
                Receipt::Delivered
            } else {
                Receipt::Failed
            },
            note: s["Description"].as_str().unwrap_or("").to_string(),
        })
        .collect())
}

/// An Aliyun call state code (呼叫状态码): 200000/200001 answered (heard to
/// the end / hung up early), 200002 busy, 200003 no answer, the rest of
/// 2000xx not connected; the intermediate codes (200101 calling, 200201
/// ringing, 200102 answered, 200100 ended) and unknown ones wait.
pub fn aliyun_call_state(code: &str) -> Receipt {
    match code {
        "200000" | "200001" | "200102" => Receipt::Answered,
        "200002" | "200112" => Receipt::Busy,
        "200003" | "200113" => Receipt::NoAnswer,
        "200004" | "200005" | "200007" | "200010" | "200011" | "200012" | "200111" | "200120" => {
            Receipt::Unreachable
        }
        _ => Receipt::Waiting,
    }
}

/// Aliyun QueryCallDetailByCallId: `Data` is a JSON string with the call's
/// `state`, `stateDesc`, `duration`.
pub fn aliyun_call_detail(status: u16, body: &str) -> Report {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) || v["Code"].as_str() != Some("OK") {
        return Report::QueryFailed(format!("HTTP {status} {}", short(body)));
    }
    let data: Value = match &v["Data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    if data.is_null() {
        return Report::NotFound;
    }
    let state = match &data["state"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let note = data["stateDesc"].as_str().unwrap_or("").to_string();
    Report::Found {
        receipt: aliyun_call_state(&state),
        note,
        id: data["callId"].as_str().map(str::to_string),
    }
}

/// Tencent VMS's status callback, `{"voiceprompt_callback": {"result": "0",
/// "callid": …}}`: result 0 answered, 1 not answered, 2 the call failed.
/// The call id and what became of it.
pub fn tencent_voice_callback(body: &str) -> Option<(String, Receipt, String)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let c = &v["voiceprompt_callback"];
    let id = c["callid"].as_str()?.to_string();
    let result = match &c["result"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let receipt = match result.as_str() {
        "0" => Receipt::Answered,
        "1" => Receipt::NoAnswer,
        _ => Receipt::Unreachable,
    };
    Some((id, receipt, format!("result {result}")))
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
