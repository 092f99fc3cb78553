//! `/ack/{token}`: the page a team lead reaches from the link in an SMS,
//! e-mail or robot message. GET shows the alert and a confirm button; POST
//! acknowledges it under the member's name. The token is the credential:
//! signed, expiring and good for one ack (see `notify::acklink`).

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
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

fn page(w: &Words, code: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:sans-serif;max-width:36em;margin:1em auto;padding:0 1em;\
         font-size:18px}}table td{{padding:.2em .6em .2em 0;vertical-align:top}}button{{font-size:1.2em;\
         padding:.6em 1.2em;width:100%}}textarea{{width:100%}}.lvl{{font-weight:bold}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        title = w.title
    );
    (code, Html(html)).into_response()
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
    let alert = s.alerts.as_ref().and_then(|m| m.alert(claims.a).ok().flatten());
    let Some(a) = alert else {
        return page(w, StatusCode::NOT_FOUND, &format!("<p>{}</p>", esc(w.invalid)));
    };
    let body = format!(
        "{table}<form method=\"post\" action=\"/ack/{token}\"><p><label>{note}<br>\
         <textarea name=\"note\" rows=\"2\"></textarea></label></p><button type=\"submit\">{confirm}</button></form>",
        table = alert_table(&s, w, &a, &claims.m),
        token = esc(&token),
        note = esc(w.note),
        confirm = esc(w.confirm),
    );
    page(w, StatusCode::OK, &body)
}

#[derive(Debug, Default, Deserialize)]
pub struct AckForm {
    #[serde(default)]
    note: String,
}

/// Acknowledges the alert under the member's name; the link is spent.
pub async fn confirm(
    State(s): State<AppState>,
    Path(token): Path<String>,
    form: Result<Form<AckForm>, FormRejection>,
) -> Response {
    let note = form.ok().map(|f| f.0.note);
    super::blocking(move || confirm_now(&s, &token, note)).await
}

fn confirm_now(s: &AppState, token: &str, note: Option<String>) -> Response {
    let s = s.clone();
    let token = token.to_string();
    let w = words(&s);
    if let Err(r) = check(&s, &token) {
        return r;
    }
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
    match manager.ack(claims.a, &claims.m, Some(&note), s.clock.now()) {
        Ok(a) => {
            tracing::info!(alert = a.id, by = %claims.m, "acknowledged through a message link");
            let body = format!("<p><b>{} ✔</b></p>{}", esc(w.done), alert_table(&s, w, &a, &claims.m));
            page(w, StatusCode::OK, &body)
        }
        Err(OpError::Conflict(reason)) => {
            let a = manager.alert(claims.a).ok().flatten();
            let table =
                a.map(|a| alert_table(&s, w, &a, a.acked_by.as_deref().unwrap_or(""))).unwrap_or_default();
            page(w, StatusCode::CONFLICT, &format!("<p>{}</p>{table}", esc(&reason)))
        }
        Err(OpError::NoAlert(_)) => page(w, StatusCode::NOT_FOUND, &format!("<p>{}</p>", esc(w.invalid))),
        Err(e) => {
            tracing::error!(error = %e, "ack through a link failed");
            page(w, StatusCode::INTERNAL_SERVER_ERROR, &format!("<p>{}</p>", esc(w.unavailable)))
        }
    }
}
