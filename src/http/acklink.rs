//! `/ack/{token}`: the page a team lead reaches from the link in an SMS,
//! e-mail or robot message. GET shows the alert and a confirm button; POST
//! acknowledges it under the member's name. The token is the credential:
//! signed, expiring, bound to its alert and member, and good for one ack
//! (see `notify::acklink`).
//!
//! The confirm is CSRF-safe: the form carries a one-time token issued with
//! the page (and bound to the link), so neither a link preview that follows
//! the URL nor a form on another site can ack; a POST whose `Origin` names
//! another site is refused too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::AppState;
use crate::alerts::model::Alert;
use crate::alerts::OpError;
use crate::config::Language;
use crate::engine::rfc3339;
use crate::notify::acklink::{Claims, TokenError};
use crate::notify::message::esc;

/// Words of the page in one language.
struct Words {
    title: &'static str,
    confirm: &'static str,
    note: &'static str,
    done: &'static str,
    invalid: &'static str,
    expired: &'static str,
    used: &'static str,
    unavailable: &'static str,
    site: &'static str,
    level: &'static str,
    value: &'static str,
    since: &'static str,
    state: &'static str,
    to: &'static str,
}

const ZH: Words = Words {
    title: "确认收到警报",
    confirm: "确认收到（签收）",
    note: "备注（可不填）",
    done: "已确认",
    invalid: "链接无效。请使用消息中的完整链接，或联系区防汛指挥部值班员。",
    expired: "链接已过期。请在指挥中心页面确认，或电话联系区防汛指挥部值班员。",
    used: "此链接已使用过，确认已记录。",
    unavailable: "确认功能暂不可用，请电话联系区防汛指挥部值班员。",
    site: "地点",
    level: "级别",
    value: "读数",
    since: "开始时间",
    state: "状态",
    to: "确认人",
};

const EN: Words = Words {
    title: "Acknowledge alert",
    confirm: "Acknowledge",
    note: "Note (optional)",
    done: "Acknowledged",
    invalid:
        "This link is not valid. Use the whole link from the message, or call the district duty officer.",
    expired:
        "This link has expired. Acknowledge on the command-center page, or call the district duty officer.",
    used: "This link was used already; the acknowledgement is on record.",
    unavailable: "Acknowledging is not available now; call the district duty officer.",
    site: "Site",
    level: "Level",
    value: "Reading",
    since: "Since",
    state: "State",
    to: "By",
};

fn words(s: &AppState) -> &'static Words {
    match s.outbox.as_ref().map(|o| o.language()) {
        Some(Language::En) => &EN,
        _ => &ZH,
    }
}

/// How long the form of an ack page may be sent.
const FORM_TTL: Duration = Duration::from_secs(30 * 60);
/// Forms open at once at most (the oldest are forgotten beyond).
const FORMS: usize = 10_000;

/// One-time tokens of the ack page's form: issued with the page, bound to
/// the link's nonce, taken by the POST.
#[derive(Default)]
pub struct FormTokens {
    open: Mutex<HashMap<String, (String, Instant)>>,
}

impl FormTokens {
    /// A fresh token for the form of the link with `nonce`.
    pub fn issue(&self, nonce: &str) -> String {
        let token = crate::notify::acklink::nonce();
        let mut open = self.open.lock().expect("forms lock");
        if open.len() >= FORMS {
            open.retain(|_, (_, at)| at.elapsed() < FORM_TTL);
            if open.len() >= FORMS {
                let mut ages: Vec<Instant> = open.values().map(|(_, at)| *at).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                open.retain(|_, (_, at)| *at > cut);
            }
        }
        open.insert(token.clone(), (nonce.to_string(), Instant::now()));
        token
    }

    /// Takes `token` if it was issued for `nonce` and is fresh: once only.
    pub fn take(&self, token: &str, nonce: &str) -> bool {
        match self.open.lock().expect("forms lock").remove(token) {
            Some((n, at)) => n == nonce && at.elapsed() < FORM_TTL,
            None => false,
        }
    }
}

