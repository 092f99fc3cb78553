//! Several messages for one recipient as one — the digest a recipient gets
//! when their budget holds messages back, or a throttled robot when it may
//! send again. Bounded however long the storm: texts are kept oldest first
//! up to a limit, the headline counts what the message stands for, and an
//! SMS names every alert (the texts when they fit, else one short label
//! per alert) and ends with one link that acknowledges them all (or, with
//! no such link, the newest alert's link whole).

use super::message::{self, Rendered};
use super::outbox::Body;
use crate::config::Language;

/// The longest text or HTML a merged message keeps: a storm merges
/// hundreds of messages into one, and each merge reads the last.
const MERGED_MAX_BYTES: usize = 32 * 1024;

/// `s` cut to at most `max` bytes at a character boundary, with `more` after.
fn bounded(s: String, max: usize, more: &str) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{more}", &s[..end])
}

/// The headline of a merged message.
fn merged_head(n: u32, zh: bool) -> String {
    if zh {
        format!("（合并 {n} 条）")
    } else {
        format!("({n} messages merged) ")
    }
}

/// `s` without the headline an earlier merge put in front.
fn without_head(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix("（合并 ") {
        if let Some((_, r)) = rest.split_once(" 条）") {
            return r;
        }
    }
    if let Some(rest) = s.strip_prefix('(') {
        if let Some((_, r)) = rest.split_once(" messages merged) ") {
            return r;
        }
    }
    s
}

/// Markdown without the bold headline an earlier merge put in front.
fn without_md_head(s: &str) -> &str {
    if let Some((inner, rest)) = s.strip_prefix("**").and_then(|r| r.split_once("**\n\n")) {
        let is_head = (inner.starts_with("（合并 ") && inner.ends_with(" 条）"))
            || (inner.starts_with('(') && inner.ends_with(" messages merged)"));
        if is_head {
            return rest;
        }
    }
    s
}

/// Several messages for one recipient as one. Merging a merged message
/// again counts what it stood for; texts are kept oldest first up to a
/// bound, so a message stays a message however long the storm.
pub fn merge(bodies: &[Body], language: Language) -> Body {
    merge_with(bodies, language, None)
}

/// As [`merge`], the SMS ending with `ack_all` (a link that acknowledges
/// every alert of the digest) when links are on.
pub fn merge_with(bodies: &[Body], language: Language, ack_all: Option<&str>) -> Body {
    let zh = language == Language::ZhCn;
    let n: u32 = bodies.iter().map(|b| b.merged.max(1)).sum();
    let first = &bodies[0];
    let mut alert_ids: Vec<i64> = bodies.iter().flat_map(|b| b.alert_ids.iter().copied()).collect();
    alert_ids.sort_unstable();
    alert_ids.dedup();
    let head = merged_head(n, zh);
    let more = if zh {
        "\n……（其余见指挥中心页面）"
    } else {
        "\n… (the rest on the command-center page)"
    };
    let mut labels: Vec<String> = Vec::new();
    for l in bodies.iter().flat_map(|b| b.labels.iter()) {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    let sms =
        merge_sms_all(&head, bodies.iter().map(|b| without_head(&b.rendered.sms)), &labels, zh, ack_all);
    let rendered = Rendered {
        subject: format!("{head}{}", without_head(&first.rendered.subject)),
        text: bounded(
            bodies.iter().map(|b| b.rendered.text.as_str()).collect::<Vec<_>>().join("\n----\n"),
            MERGED_MAX_BYTES,
            more,
        ),
        html: bounded(
            bodies.iter().map(|b| b.rendered.html.as_str()).collect::<Vec<_>>().join("<hr>"),
            MERGED_MAX_BYTES,
            &format!("<p>{}</p>", more.trim()),
        ),
        sms,
        markdown: {
            let all = bodies
                .iter()
                .map(|b| without_md_head(&b.rendered.markdown))
                .collect::<Vec<_>>()
                .join("\n\n---\n\n");
            bounded(format!("**{}**\n\n{all}", head.trim()), message::MARKDOWN_MAX_BYTES, more)
        },
        params: bodies.last().map(|b| b.rendered.params.clone()).unwrap_or_default(),
        voice: bodies.last().map(|b| b.rendered.voice.clone()).unwrap_or_default(),
    };
    Body { rendered, to: first.to.clone(), secret: first.secret.clone(), alert_ids, merged: n, labels }
}

/// Several SMS texts as one: the headline, each text without its ack link
/// (the district prefix said once), cut to fit, and the newest link kept
/// whole at the end.
#[cfg(test)]
pub(super) fn merge_sms<'a>(head: &str, texts: impl Iterator<Item = &'a str>, zh: bool) -> String {
    merge_sms_all(head, texts, &[], zh, None)
}

/// Several SMS texts as one digest: the texts (each without its link, the
/// district prefix said once) when they fit; else the district prefix and
/// one label per alert, cut with a count of the rest; `ack_all` (or the
/// newest link) whole at the end.
pub(super) fn merge_sms_all<'a>(
    head: &str,
    texts: impl Iterator<Item = &'a str>,
    labels: &[String],
    zh: bool,
    ack_all: Option<&str>,
) -> String {
    let mut link = None;
    let mut parts = Vec::new();
    for (i, t) in texts.enumerate() {
        let (text, l) = match ["确认收到：", "确认全部：", "Acknowledge: ", "Acknowledge all: "]
            .iter()
            .find_map(|m| t.rfind(m))
        {
            Some(at) => (&t[..at], Some(&t[at..])),
            None => (t, None),
        };
        link = l.or(link);
        let text = if i > 0 && text.starts_with('【') {
            text.split_once('】').map_or(text, |(_, r)| r)
        } else {
            text
        };
        parts.push(text.trim_end().trim_end_matches(['。', '.', '；', ';']).to_string());
    }
    let stop = if zh { "。" } else { ". " };
    let tail = match ack_all {
        Some(l) => format!("{stop}{}{l}", if zh { "确认全部：" } else { "Acknowledge all: " }),
        None => link.map_or(String::new(), |l| format!("{stop}{l}")),
    };
    let budget = message::SMS_MAX_CHARS.saturating_sub(tail.chars().count());
    let body = format!("{head}{}", parts.join(if zh { "；" } else { "; " }));
    if body.chars().count() <= budget || labels.is_empty() {
        let body = if body.chars().count() > budget {
            body.chars().take(budget.saturating_sub(1)).collect::<String>() + "…"
        } else {
            body
        };
        return body + &tail;
    }
    // Name every alert: a label each, as many as fit, and how many more.
    let prefix =
        parts.first().and_then(|p| p.split_once('】')).map_or(String::new(), |(p, _)| format!("{p}】"));
    let mut out = format!("{head}{prefix}");
    let sep = if zh { "、" } else { ", " };
    for (i, l) in labels.iter().enumerate() {
        let more =
            if zh { format!("等 {} 处", labels.len()) } else { format!(" and {} more", labels.len() - i) };
        let piece = if i == 0 { l.clone() } else { format!("{sep}{l}") };
        let room = budget.saturating_sub(out.chars().count());
        let last = i + 1 == labels.len();
        if piece.chars().count() + if last { 0 } else { more.chars().count() } > room {
            out.push_str(&more);
            break;
        }
        out.push_str(&piece);
    }
    out + &tail
}
