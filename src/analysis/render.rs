//! The event report's sections from an [`Analysis`]: rainfall, waterlogging
//! points, pump stations — Markdown (the report's HTML is made from it).

use std::fmt::Write;

use super::{Analysis, Peak};
use crate::level::Level;
use crate::reading::{from_ns, TimestampNs};

pub fn num(v: f64) -> String {
    let s = format!("{v:.1}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn hm(ts: TimestampNs, tz: chrono_tz::Tz) -> String {
    from_ns(ts).with_timezone(&tz).format("%m-%d %H:%M").to_string()
}

/// `95 分钟`, `3.5 小时`.
pub fn span(ns: i64) -> String {
    let min = ns as f64 / 60e9;
    if min < 120.0 {
        format!("{} 分钟", num(min))
    } else {
        format!("{} 小时", num(min / 60.0))
    }
}

fn hours(ns: i64) -> String {
    format!("{} 小时", num(ns as f64 / 3600e9))
}

fn peak(p: Option<Peak>, unit: &str, tz: chrono_tz::Tz) -> (String, String) {
    match p {
        Some(p) => (format!("{} {unit}", num(p.value)).trim_end().to_string(), hm(p.at, tz)),
        None => ("—".into(), "—".into()),
    }
}

/// Section numbers in Chinese, for the report's headings.
const NUMERALS: [&str; 12] = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二"];

/// The rainfall, waterlogging and pump sections, numbered from `first` (1 = 一).
pub fn markdown(a: &Analysis, tz: chrono_tz::Tz, first: usize) -> String {
    let n = |k: usize| NUMERALS.get(first + k - 1).copied().unwrap_or("");
    let mut o = String::new();
    let _ = writeln!(o, "## {}、降雨\n", n(0));
    let _ = writeln!(o, "数据来源：{}。\n", a.source);
    if a.rain.iter().all(|r| r.reports == 0) {
        let _ = writeln!(o, "本时段内雨量站无数据。\n");
    } else {
        if let Some(avg) = a.district_rain_mm {
            let gauges = a.rain.iter().filter(|r| r.reports > 0).count();
            let _ = write!(o, "全区平均降雨量 {} mm（{gauges} 个雨量站平均）", num(avg));
        }
        let wettest =
            a.rain.iter().filter_map(|r| Some((r, r.max_1h?))).max_by(|x, y| x.1.value.total_cmp(&y.1.value));
        if let Some((r, p)) = wettest {
            let _ =
                write!(o, "，最大 1 小时降雨 {} mm，出现在{}（{} 止）", num(p.value), r.name, hm(p.at, tz));
        }
        let _ = writeln!(o, "。\n");
        let _ = writeln!(o, "| 雨量站 | 站点 | 累计降雨 | 最大 1 小时 | 止于 | 最大 3 小时 | 止于 |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        for r in &a.rain {
            let (h1, t1) = peak(r.max_1h, "mm", tz);
            let (h3, t3) = peak(r.max_3h, "mm", tz);
            let _ = writeln!(
                o,
                "| {} | {} | {} mm | {h1} | {t1} | {h3} | {t3} |",
                r.name,
                r.site,
                num(r.total_mm)
            );
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "## {}、积水点\n", n(1));
    let _ = writeln!(
        o,
        "| 积水点 | 站点 | 最大积水深度 | 出现时间 | 最高等级 | Ⅳ级及以上 | Ⅲ级及以上 | Ⅱ级及以上 | Ⅰ级 | 退水用时（峰值至Ⅳ级以下） |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for d in &a.depths {
        let (v, t) = peak(d.peak, &d.unit, tz);
        let top = d.top.map_or("—".into(), |l: Level| format!("{}级", l.roman()));
        let at = |i: usize| if d.above_ns[i] > 0 { span(d.above_ns[i]) } else { "—".into() };
        let drain = match (d.drain_ns, d.undrained) {
            (Some(ns), _) => span(ns),
            (None, true) => "时段结束时未退至Ⅳ级以下".into(),
            (None, false) => "—".into(),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {v} | {t} | {top} | {} | {} | {} | {} | {drain} |",
            d.name,
            d.site,
            at(0),
            at(1),
            at(2),
            at(3)
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## {}、泵站运行\n", n(2));
    let _ = writeln!(o, "| 泵站 | 机组 | 运行时长 | 启动次数 | 故障次数 | 故障时长 |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for s in &a.stations {
        for p in &s.pumps {
            let fault = if p.fault_ns > 0 { span(p.fault_ns) } else { "—".into() };
            let _ = writeln!(
                o,
                "| {} | {}# | {} | {} | {} | {fault} |",
                s.name,
                p.no,
                hours(p.running_ns),
                p.starts,
                p.faults
            );
        }
    }
    let _ = writeln!(o);
    let peaks: Vec<String> = a
        .stations
        .iter()
        .filter_map(|s| {
            let p = s.forebay_peak?;
            Some(format!("{} {:.2} m（{}）", s.name, p.value, hm(p.at, tz)))
        })
        .collect();
    if !peaks.is_empty() {
        let _ = writeln!(o, "前池最高水位：{}。\n", peaks.join("；"));
    }
    o
}
