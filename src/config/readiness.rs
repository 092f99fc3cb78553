//! What the pre-season readiness report (汛前准备情况) counts besides the
//! teams and the sites: the flood HQ and its member units (`[hq]` in
//! teams.toml), the works on pump stations and the waterlogging
//! renovation projects (`[[pump_works]]`, `[[renovations]]` in sites.toml).

use std::collections::HashSet;

use serde::Deserialize;

use super::sites::{Kind, SitesFile};
use super::teams::{Team, TeamsFile};

/// `[hq]`: the district flood-control HQ (防汛抗旱指挥部).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Hq {
    /// 某区防汛抗旱指挥部
    pub name: String,
    /// 总指挥 (a post, not a phone book).
    pub commander: Option<String>,
    /// Where its office sits (区防汛办设在区水务局).
    pub office: Option<String>,
    /// The `[[teams]]` entry that is the HQ's own duty team: not a rescue team.
    pub team: Option<String>,
    /// 成员单位
    #[serde(default)]
    pub units: Vec<MemberUnit>,
}

/// `[[hq.units]]`: a member unit (成员单位) and what it answers for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MemberUnit {
    pub name: String,
    /// 职责
    pub duties: String,
}

string_enum! {
    /// What was done to a pump station.
    pub enum WorkKind ("work kind") {
        /// 改造升级
        Upgrade = "upgrade",
        /// 检修、维护
        Repair = "repair",
    }
}

string_enum! {
    pub enum WorkStatus ("work status") {
        Planned = "planned",
        InProgress = "in_progress",
        Done = "done",
    }
}

impl WorkStatus {
    pub fn name_zh(self) -> &'static str {
        match self {
            WorkStatus::Planned => "计划中",
            WorkStatus::InProgress => "实施中",
            WorkStatus::Done => "已完成",
        }
    }
}

fn one() -> u32 {
    1
}

/// `[[pump_works]]`: an upgrade or a repair of a pump station.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PumpWork {
    /// A pump-station site of sites.toml.
    pub site: String,
    /// `2026-04-10`
    pub date: String,
    pub kind: WorkKind,
    /// 更换 2 号泵电机，加装变频柜
    pub what: String,
    pub status: WorkStatus,
    /// How many pump units (台) it covered.
    #[serde(default = "one")]
    pub pumps: u32,
}

/// `[[renovations]]`: a waterlogging point's renovation project (积水点改造).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Renovation {
    /// The site it is for (usually a waterlogging point).
    pub site: String,
    pub name: String,
    /// 工程内容
    pub scope: String,
    /// The share of the work the schedule wants done by now, %.
    pub planned_percent: f64,
    /// The share done, %.
    pub actual_percent: f64,
    /// When it was finished (`2026-05-20`), once it is.
    pub completed: Option<String>,
}

/// A team's headcount: `headcount` when given, otherwise its listed members.
pub fn headcount(team: &Team) -> u32 {
    team.headcount.unwrap_or(team.members.len() as u32)
}

/// The rescue teams (抢险救援队): every team but the HQ's own.
pub fn rescue_teams(teams: &TeamsFile) -> Vec<&Team> {
    let hq = teams.hq.as_ref().and_then(|h| h.team.as_deref());
    teams.teams.iter().filter(|t| Some(t.id.as_str()) != hq).collect()
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// Checks of `[hq]` against the teams; `(key path, reason)`.
pub fn validate_hq(teams: &TeamsFile) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let Some(hq) = &teams.hq else { return errs };
    if hq.name.trim().is_empty() {
        errs.push(("hq.name".into(), "must not be empty".into()));
    }
    if let Some(t) = &hq.team {
        if !teams.teams.iter().any(|x| &x.id == t) {
            errs.push(("hq.team".into(), format!("no team {t:?} in [[teams]]")));
        }
    }
    let mut names = HashSet::new();
    for (i, u) in hq.units.iter().enumerate() {
        if u.name.trim().is_empty() {
            errs.push((format!("hq.units[{i}].name"), "must not be empty".into()));
        } else if !names.insert(u.name.trim()) {
            errs.push((format!("hq.units[{i}].name"), format!("{:?} is listed twice", u.name)));
        }
        if u.duties.trim().is_empty() {
            errs.push((format!("hq.units[{i}].duties"), "say what the unit answers for (职责)".into()));
        }
    }
    errs
}

/// Checks of `[[pump_works]]` and `[[renovations]]` against the sites.
pub fn validate_sites(file: &SitesFile) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let site = |id: &str| file.sites.iter().find(|s| s.id == id);
    for (i, w) in file.pump_works.iter().enumerate() {
        let at = |k: &str| format!("pump_works[{i}].{k}");
        match site(&w.site) {
            None => errs.push((at("site"), format!("no site {:?}", w.site))),
            Some(s) if s.kind != Kind::PumpStation => {
                errs.push((at("site"), format!("{:?} is a {} site, not a pump station", w.site, s.kind)))
            }
            Some(s) => {
                let installed = s.params.get("pumps").copied().unwrap_or(f64::INFINITY);
                if w.pumps == 0 || f64::from(w.pumps) > installed {
                    errs.push((
                        at("pumps"),
                        format!("{} pumps: the station has {installed} (1 or more, at most those)", w.pumps),
                    ));
                }
            }
        }
        if !is_date(&w.date) {
            errs.push((at("date"), format!("{:?} is not a date (2026-04-10)", w.date)));
        }
        if w.what.trim().is_empty() {
            errs.push((at("what"), "say what was done".into()));
        }
    }
    for (i, r) in file.renovations.iter().enumerate() {
        let at = |k: &str| format!("renovations[{i}].{k}");
        if site(&r.site).is_none() {
            errs.push((at("site"), format!("no site {:?}", r.site)));
        }
        if r.name.trim().is_empty() {
            errs.push((at("name"), "must not be empty".into()));
        }
        for (k, v) in [("planned_percent", r.planned_percent), ("actual_percent", r.actual_percent)] {
            if !(0.0..=100.0).contains(&v) {
                errs.push((at(k), format!("{v} is not a percentage (0–100)")));
            }
        }
        if let Some(d) = &r.completed {
            if !is_date(d) {
                errs.push((at("completed"), format!("{d:?} is not a date (2026-05-20)")));
            } else if r.actual_percent < 100.0 {
                errs.push((at("completed"), format!("finished, but actual_percent is {}", r.actual_percent)));
            }
        }
    }
    errs
}
