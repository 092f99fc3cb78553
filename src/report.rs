//! `floodguard report`: the 汛情报告 of a rain event, from the alert history —
//! what a district report fills in by hand where it leaves `*`: how many
//! alerts at which level in which street, the peaks, how fast the teams
//! acknowledged and disposed, what was silenced, what lasted longest.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::alerts::model::{Alert, AlertKind, Silence};
use crate::alerts::route;
use crate::config::TeamsFile;
use crate::level::Level;
use crate::notify::ledger::Delivery;
use crate::notify::trail;
use crate::reading::{from_ns, TimestampNs};

/// What the report is about.
pub struct Input<'a> {
    pub district_name: &'a str,
    /// Street id → name, in the order of sites.toml.
    pub streets: &'a [(String, String)],
    pub teams: &'a TeamsFile,
    pub alerts: &'a [Alert],
    pub silences: &'a [Silence],
    /// The messages of those alerts (who was told, how, whether it reached them).
    pub deliveries: &'a [Delivery],
    pub since: TimestampNs,
    pub until: TimestampNs,
    pub tz: chrono_tz::Tz,
    /// The period's readings (rainfall, waterlogging, pumps), when read.
    pub analysis: Option<&'a crate::analysis::Analysis>,
}

fn time(ts: TimestampNs, tz: chrono_tz::Tz) -> String {
    from_ns(ts).with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

fn hm(ts: TimestampNs, tz: chrono_tz::Tz) -> String {
    from_ns(ts).with_timezone(&tz).format("%m-%d %H:%M").to_string()
}

fn minutes(ns: i64) -> String {
    let m = ns as f64 / 60e9;
    if m < 10.0 {
        format!("{m:.1} 分钟")
    } else {
        format!("{:.0} 分钟", m.round())
    }
}

fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn median(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2 })
}

fn level_name(l: Level) -> String {
    format!("{}级（{}）", l.roman(), l.colour_zh())
}

/// The facts of the report, computed once for both formats.
struct Facts {
    /// Site and device alerts in the period.
    site_alerts: Vec<Alert>,
    by_level: BTreeMap<Level, usize>,
    /// street id → level → count
    by_street: BTreeMap<String, BTreeMap<Level, usize>>,
    peaks: Vec<Alert>,
    /// team name → (alerts, ack times, disposal times, unacked)
    teams: Vec<(String, usize, Vec<i64>, Vec<i64>, usize)>,
    longest: Vec<(Alert, i64)>,
    areas: Vec<Alert>,
}

fn facts(i: &Input<'_>) -> Facts {
    let site_alerts: Vec<Alert> =
        i.alerts.iter().filter(|a| matches!(a.kind, Some(AlertKind::Site) | None)).cloned().collect();
    let mut by_level = BTreeMap::new();
    let mut by_street: BTreeMap<String, BTreeMap<Level, usize>> = BTreeMap::new();
    for a in &site_alerts {
        if let Some(l) = a.peak_level {
            *by_level.entry(l).or_default() += 1;
            *by_street.entry(a.street.clone()).or_default().entry(l).or_default() += 1;
        }
    }
    // The peak of each site: its highest level, then its highest value.
    let mut peaks: BTreeMap<String, Alert> = BTreeMap::new();
    for a in &site_alerts {
        let better = match peaks.get(&a.site) {
            None => true,
            Some(p) => {
                (a.peak_level, a.peak_value.unwrap_or(f64::MIN))
                    > (p.peak_level, p.peak_value.unwrap_or(f64::MIN))
            }
        };
        if better {
            peaks.insert(a.site.clone(), a.clone());
        }
    }
    let mut peaks: Vec<Alert> = peaks.into_values().collect();
    peaks.sort_by(|a, b| b.peak_level.cmp(&a.peak_level).then(a.peak_at.cmp(&b.peak_at)));
    // Response per responsible team (the first covering the street).
    let mut teams: Vec<(String, usize, Vec<i64>, Vec<i64>, usize)> = Vec::new();
    for a in &site_alerts {
        let Some(level) = a.peak_level else { continue };
        let Some(team) = route::teams(i.teams, a, level).into_iter().next() else { continue };
        let idx = match teams.iter().position(|t| t.0 == team.name) {
            Some(x) => x,
            None => {
                teams.push((team.name.clone(), 0, vec![], vec![], 0));
                teams.len() - 1
            }
        };
        let t = &mut teams[idx];
        t.1 += 1;
        match a.acked_at {
            Some(at) => t.2.push(at - a.started_at),
            None => t.4 += 1,
        }
        if let Some(at) = a.disposed_at {
            t.3.push(at - a.started_at);
        }
    }
    let mut longest: Vec<(Alert, i64)> = site_alerts
        .iter()
        .map(|a| (a.clone(), a.resolved_at.unwrap_or(i.until).min(i.until) - a.started_at.max(i.since)))
        .collect();
    longest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
    longest.truncate(5);
    let areas: Vec<Alert> = i
        .alerts
        .iter()
        .filter(|a| matches!(a.kind, Some(AlertKind::Street | AlertKind::District)))
        .cloned()
        .collect();
    Facts { site_alerts, by_level, by_street, peaks, teams, longest, areas }
}

