//! The words of a notification, per channel: what a team lead reads on a
//! phone in ten seconds — level and colour, where, how much, which way it
//! goes, what to do (the plan card), how to acknowledge.
//!
//! Chinese by default (`daemon.language = "zh-CN"`), English selectable.
//! Grouped notifications summarise ("城东街道 3 处积水点达到Ⅲ级…").

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::alerts::model::{AlertSnapshot, Intent, IntentKind, Notification};
use crate::config::{Kind, Language, Role};
use crate::level::Level;

/// Longest SMS text: what one long (concatenated) SMS carries safely.
pub const SMS_MAX_CHARS: usize = 300;
/// WeCom's markdown limit: one message of a single notice stays under it
/// (longer robot messages — storm summaries, digests — go in parts).
pub const ROBOT_MAX_BYTES: usize = 4096;
/// The longest markdown of anything (a digest of a storm's messages to a
/// robot, sent in parts): a bound for storms of storms.
pub const MARKDOWN_MAX_BYTES: usize = 64 * 1024;

/// What every message of one notification shares.
pub struct Context<'a> {
    pub district: &'a str,
    pub language: Language,
    /// Street id → name.
    pub streets: &'a BTreeMap<String, String>,
    /// An ack link for an alert, for this recipient, if links are on.
    pub ack_link: &'a dyn Fn(i64) -> Option<String>,
    /// One link acknowledging all these alerts (a summary's), if links are on.
    pub ack_all: &'a dyn Fn(&[i64]) -> Option<String>,
    pub drill: bool,
}

/// A notification in every channel's form.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub sms: String,
    pub markdown: String,
    /// For providers that send approved templates: named parameters.
    pub params: BTreeMap<String, String>,
    /// What a call reads out (a voice gateway's `{text}`).
    #[serde(default)]
    pub voice: String,
}

fn zh(c: &Context<'_>) -> bool {
    c.language == Language::ZhCn
}

fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn level_label(c: &Context<'_>, l: Level) -> String {
    if zh(c) {
        format!("{}级{}", l.roman(), l.colour_zh())
    } else {
        format!("level {} ({})", l.as_str(), l.colour_en())
    }
}

fn street_name<'a>(c: &'a Context<'_>, a: &'a AlertSnapshot) -> &'a str {
    c.streets.get(&a.street).map_or(a.street.as_str(), String::as_str)
}