fn page(w: &Words, code: StatusCode, body: &str) -> Response {
    // Styles from a file: the Content-Security-Policy allows no inline style.
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/assets/ack.css\"></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        title = w.title
    );
    (code, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn refused(w: &Words, e: &TokenError) -> Response {
    let (code, text) = match e {
        TokenError::Expired => (StatusCode::GONE, w.expired),
        TokenError::Used => (StatusCode::CONFLICT, w.used),
        TokenError::Malformed | TokenError::BadSignature => (StatusCode::NOT_FOUND, w.invalid),
    };
    page(w, code, &format!("<p>{}</p>", esc(text)))
}

fn alert_table(s: &AppState, w: &Words, a: &Alert, who: &str) -> String {
    let en = std::ptr::eq(w, &EN);
    let level = a.level.or(a.peak_level).map_or_else(
        || "—".to_string(),
        |l| {
            if en {
                format!("{} ({})", l.as_str(), l.colour_en())
            } else {
                format!("{}级 {}", l.roman(), l.colour_zh())
            }
        },
    );
    let value = match (a.value, a.threshold) {
        (Some(v), Some(t)) => format!("{v} {u} (≥ {t} {u})", u = a.unit),
        (Some(v), None) => format!("{v} {}", a.unit),
        _ => "—".into(),
    };
    let rows = [
        (w.site, format!("{} · {}", a.site_name, a.rule_name)),
        (w.level, level),
        (w.value, value),
        (w.since, rfc3339(a.started_at, s.live.timezone)),
        (w.state, a.state.as_str().to_string()),
        (w.to, who.to_string()),
    ];
    let cells: String = rows
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(k),
                if *k == w.level { "lvl" } else { "" },
                esc(v)
            )
        })
        .collect();
    format!("<table>{cells}</table>")
}

fn check(s: &AppState, token: &str) -> Result<Claims, Response> {
    let w = words(s);
    let Some(outbox) = &s.outbox else {
        return Err(page(w, StatusCode::SERVICE_UNAVAILABLE, &format!("<p>{}</p>", esc(w.unavailable))));
    };
    outbox.check_link(token, s.clock.now()).map_err(|e| refused(w, &e))
}

/// The alert and a confirm button.
pub async fn show(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    // Reads of state.db: off the async workers.
    super::blocking(move || show_now(&s, &token)).await
}

fn show_now(s: &AppState, token: &str) -> Response {
    let s = s.clone();
    let token = token.to_string();
    let w = words(&s);
    let claims = match check(&s, &token) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let alerts: Vec<Alert> = claims
        .alerts()
        .into_iter()
        .filter_map(|id| s.alerts.as_ref().and_then(|m| m.alert(id).ok().flatten()))
        .collect();
    if alerts.is_empty() {
        return page(w, StatusCode::NOT_FOUND, &format!("<p>{}</p>", esc(w.invalid)));
    }
    let tables: String =
        alerts.iter().map(|a| alert_table(&s, w, a, &claims.m)).collect::<Vec<_>>().join("<hr>");
    let confirm = if alerts.len() > 1 {
        if std::ptr::eq(w, &EN) {
            format!("Acknowledge all {}", alerts.len())
        } else {
            format!("全部确认收到（{} 条）", alerts.len())
        }
    } else {
        w.confirm.to_string()
    };
    let form = s.guard.forms.issue(&claims.n);
    let body = format!(
        "{tables}<form method=\"post\" action=\"/ack/{token}\"><input type=\"hidden\" name=\"form\" value=\"{form}\">\
         <p><label>{note}<br><textarea name=\"note\" rows=\"2\"></textarea></label></p>\
         <button type=\"submit\">{confirm}</button></form>",
        token = esc(&token),
        form = esc(&form),
        note = esc(w.note),
        confirm = esc(&confirm),
    );
    page(w, StatusCode::OK, &body)
}

#[derive(Debug, Default, Deserialize)]
pub struct AckForm {
    #[serde(default)]
    note: String,
    /// The one-time token of the page's form.
    #[serde(default)]
    form: String,
}

/// Acknowledges the alert under the member's name; the link is spent.
pub async fn confirm(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AckForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|f| f.0).unwrap_or_default();
    let same_site = same_origin(&headers);
    super::blocking(move || confirm_now(&s, &token, form, same_site)).await
}

