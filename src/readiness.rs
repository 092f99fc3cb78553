//! `floodguard report --kind readiness`: 汛前准备情况 — the paragraph of a
//! district's flood work report whose blanks the office fills by hand
//! ("下设*个成员单位"，"对*个泵站进行改造升级，*台泵组进行检修、维护"，
//! "*处积水点改造项目完成工程量的*%"，"总人数*人的*支防汛抢险救援队"，
//! "储备价值*万元的防汛物资"…), every blank filled from the configuration
//! (teams.toml's `[hq]` and teams, sites.toml's works and sites,
//! materials.toml) and the state store (drills, materials issued and
//! returned): Markdown and HTML in Chinese, and the numbers as JSON for
//! other systems.

use std::fmt::Write;

use serde::Serialize;

use crate::config::readiness::{self, WorkKind, WorkStatus};
use crate::config::{Category, Config, Kind};
use crate::drills::{Drill, DrillSummary};
use crate::materials::{num, Movement, Stock};
use crate::reading::TimestampNs;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    pub name: String,
    pub duties: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hq {
    pub name: String,
    pub commander: Option<String>,
    pub office: Option<String>,
    pub member_units: usize,
    pub units: Vec<Unit>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Work {
    pub site: String,
    pub station: String,
    pub date: String,
    pub kind: String,
    pub what: String,
    pub status: String,
    pub pumps: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PumpStations {
    /// Pump stations monitored.
    pub total: usize,
    /// Stations with an upgrade (改造升级) on record.
    pub upgraded: usize,
    /// Pump units (台) repaired or maintained (检修、维护).
    pub repaired_pumps: u32,
    /// Works of either kind finished.
    pub done: usize,
    pub works: Vec<Work>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    pub site: String,
    pub name: String,
    pub scope: String,
    pub planned_percent: f64,
    pub actual_percent: f64,
    pub completed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Renovations {
    pub projects: usize,
    pub completed: usize,
    /// Mean share of the work the schedules want done by now, %.
    pub planned_percent: f64,
    /// Mean share done (完成工程量), %.
    pub actual_percent: f64,
    pub list: Vec<Project>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamFacts {
    pub id: String,
    pub name: String,
    pub unit: Option<String>,
    pub headcount: u32,
    pub streets: Vec<String>,
    pub equipment: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Teams {
    /// Rescue teams (抢险救援队): every team but the HQ's own.
    pub count: usize,
    pub headcount: u32,
    pub list: Vec<TeamFacts>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drills {
    pub count: usize,
    pub teams: usize,
    pub last: Option<String>,
    pub accepted: usize,
    pub sent: usize,
    pub reach_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holding {
    pub item: String,
    pub name: String,
    pub quantity: f64,
    pub unit: String,
    /// Yuan.
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepotFacts {
    pub id: String,
    pub name: String,
    pub keeper: String,
    pub phone: String,
    /// Yuan.
    pub value: f64,
    pub items: Vec<Holding>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Materials {
    /// What all depots hold now, yuan and 万元 (rounded to 0.01).
    pub value_yuan: f64,
    pub value_wan: f64,
    pub depots: Vec<DepotFacts>,
    /// Totals per item over the depots.
    pub items: Vec<Holding>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryCount {
    pub category: String,
    pub name: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Monitoring {
    pub sites: usize,
    /// Waterlogging points on roads, in underpasses and tunnels, at crossings.
    pub road_points: usize,
    pub communities: usize,
    pub malls: usize,
    pub schools: usize,
    pub pump_stations: usize,
    pub by_category: Vec<CategoryCount>,
    pub by_kind: Vec<CategoryCount>,
}

/// The numbers of the readiness report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    pub district: String,
    /// RFC 3339, when it was made.
    pub as_of: String,
    pub hq: Option<Hq>,
    pub pump_stations: PumpStations,
    pub renovations: Renovations,
    pub teams: Teams,
    pub drills: Drills,
    pub materials: Materials,
    pub monitoring: Monitoring,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The facts from `config`, the drills and the materials' movements on
/// record, as of `now`.
pub fn facts(config: &Config, drills: &[Drill], moves: &[Movement], now: TimestampNs) -> Readiness {
    let tz = config.timezone;
    let site_name = |id: &str| config.site(id).map_or(id.to_string(), |s| s.name.clone());
    let hq = config.teams.hq.as_ref().map(|h| Hq {
        name: h.name.clone(),
        commander: h.commander.clone(),
        office: h.office.clone(),
        member_units: h.units.len(),
        units: h.units.iter().map(|u| Unit { name: u.name.clone(), duties: u.duties.clone() }).collect(),
    });

    let works = &config.sites.pump_works;
    let mut upgraded: Vec<&str> =
        works.iter().filter(|w| w.kind == WorkKind::Upgrade).map(|w| w.site.as_str()).collect();
    upgraded.sort_unstable();
    upgraded.dedup();
    let pump_stations = PumpStations {
        total: config.sites.sites.iter().filter(|s| s.kind == Kind::PumpStation).count(),
        upgraded: upgraded.len(),
        repaired_pumps: works.iter().filter(|w| w.kind == WorkKind::Repair).map(|w| w.pumps).sum(),
        done: works.iter().filter(|w| w.status == WorkStatus::Done).count(),
        works: works
            .iter()
            .map(|w| Work {
                site: w.site.clone(),
                station: site_name(&w.site),
                date: w.date.clone(),
                kind: w.kind.as_str().into(),
                what: w.what.clone(),
                status: w.status.as_str().into(),
                pumps: w.pumps,
            })
            .collect(),
    };

    let renos = &config.sites.renovations;
    let renovations = Renovations {
        projects: renos.len(),
        completed: renos.iter().filter(|r| r.completed.is_some()).count(),
        planned_percent: round2(mean(renos.iter().map(|r| r.planned_percent))),
        actual_percent: round2(mean(renos.iter().map(|r| r.actual_percent))),
        list: renos
            .iter()
            .map(|r| Project {
                site: r.site.clone(),
                name: r.name.clone(),
                scope: r.scope.clone(),
                planned_percent: r.planned_percent,
                actual_percent: r.actual_percent,
                completed: r.completed.clone(),
            })
            .collect(),
    };

    let rescue = readiness::rescue_teams(&config.teams);
    let teams = Teams {
        count: rescue.len(),
        headcount: rescue.iter().map(|t| readiness::headcount(t)).sum(),
        list: rescue
            .iter()
            .map(|t| TeamFacts {
                id: t.id.clone(),
                name: t.name.clone(),
                unit: t.unit.clone(),
                headcount: readiness::headcount(t),
                streets: t.streets.clone(),
                equipment: t.equipment.clone(),
            })
            .collect(),
    };

    let sum = DrillSummary::of(drills);
    let drills = Drills {
        count: sum.count,
        teams: sum.teams,
        last: sum.last.map(|t| crate::engine::rfc3339(t, tz)),
        accepted: sum.accepted,
        sent: sum.sent,
        reach_percent: sum.reach_percent().map(round2),
    };

    let m = &config.materials;
    let stock = Stock::new(m, moves);
    let holding = |item: &str, quantity: f64| {
        let it = m.item(item).expect("items of the stock are the file's");
        Holding {
            item: item.to_string(),
            name: it.name.clone(),
            quantity,
            unit: it.unit.clone(),
            value: quantity * it.unit_value,
        }
    };
    let depots: Vec<DepotFacts> = m
        .depots
        .iter()
        .map(|d| {
            let items: Vec<Holding> = m
                .items
                .iter()
                .map(|(id, _)| (id, stock.get(&d.id, id)))
                .filter(|(_, q)| *q > 0.0)
                .map(|(id, q)| holding(id, q))
                .collect();
            DepotFacts {
                id: d.id.clone(),
                name: d.name.clone(),
                keeper: d.keeper.clone(),
                phone: d.phone.clone(),
                value: items.iter().map(|i| i.value).sum(),
                items,
            }
        })
        .collect();
    let items: Vec<Holding> = m
        .items
        .iter()
        .map(|(id, _)| (id, m.depots.iter().map(|d| stock.get(&d.id, id).max(0.0)).sum::<f64>()))
        .filter(|(_, q)| *q > 0.0)
        .map(|(id, q)| holding(id, q))
        .collect();
    let value_yuan: f64 = depots.iter().map(|d| d.value).sum();
    let materials = Materials { value_yuan, value_wan: round2(value_yuan / 10_000.0), depots, items };

    let sites = &config.sites.sites;
    let count = |f: &dyn Fn(&crate::config::Site) -> bool| sites.iter().filter(|s| f(s)).count();
    let mut by_category: Vec<CategoryCount> = Vec::new();
    let mut by_kind: Vec<CategoryCount> = Vec::new();
    for s in sites {
        let c = s.category.as_str();
        match by_category.iter_mut().find(|x| x.category == c) {
            Some(x) => x.count += 1,
            None => by_category.push(CategoryCount {
                category: c.into(),
                name: s.category.name_zh().into(),
                count: 1,
            }),
        }
        let k = s.kind.as_str();
        match by_kind.iter_mut().find(|x| x.category == k) {
            Some(x) => x.count += 1,
            None => {
                by_kind.push(CategoryCount { category: k.into(), name: s.kind.name_zh().into(), count: 1 })
            }
        }
    }
    let monitoring = Monitoring {
        sites: sites.len(),
        road_points: count(&|s| {
            s.kind == Kind::Waterlogging
                && matches!(
                    s.category,
                    Category::Road | Category::Underpass | Category::Tunnel | Category::Intersection
                )
        }),
        communities: count(&|s| s.category == Category::Community),
        malls: count(&|s| s.category == Category::Mall),
        schools: count(&|s| s.category == Category::School),
        pump_stations: count(&|s| s.kind == Kind::PumpStation),
        by_category,
        by_kind,
    };

    Readiness {
        district: config.sites.district.name.clone(),
        as_of: crate::engine::rfc3339(now, tz),
        hq,
        pump_stations,
        renovations,
        teams,
        drills,
        materials,
        monitoring,
    }
}

fn pct(v: f64) -> String {
    format!("{}%", num(v))
}

fn date(rfc: &str) -> &str {
    rfc.get(..10).unwrap_or(rfc)
}

/// The readiness report in Markdown (Chinese).
pub fn markdown(r: &Readiness) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}汛前准备情况\n", r.district);
    let _ = writeln!(o, "截至 {}。\n", r.as_of.replace('T', " ").get(..16).unwrap_or(&r.as_of));
    // The paragraph, blanks filled.
    let mut p = String::new();
    match &r.hq {
        Some(hq) => {
            let _ = write!(p, "{}下设 {} 个成员单位", hq.name, hq.member_units);
            if let Some(office) = &hq.office {
                let _ = write!(p, "，{office}负责日常工作");
            }
            p.push('。');
        }
        None => p.push_str("防汛指挥部成员单位未配置（teams.toml 无 [hq]）。"),
    }
    let ps = &r.pump_stations;
    let _ = write!(
        p,
        "对 {} 个泵站进行改造升级，{} 台泵组进行检修、维护（{} 项工作中 {} 项已完成）。",
        ps.upgraded,
        ps.repaired_pumps,
        ps.works.len(),
        ps.done
    );
    let rn = &r.renovations;
    let _ = write!(
        p,
        "{} 处积水点改造项目完成工程量的 {}（计划 {}），其中 {} 处已完工。",
        rn.projects,
        pct(rn.actual_percent),
        pct(rn.planned_percent),
        rn.completed
    );
    let _ = write!(p, "全区成立了总人数 {} 人的 {} 支防汛抢险救援队，", r.teams.headcount, r.teams.count);
    let d = &r.drills;
    match (&d.last, d.reach_percent) {
        (Some(last), Some(reach)) => {
            let _ = write!(
                p,
                "已陆续开展防汛应急演练 {} 次（{} 支队伍参加，最近一次 {}，通知送达率 {}）。",
                d.count,
                d.teams,
                date(last),
                pct(reach)
            );
        }
        _ => p.push_str("尚无防汛应急演练记录（共 0 次）。"),
    }
    let _ = write!(
        p,
        "目前已储备价值 {} 万元的防汛物资、设备（{} 个物资仓库）。",
        num(r.materials.value_wan),
        r.materials.depots.len()
    );
    let mo = &r.monitoring;
    let _ = write!(
        p,
        "智慧城市平台对 {} 处道路积水点、{} 个居民小区、{} 个商超、{} 所学校、{} 座泵站进行实时监测，全区共 {} 个监测点。",
        mo.road_points,
        mo.communities,
        mo.malls,
        mo.schools,
        mo.pump_stations,
        mo.sites
    );
    let _ = writeln!(o, "{p}\n");

    if let Some(hq) = &r.hq {
        let _ = writeln!(o, "## 一、指挥部成员单位\n");
        let _ = writeln!(o, "| 成员单位 | 职责 |");
        let _ = writeln!(o, "|---|---|");
        for u in &hq.units {
            let _ = writeln!(o, "| {} | {} |", u.name, u.duties);
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## 二、泵站改造与检修\n");
    let _ = writeln!(o, "| 泵站 | 日期 | 类别 | 内容 | 机组（台） | 状态 |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for w in &ps.works {
        let kind = if w.kind == "upgrade" { "改造升级" } else { "检修、维护" };
        let status = w.status.parse::<WorkStatus>().map_or(w.status.as_str(), |s| s.name_zh());
        let _ = writeln!(o, "| {} | {} | {kind} | {} | {} | {status} |", w.station, w.date, w.what, w.pumps);
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## 三、积水点改造项目\n");
    let _ = writeln!(o, "| 项目 | 站点 | 工程内容 | 计划进度 | 完成进度 | 完工日期 |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for p in &rn.list {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            p.name,
            p.site,
            p.scope,
            pct(p.planned_percent),
            pct(p.actual_percent),
            p.completed.as_deref().unwrap_or("在建")
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## 四、防汛抢险救援队\n");
    let _ = writeln!(o, "| 队伍 | 组成单位 | 人数 | 负责街道 | 装备 |");
    let _ = writeln!(o, "|---|---|---|---|---|");
    for t in &r.teams.list {
        let equipment = if t.equipment.is_empty() { "—".to_string() } else { t.equipment.join("、") };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {equipment} |",
            t.name,
            t.unit.as_deref().unwrap_or("—"),
            t.headcount,
            t.streets.join("、")
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## 五、防汛物资储备\n");
    let _ = writeln!(o, "| 仓库 | 保管员 | 电话 | 价值（万元） | 主要物资 |");
    let _ = writeln!(o, "|---|---|---|---|---|");
    for dp in &r.materials.depots {
        let items: Vec<String> =
            dp.items.iter().map(|i| format!("{} {} {}", i.name, num(i.quantity), i.unit)).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            dp.name,
            dp.keeper,
            dp.phone,
            num(dp.value / 10_000.0),
            items.join("、")
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "| 物资 | 数量 | 价值（万元） |");
    let _ = writeln!(o, "|---|---|---|");
    for i in &r.materials.items {
        let _ = writeln!(o, "| {} | {} {} | {} |", i.name, num(i.quantity), i.unit, num(i.value / 10_000.0));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## 六、监测站点\n");
    let _ = writeln!(o, "| 类别 | 数量 |");
    let _ = writeln!(o, "|---|---|");
    for c in &mo.by_category {
        let _ = writeln!(o, "| {} | {} |", c.name, c.count);
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "| 类型 | 数量 |");
    let _ = writeln!(o, "|---|---|");
    for c in &mo.by_kind {
        let _ = writeln!(o, "| {} | {} |", c.name, c.count);
    }
    o
}

/// `floodguard report --kind readiness`: the report of `config` with the
/// drills and movements in its state store (none when it has none yet).
pub fn command(config: &Config, format: &str, now: TimestampNs) -> Result<String, String> {
    let path = config.data_dir().join("state.db");
    let (drills, moves) = if path.exists() {
        let store =
            crate::alerts::store::Store::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let drills = store.drills(None).map_err(|e| format!("{}: {e}", path.display()))?;
        let moves = store.movements().map_err(|e| format!("{}: {e}", path.display()))?;
        (drills, moves)
    } else {
        (Vec::new(), Vec::new())
    };
    let r = facts(config, &drills, &moves, now);
    Ok(match format {
        "json" => serde_json::to_string_pretty(&r).map_err(|e| e.to_string())? + "\n",
        "html" => crate::report::md_to_html(&markdown(&r), "汛前准备情况"),
        _ => markdown(&r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_districts_blanks_are_all_filled() {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let c = crate::config::load_with_env(&main, &Default::default()).unwrap();
        let r = facts(&c, &[], &[], 1_784_606_400_000_000_000);
        assert_eq!(r.hq.as_ref().unwrap().member_units, 12);
        assert_eq!((r.pump_stations.upgraded, r.pump_stations.repaired_pumps), (2, 4));
        assert_eq!((r.renovations.projects, r.renovations.completed), (3, 1));
        assert_eq!(r.renovations.actual_percent, 73.33);
        assert_eq!((r.teams.count, r.teams.headcount), (3, 53));
        assert_eq!(r.materials.value_yuan, 3_261_800.0);
        assert_eq!(r.materials.value_wan, 326.18);
        let m = &r.monitoring;
        assert_eq!((m.road_points, m.communities, m.malls, m.schools, m.pump_stations), (4, 1, 1, 1, 2));
        let md = markdown(&r);
        assert!(!md.contains('*'), "{md}");
        assert!(md.contains("某区防汛抗旱指挥部下设 12 个成员单位"), "{md}");
        assert!(md.contains("全区成立了总人数 53 人的 3 支防汛抢险救援队"), "{md}");
        assert!(md.contains("目前已储备价值 326.18 万元的防汛物资、设备"), "{md}");
        assert!(md.contains("尚无防汛应急演练记录"), "{md}");
    }
}