fn kind_word(c: &Context<'_>, a: &AlertSnapshot) -> &'static str {
    let kind: Option<Kind> = a.card.as_ref().map(|c| c.kind);
    match (zh(c), kind) {
        (true, Some(k)) => k.name_zh(),
        (true, None) => "站点",
        (false, Some(k)) => k.as_str(),
        (false, None) => "site",
    }
}

/// "积水深度 21 cm（阈值 20 cm）"; when the level rests on a value quality
/// control found suspect and the next reading confirmed, it says so.
fn value_phrase(c: &Context<'_>, a: &AlertSnapshot) -> String {
    let Some(v) = a.value else { return String::new() };
    let mut s = format!("{} {} {}", a.rule_name, num(v), a.unit).trim_end().to_string();
    if let Some(t) = a.threshold {
        if zh(c) {
            let _ = write!(s, "（阈值 {} {}）", num(t), a.unit);
        } else {
            let _ = write!(s, " (threshold {} {})", num(t), a.unit);
        }
    }
    if let Some(test) = &a.suspect {
        if zh(c) {
            let _ = write!(s, "（数据曾被质控判为可疑：{test}，已由后续读数确认）");
        } else {
            let _ = write!(
                s,
                " (quality control found the value suspect: {test}; the next reading confirmed it)"
            );
        }
    }
    s
}

/// "上涨 60 cm/h，预计 9 分钟后达到Ⅱ级".
fn trend_phrase(c: &Context<'_>, a: &AlertSnapshot) -> String {
    let mut parts = Vec::new();
    if let Some(t) = a.trend_per_hour.filter(|t| t.abs() > 1e-9) {
        let dir = match (zh(c), t > 0.0) {
            (true, true) => "上涨",
            (true, false) => "下降",
            (false, true) => "rising",
            (false, false) => "falling",
        };
        parts.push(format!("{dir} {} {}/h", num(t.abs()), a.unit));
    }
    if let (Some(l), Some(s)) = (a.eta_level, a.eta_seconds) {
        let min = (s / 60.0).round().max(1.0);
        parts.push(if zh(c) {
            format!("预计 {min} 分钟后达到{}级", l.roman())
        } else {
            format!("level {} expected in {min} min", l.as_str())
        });
    }
    parts.join(if zh(c) { "，" } else { ", " })
}

/// The headline of one intent: what happened.
fn headline(c: &Context<'_>, i: &Intent) -> String {
    let a = &i.alert;
    let level = a.level.map(|l| level_label(c, l)).unwrap_or_default();
    let place = match a.kind.as_str() {
        "street" => street_name(c, a).to_string(),
        "district" => c.district.to_string(),
        _ => format!("{} {}", street_name(c, a), a.site_name),
    };
    let role = i.escalation_role.as_deref().and_then(|r| r.parse::<Role>().ok());
    // Not a flood level: a sensor fault or a broken collection link says what it is.
    if matches!(a.kind.as_str(), "maintenance" | "gateway") {
        return match (zh(c), i.kind) {
            (true, IntentKind::Resolved) => format!("已恢复 {place}：{}", a.rule_name),
            (true, _) => format!("{} {place}", a.rule_name),
            (false, IntentKind::Resolved) => format!("back to normal: {place}: {}", a.rule_name),
            (false, _) => format!("{}: {place}", a.rule_name),
        };
    }
    if zh(c) {
        match i.kind {
            IntentKind::Firing => format!("{level}预警 {place}"),
            IntentKind::Escalated => format!("升级为{level} {place}"),
            IntentKind::Deescalated => format!("降为{level} {place}"),
            IntentKind::Resolved => format!("已解除 {place}"),
            IntentKind::Repeat => format!("{level}预警（未确认，再次提醒） {place}"),
            IntentKind::Escalation => {
                format!("{level}预警（超时未确认，逐级上报{}） {place}", role.map_or("", |r| r.name_zh()))
            }
            IntentKind::Call => format!("{level}预警（超时未确认，电话通知） {place}"),
        }
    } else {
        match i.kind {
            IntentKind::Firing => format!("{level}: {place}"),
            IntentKind::Escalated => format!("raised to {level}: {place}"),
            IntentKind::Deescalated => format!("lowered to {level}: {place}"),
            IntentKind::Resolved => format!("resolved: {place}"),
            IntentKind::Repeat => format!("{level}, not yet acknowledged: {place}"),
            IntentKind::Escalation => format!(
                "{level}, not acknowledged in time (to {}): {place}",
                i.escalation_role.as_deref().unwrap_or("")
            ),
            IntentKind::Call => format!("{level}, not acknowledged in time (phone call): {place}"),
        }
    }
}

/// "辖区抢险队、交警中队 30 分钟内到场：启动移动泵车强排".
fn card_phrase(c: &Context<'_>, a: &AlertSnapshot) -> Option<String> {
    let card = a.card.as_ref()?;
    let min = card.arrive_within_s / 60;
    let first = card.measures.first().map(String::as_str).unwrap_or("");
    Some(if zh(c) {
        format!("{} {min} 分钟内到场：{first}", card.unit)
    } else {
        format!("{} on site within {min} min: {first}", card.unit)
    })
}

/// The nearest depots holding the card's materials, with their keepers:
/// "物资：城东防汛物资仓库（王保管 13800000501）".
fn supply_phrase(c: &Context<'_>, a: &AlertSnapshot) -> Option<String> {
    if a.supply.is_empty() {
        return None;
    }
    let depots: Vec<String> =
        a.supply.iter().map(|s| format!("{}（{} {}）", s.name, s.keeper, s.phone)).collect();
    Some(if zh(c) {
        format!("物资：{}", depots.join("、"))
    } else {
        format!("Materials: {}", depots.join(", "))
    })
}

/// Each depot with what to take from it: "城东防汛物资仓库（王保管
/// 13800000501，0.1 km）：编织袋（沙袋）200 条、移动泵车 1 台".
fn supply_lines(c: &Context<'_>, a: &AlertSnapshot) -> Vec<String> {
    a.supply
        .iter()
        .map(|s| {
            let items: Vec<String> =
                s.items.iter().map(|i| format!("{} {} {}", i.name, num(i.quantity), i.unit)).collect();
            if zh(c) {
                format!(
                    "{}（{} {}，{} km）：{}",
                    s.name,
                    s.keeper,
                    s.phone,
                    num(s.distance_km),
                    items.join("、")
                )
            } else {
                format!(
                    "{} ({} {}, {} km): {}",
                    s.name,
                    s.keeper,
                    s.phone,
                    num(s.distance_km),
                    items.join(", ")
                )
            }
        })
        .collect()
}

fn prefix(c: &Context<'_>) -> String {
    match (zh(c), c.drill) {
        (true, true) => format!("【{}防汛·演练】", c.district),
        (true, false) => format!("【{}防汛】", c.district),
        (false, true) => format!("[{} flood control · DRILL] ", c.district),
        (false, false) => format!("[{} flood control] ", c.district),
    }
}

fn cut_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn most_severe(n: &Notification) -> &Intent {
    n.intents
        .iter()
        .max_by_key(|i| (i.alert.level, std::cmp::Reverse(i.created_at)))
        .expect("a notification has intents")
}

fn is_area(a: &AlertSnapshot) -> bool {
    matches!(a.kind.as_str(), "street" | "district")
}

/// The street and district levels of a grouped notification, most severe
/// first: "Ⅱ级橙色预警 城东街道".
fn area_lines(c: &Context<'_>, n: &Notification) -> Vec<String> {
    let mut areas: Vec<&Intent> = n.intents.iter().filter(|i| is_area(&i.alert)).collect();
    areas.sort_by_key(|i| std::cmp::Reverse(i.alert.level));
    areas.into_iter().map(|i| headline(c, i)).collect()
}

/// A summary line per street and level of the sites: "城东街道 3 处积水点处于Ⅲ级：A 21 cm、B 26 cm".
fn summary_lines(c: &Context<'_>, n: &Notification) -> Vec<String> {
    let mut groups: BTreeMap<(std::cmp::Reverse<Option<Level>>, String, &'static str), Vec<&Intent>> =
        BTreeMap::new();
    for i in n.intents.iter().filter(|i| !is_area(&i.alert)) {
        let k =
            (std::cmp::Reverse(i.alert.level), street_name(c, &i.alert).to_string(), kind_word(c, &i.alert));
        groups.entry(k).or_default().push(i);
    }
    groups
        .into_iter()
        .map(|((lvl, street, kind), is)| {
            let items: Vec<String> = is
                .iter()
                .map(|i| match i.alert.value {
                    Some(v) => {
                        format!("{} {} {}", i.alert.site_name, num(v), i.alert.unit).trim_end().to_string()
                    }
                    None => i.alert.site_name.clone(),
                })
                .collect();
            match (zh(c), lvl.0) {
                (true, Some(l)) => {
                    format!("{street} {} 处{kind}处于{}级：{}", is.len(), l.roman(), items.join("、"))
                }
                (true, None) => format!("{street} {} 处{kind}已解除：{}", is.len(), items.join("、")),
                (false, Some(l)) => {
                    format!("{street}: {} {kind} at level {}: {}", is.len(), l.as_str(), items.join(", "))
                }
                (false, None) => format!("{street}: {} {kind} resolved: {}", is.len(), items.join(", ")),
            }
        })
        .collect()
}

/// Renders a notification for one recipient.
pub fn render(c: &Context<'_>, n: &Notification) -> Rendered {
    let top = most_severe(n);
    let a = &top.alert;
    let summary = n.intents.len() > 1;
    // A summary's SMS and robot message end with one link that acknowledges
    // every alert it tells of (its page lists them all, the SMS may not).
    let mut ids: Vec<i64> = n.intents.iter().map(|i| i.alert.id).filter(|id| *id > 0).collect();
    ids.sort_unstable();
    ids.dedup();
    let all = summary && ids.len() > 1;
    let link = if all { (c.ack_all)(&ids) } else { (c.ack_link)(a.id) };
    let ack_line = link.as_ref().map(|l| match (zh(c), all) {
        (true, true) => format!("确认全部：{l}"),
        (true, false) => format!("确认收到：{l}"),
        (false, true) => format!("Acknowledge all: {l}"),
        (false, false) => format!("Acknowledge: {l}"),
    });

    let mut sms = prefix(c);
    let mut details: Vec<String> = Vec::new();
    let mut card_tail = None;
    if summary {
        // The areas' levels, then the sites; what to do is kept whole at
        // the end (the list of sites gives way).
        let areas = area_lines(c, n);
        let sites = summary_lines(c, n);
        let lines: Vec<String> = areas.iter().chain(&sites).cloned().collect();
        sms.push_str(&lines.join(if zh(c) { "；" } else { "; " }));
        if top.kind != IntentKind::Resolved {
            card_tail = card_phrase(c, a);
        }
        details.extend(lines);
    } else {
        sms.push_str(&headline(c, top));
        for part in [value_phrase(c, a), trend_phrase(c, a)] {
            if !part.is_empty() {
                sms.push_str(if zh(c) { "，" } else { ", " });
                sms.push_str(&part);
                details.push(part);
            }
        }
        if top.kind != IntentKind::Resolved {
            if let Some(card) = card_phrase(c, a) {
                sms.push_str(if zh(c) { "。" } else { ". " });
                sms.push_str(&card);
            }
        }
    }
    // The card of a summary, the depots and the link go last but are never cut.
    let supply = if top.kind != IntentKind::Resolved { supply_phrase(c, a) } else { None };
    let stop = if zh(c) { "。" } else { ". " };
    let tail: String =
        card_tail.iter().chain(supply.iter()).chain(ack_line.iter()).map(|t| format!("{stop}{t}")).collect();
    let budget = SMS_MAX_CHARS.saturating_sub(tail.chars().count());
    let sms = format!("{}{tail}", cut_chars(&sms, budget));

    let subject = if summary {
        let max = n.intents.iter().filter_map(|i| i.alert.level).max();
        match (zh(c), max) {
            (true, Some(l)) => {
                format!("{}汛情汇总：{} 处预警，最高{}", prefix(c), n.intents.len(), level_label(c, l))
            }
            (true, None) => format!("{}汛情汇总：{} 处预警解除", prefix(c), n.intents.len()),
            (false, Some(l)) => {
                format!("{}{} alerts, highest {}", prefix(c), n.intents.len(), level_label(c, l))
            }
            (false, None) => format!("{}{} alerts resolved", prefix(c), n.intents.len()),
        }
    } else {
        let v = a.value.map(|v| format!(" {} {}", num(v), a.unit)).unwrap_or_default();
        format!("{}{}{}", prefix(c), headline(c, top), v.trim_end())
    };

    // Plain text and HTML: everything, with the plan card.
    let mut text = String::new();
    let mut html = String::from("<div style=\"font-family:sans-serif\">");
    let _ = writeln!(text, "{subject}\n");
    let _ = write!(html, "<h2>{}</h2>", esc(&subject));
    for i in &n.intents {
        let _ = writeln!(text, "■ {}", headline(c, i));
        let _ = write!(html, "<h3>{}</h3>", esc(&headline(c, i)));
        for part in [value_phrase(c, &i.alert), trend_phrase(c, &i.alert)] {
            if !part.is_empty() {
                let _ = writeln!(text, "  {part}");
                let _ = write!(html, "<p>{}</p>", esc(&part));
            }
        }
        if !i.alert.members.is_empty() {
            let line = if zh(c) {
                format!("所辖预警：{}", i.alert.members.join("、"))
            } else {
                format!("Alerts: {}", i.alert.members.join(", "))
            };
            let _ = writeln!(text, "  {line}");
            let _ = write!(html, "<p>{}</p>", esc(&line));
        }
        if let (Some(card), true) = (&i.alert.card, i.kind != IntentKind::Resolved) {
            let (u, d, m, t) = if zh(c) {
                ("责任单位", "职责", "措施", "到岗时限")
            } else {
                ("Responsible", "Duties", "Measures", "On site within")
            };
            let mins = card.arrive_within_s / 60;
            let when = if zh(c) { format!("{mins} 分钟") } else { format!("{mins} min") };
            let _ = writeln!(
                text,
                "  {u}：{}\n  {d}：{}\n  {m}：{}\n  {t}：{when}",
                card.unit,
                card.duties.join("；"),
                card.measures.join("；")
            );
            let _ = write!(
                html,
                "<table><tr><th align=left>{u}</th><td>{}</td></tr><tr><th align=left>{d}</th><td>{}</td></tr><tr><th align=left>{m}</th><td>{}</td></tr><tr><th align=left>{t}</th><td>{}</td></tr></table>",
                esc(&card.unit),
                esc(&card.duties.join("；")),
                esc(&card.measures.join("；")),
                esc(&when)
            );
            let depots = supply_lines(c, &i.alert);
            if !depots.is_empty() {
                let label = if zh(c) { "物资" } else { "Materials" };
                let _ = writeln!(text, "  {label}：{}", depots.join("；"));
                let _ = write!(html, "<p><b>{label}</b>：{}</p>", esc(&depots.join("；")));
            }
        }
        if let Some(l) = (c.ack_link)(i.alert.id) {
            let label = if zh(c) { "确认收到" } else { "Acknowledge" };
            let _ = writeln!(text, "  {label}：{l}");
            let _ = write!(html, "<p><a href=\"{}\">{label}</a></p>", esc(&l));
        }
        text.push('\n');
    }
    html.push_str("</div>");

    // Robot markdown.
    let colour = match a.level {
        Some(Level::I | Level::II) => "warning",
        Some(_) => "info",
        None => "comment",
    };
    let mut md = format!("### <font color=\"{colour}\">{}</font>\n", subject.trim());
    if summary {
        for line in &details {
            let _ = writeln!(md, "> {line}");
        }
        if let (Some(card), true) = (card_phrase(c, a), top.kind != IntentKind::Resolved) {
            let _ = writeln!(md, "\n**{}**", card);
        }
        if let Some(s) = &supply {
            let _ = writeln!(md, "{s}");
        }
    } else {
        for d in &details {
            let _ = writeln!(md, "> {d}");
        }
        if let (Some(card), true) = (&a.card, top.kind != IntentKind::Resolved) {
            let mins = card.arrive_within_s / 60;
            if zh(c) {
                let _ = writeln!(
                    md,
                    "\n**责任单位**：{}（{mins} 分钟内到场）\n**措施**：{}",
                    card.unit,
                    card.measures.join("；")
                );
            } else {
                let _ = writeln!(
                    md,
                    "\n**Responsible**: {} (on site within {mins} min)\n**Measures**: {}",
                    card.unit,
                    card.measures.join("; ")
                );
            }
            let depots = supply_lines(c, a);
            if !depots.is_empty() {
                let label = if zh(c) { "物资" } else { "Materials" };
                let _ = writeln!(md, "**{label}**：{}", depots.join("；"));
            }
        }
    }
    if let Some(l) = &link {
        let label = match (zh(c), all) {
            (true, true) => "全部确认收到",
            (true, false) => "确认收到",
            (false, true) => "Acknowledge all",
            (false, false) => "Acknowledge",
        };
        let _ = write!(md, "\n[{label}]({l})");
    }
    let markdown = cut_bytes(&md, if summary { MARKDOWN_MAX_BYTES } else { ROBOT_MAX_BYTES });

    let mut params = BTreeMap::new();
    let p = |s: String| cut_chars(&s, 20);
    params.insert(
        "level".into(),
        p(a.level.map(|l| level_label(c, l)).unwrap_or_else(|| {
            if zh(c) {
                "解除".into()
            } else {
                "resolved".into()
            }
        })),
    );
    params.insert("street".into(), p(street_name(c, a).to_string()));
    params.insert(
        "site".into(),
        p(if summary { format!("{} 等 {} 处", a.site_name, n.intents.len()) } else { a.site_name.clone() }),
    );
    params.insert("value".into(), p(a.value.map(|v| format!("{}{}", num(v), a.unit)).unwrap_or_default()));
    params.insert("action".into(), p(card_phrase(c, a).unwrap_or_default()));
    let voice = voice_text(c, n, top);
    Rendered { subject, text, html, sms, markdown, params, voice }
}

/// What a call reads out: who calls, the most severe alert, how many more,
/// what to do, how to acknowledge.
fn voice_text(c: &Context<'_>, n: &Notification, top: &Intent) -> String {
    let a = &top.alert;
    let level = a.level.map(|l| level_label(c, l)).unwrap_or_default();
    let place = format!("{} {}", street_name(c, a), a.site_name);
    let value = value_phrase(c, a);
    let more = n.intents.len().saturating_sub(1);
    let card = card_phrase(c, a);
    if zh(c) {
        let mut s = format!("{}防汛指挥部紧急通知：{place}，{level}预警", c.district);
        if !value.is_empty() {
            s.push_str(&format!("，{value}"));
        }
        if more > 0 {
            s.push_str(&format!("；另有 {more} 处预警"));
        }
        if let Some(card) = card {
            s.push_str(&format!("。{card}"));
        }
        s.push_str("。请立即处置，并通过短信链接或指挥中心确认收到。");
        s
    } else {
        let mut s = format!("{} flood control, urgent: {place}, {level}", c.district);
        if !value.is_empty() {
            s.push_str(&format!(", {value}"));
        }
        if more > 0 {
            s.push_str(&format!("; {more} more alerts"));
        }
        if let Some(card) = card {
            s.push_str(&format!(". {card}"));
        }
        s.push_str(". Act now and acknowledge by the message link or at the command center.");
        s
    }
}

/// One short line per alert of a notification ("Ⅲ 人民路铁路桥下穿"): what a
/// digest SMS names when the texts do not fit.
pub fn labels(c: &Context<'_>, n: &Notification) -> Vec<String> {
    n.intents
        .iter()
        .map(|i| {
            let a = &i.alert;
            let level = a.level.map_or_else(
                || if zh(c) { "解除".to_string() } else { "resolved".to_string() },
                |l| l.roman().to_string(),
            );
            let place = match a.kind.as_str() {
                "street" => street_name(c, a).to_string(),
                "district" => c.district.to_string(),
                _ => a.site_name.clone(),
            };
            format!("{level} {place}")
        })
        .collect()
}

/// Text made safe to put in HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