/// A POST from this server's own page: no `Origin`, or one naming the host
/// the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    origin.split_once("://").is_some_and(|(_, o)| o.eq_ignore_ascii_case(host))
}

fn confirm_now(s: &AppState, token: &str, form: AckForm, same_site: bool) -> Response {
    let s = s.clone();
    let token = token.to_string();
    let w = words(&s);
    let claims = match check(&s, &token) {
        Ok(c) => c,
        Err(r) => return r,
    };
    // Taken first: a token seen in a cross-site try is burnt too.
    let fresh = s.guard.forms.take(&form.form, &claims.n);
    if !same_site || !fresh {
        let text = if std::ptr::eq(w, &EN) {
            "Open the link from the message again, then confirm."
        } else {
            "请重新打开消息中的链接，再点确认。"
        };
        return page(w, StatusCode::FORBIDDEN, &format!("<p>{}</p>", esc(text)));
    }
    let note = Some(form.note);
    let (Some(outbox), Some(manager)) = (&s.outbox, &s.alerts) else {
        return page(w, StatusCode::SERVICE_UNAVAILABLE, &format!("<p>{}</p>", esc(w.unavailable)));
    };
    // Spend the link first: of two taps at once, one acks.
    let claims = match outbox.use_link(&token, s.clock.now()) {
        Ok(c) => c,
        Err(e) => return refused(w, &e),
    };
    let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let note = note.unwrap_or_else(|| {
        if std::ptr::eq(w, &EN) {
            "via message link".into()
        } else {
            "经消息链接确认".into()
        }
    });
    // A digest's link acknowledges each of its alerts still open.
    let mut acked = Vec::new();
    let mut conflicts = Vec::new();
    for id in claims.alerts() {
        match manager.ack(id, &claims.m, Some(&note), s.clock.now()) {
            Ok(a) => {
                tracing::info!(alert = a.id, by = %claims.m, "acknowledged through a message link");
                acked.push(a);
            }
            Err(OpError::Conflict(reason)) => conflicts.push((id, reason)),
            Err(OpError::NoAlert(_)) => {}
            Err(e) => {
                tracing::error!(error = %e, "ack through a link failed");
                return page(w, StatusCode::INTERNAL_SERVER_ERROR, &format!("<p>{}</p>", esc(w.unavailable)));
            }
        }
    }
    if !acked.is_empty() {
        let tables: String =
            acked.iter().map(|a| alert_table(&s, w, a, &claims.m)).collect::<Vec<_>>().join("<hr>");
        return page(w, StatusCode::OK, &format!("<p><b>{} ✔</b></p>{tables}", esc(w.done)));
    }
    match conflicts.first() {
        Some((id, reason)) => {
            let a = manager.alert(*id).ok().flatten();
            let table =
                a.map(|a| alert_table(&s, w, &a, a.acked_by.as_deref().unwrap_or(""))).unwrap_or_default();
            page(w, StatusCode::CONFLICT, &format!("<p>{}</p>{table}", esc(reason)))
        }
        None => page(w, StatusCode::NOT_FOUND, &format!("<p>{}</p>", esc(w.invalid))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_token_works_once_and_for_its_link_only() {
        let f = FormTokens::default();
        let t = f.issue("nonce-a");
        assert!(!f.take(&t, "nonce-b"), "another link's form");
        let t = f.issue("nonce-a");
        assert!(f.take(&t, "nonce-a"));
        assert!(!f.take(&t, "nonce-a"), "once");
        assert!(!f.take("", "nonce-a"));
        for i in 0..(FORMS + 10) {
            f.issue(&format!("n{i}"));
        }
        assert!(f.open.lock().unwrap().len() <= FORMS, "bounded");
    }

    #[test]
    fn a_post_from_another_site_is_told_apart() {
        let h = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "flood.example.gov.cn".parse().unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap());
            }
            h
        };
        assert!(same_origin(&h(None)));
        assert!(same_origin(&h(Some("https://flood.example.gov.cn"))));
        assert!(!same_origin(&h(Some("https://evil.example"))));
        assert!(!same_origin(&h(Some("null"))));
    }
}