fn street_name<'a>(i: &'a Input<'_>, id: &'a str) -> &'a str {
    i.streets.iter().find(|(s, _)| s == id).map_or(id, |(_, n)| n.as_str())
}

/// The report in Markdown.
pub fn markdown(i: &Input<'_>) -> String {
    let f = facts(i);
    let tz = i.tz;
    let mut o = String::new();
    let _ = writeln!(o, "# {}汛情报告\n", i.district_name);
    let _ = writeln!(o, "报告时段：{} 至 {}（{}）\n", time(i.since, tz), time(i.until, tz), tz);
    let _ = writeln!(o, "## 一、总体情况\n");
    let total = f.site_alerts.len();
    let counts: Vec<String> = Level::ALL
        .iter()
        .rev()
        .map(|l| format!("{}级 {} 起", l.roman(), f.by_level.get(l).copied().unwrap_or(0)))
        .collect();
    let _ = write!(o, "本时段内全区共发生站点预警 {total} 起，其中{}。", counts.join("、"));
    if let Some(top) = f.peaks.first() {
        let value =
            top.peak_value.map_or(String::new(), |v| format!("，{} {} {}", top.rule_name, num(v), top.unit));
        let _ = write!(
            o,
            "最高预警等级为{}，{}出现在{}{}{}。",
            level_name(top.peak_level.expect("peak")),
            top.peak_at.map_or(String::new(), |t| format!("{} ", hm(t, tz))),
            street_name(i, &top.street),
            top.site_name,
            value
        );
    }
    let areas: Vec<String> = f
        .areas
        .iter()
        .filter_map(|a| {
            Some(format!(
                "{}最高{}（{}）",
                a.site_name,
                level_name(a.peak_level?),
                hm(a.peak_at.unwrap_or(a.started_at), tz)
            ))
        })
        .collect();
    if !areas.is_empty() {
        let _ = write!(o, "区域响应：{}。", areas.join("；"));
    }
    let acked: Vec<i64> = f.teams.iter().flat_map(|t| t.2.iter().copied()).collect();
    let disposed: Vec<i64> = f.teams.iter().flat_map(|t| t.3.iter().copied()).collect();
    if !acked.is_empty() {
        let _ = write!(o, "各抢险队确认预警用时中位 {}", minutes(median(&mut acked.clone()).unwrap_or(0)));
        if !disposed.is_empty() {
            let _ = write!(o, "，处置完成用时中位 {}", minutes(median(&mut disposed.clone()).unwrap_or(0)));
        }
        let _ = write!(o, "。");
    }
    let _ = writeln!(o, "\n");

    let _ = writeln!(o, "## 二、各街道预警\n");
    let _ = writeln!(o, "| 街道 | Ⅰ级 | Ⅱ级 | Ⅲ级 | Ⅳ级 | 合计 |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for (id, name) in i.streets {
        let m = f.by_street.get(id);
        let c = |l: Level| m.and_then(|m| m.get(&l)).copied().unwrap_or(0);
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {} | {} | {} |",
            c(Level::I),
            c(Level::II),
            c(Level::III),
            c(Level::IV),
            m.map_or(0, |m| m.values().sum())
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## 三、站点峰值\n");
    let _ = writeln!(o, "| 站点 | 名称 | 街道 | 指标 | 峰值 | 出现时间 | 最高等级 |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for a in &f.peaks {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            a.site,
            a.site_name,
            street_name(i, &a.street),
            a.rule_name,
            a.peak_value.map_or("—".into(), |v| format!("{} {}", num(v), a.unit)),
            a.peak_at.map_or("—".into(), |t| hm(t, tz)),
            a.peak_level.map_or("—".into(), level_name)
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## 四、响应与处置\n");
    let _ = writeln!(o, "| 抢险队 | 预警数 | 确认用时（中位 / 最长） | 处置用时（中位 / 最长） | 未确认 |");
    let _ = writeln!(o, "|---|---|---|---|---|");
    for (name, n, ack, disp, unacked) in &f.teams {
        let span = |v: &[i64]| match (median(&mut v.to_vec()), v.iter().max()) {
            (Some(m), Some(w)) => format!("{} / {}", minutes(m), minutes(*w)),
            _ => "—".into(),
        };
        let _ = writeln!(o, "| {name} | {n} | {} | {} | {unacked} |", span(ack), span(disp));
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## 五、持续时间最长的预警\n");
    let _ = writeln!(o, "| 预警 | 站点 | 规则 | 最高等级 | 开始 | 结束 | 持续 |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for (a, d) in &f.longest {
        let _ = writeln!(
            o,
            "| #{} | {} | {} | {} | {} | {} | {} |",
            a.id,
            a.site_name,
            a.rule_name,
            a.peak_level.map_or("—".into(), level_name),
            hm(a.started_at, tz),
            a.resolved_at.map_or("未解除".into(), |t| hm(t, tz)),
            minutes(*d)
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## 六、期间生效的静默（检修）\n");
    let in_force: Vec<&Silence> =
        i.silences.iter().filter(|s| s.starts_at < i.until && s.ends_at > i.since).collect();
    if in_force.is_empty() {
        let _ = writeln!(o, "无。");
    } else {
        let _ = writeln!(o, "| 范围 | 开始 | 结束 | 设置人 | 原因 |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        for s in in_force {
            let m = &s.matchers;
            let scope: Vec<String> =
                [("站点", &m.site), ("规则", &m.rule), ("街道", &m.street), ("类型", &m.kind)]
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
                    .collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                scope.join("，"),
                hm(s.starts_at, tz),
                hm(s.ends_at, tz),
                s.created_by,
                s.comment
            );
        }
    }
    if let Some(a) = i.analysis {
        let _ = writeln!(o);
        o.push_str(&crate::analysis::render::markdown(a, tz, 7));
    }
    deliveries_section(&mut o, i);
    o
}

/// "40 秒", "3.5 分钟".
fn span(ns: i64) -> String {
    if ns < 60_000_000_000 {
        format!("{} 秒", (ns.max(0) as f64 / 1e9).round())
    } else {
        minutes(ns)
    }
}

fn channel_zh(c: &str) -> &str {
    match c {
        "sms" => "短信",
        "email" => "邮件",
        "voice" => "电话",
        "wecom" => "企业微信",
        "dingtalk" => "钉钉",
        "webhook" => "Webhook",
        other => other,
    }
}

/// The last section (七, or 十 after the readings' three): per alert, who
/// was told on which channel, whether it reached them, who acknowledged,
/// how long each step took.
fn deliveries_section(o: &mut String, i: &Input<'_>) {
    let n = if i.analysis.is_some() { "十" } else { "七" };
    let _ = writeln!(o, "\n## {n}、通知与送达\n");
    let tz = i.tz;
    let mut any = false;
    for a in i.alerts.iter().filter(|a| matches!(a.kind, Some(AlertKind::Site) | None)) {
        let rows: Vec<Delivery> = i.deliveries.iter().filter(|d| d.alert_id == a.id).cloned().collect();
        if rows.is_empty() {
            continue;
        }
        if any {
            let _ = writeln!(o);
        }
        any = true;
        let ack = match (&a.acked_by, a.acked_at) {
            (Some(by), Some(at)) => format!("{by} {}后确认", span(at - a.started_at)),
            _ => "未确认".to_string(),
        };
        let disposed = match (&a.disposed_by, a.disposed_at) {
            (Some(by), Some(at)) => format!("，{by} {}后处置完成", span(at - a.started_at)),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "#{} {} {}（最高{}，开始 {}）：{ack}{disposed}。\n",
            a.id,
            a.site_name,
            a.rule_name,
            a.peak_level.map_or("—".into(), level_name),
            hm(a.started_at, tz)
        );
        let _ = writeln!(o, "| 通知对象 | 渠道 | 结果 | 发出用时 | 送达用时 | 说明 |");
        let _ = writeln!(o, "|---|---|---|---|---|---|");
        for step in trail::steps(a.started_at, &rows) {
            let t = |s: Option<f64>| s.map_or("—".to_string(), |s| span((s * 1e9) as i64));
            let note = step.note.as_deref().unwrap_or("").replace('|', "/");
            let note: String = note.chars().take(40).collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                step.to,
                channel_zh(&step.channel),
                trail::result_zh(&step.result),
                t(step.sent_after_s),
                t(step.reached_after_s),
                note
            );
        }
    }
    if !any {
        let _ = writeln!(o, "无通知记录。");
    }
}

use crate::notify::message::esc as escape;

/// The report as a standalone HTML page (the Markdown's headings,
/// paragraphs and tables).
pub fn html(i: &Input<'_>) -> String {
    md_to_html(&markdown(i), "汛情报告")
}

/// A report's Markdown (headings, paragraphs, tables) as a standalone HTML page.
pub fn md_to_html(md: &str, title: &str) -> String {
    let mut o = format!(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #999;padding:.3em .6em}}</style></head><body>\n",
        escape(title)
    );
    let mut in_table = false;
    for line in md.lines() {
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            let cells: Vec<String> = line.trim_matches('|').split('|').map(|c| escape(c.trim())).collect();
            if !in_table {
                o.push_str("<table>\n<tr>");
                for c in &cells {
                    let _ = write!(o, "<th>{c}</th>");
                }
                o.push_str("</tr>\n");
                in_table = true;
            } else {
                o.push_str("<tr>");
                for c in &cells {
                    let _ = write!(o, "<td>{c}</td>");
                }
                o.push_str("</tr>\n");
            }
            continue;
        }
        if in_table {
            o.push_str("</table>\n");
            in_table = false;
        }
        if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(o, "<h2>{}</h2>", escape(h));
        } else if let Some(h) = line.strip_prefix("# ") {
            let _ = writeln!(o, "<h1>{}</h1>", escape(h));
        } else if !line.trim().is_empty() {
            let _ = writeln!(o, "<p>{}</p>", escape(line));
        }
    }
    if in_table {
        o.push_str("</table>\n");
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
