//! Who is told: the teams covering an alert's street from their lowest
//! level up, their members by level and duty roster, and the tiers of the
//! escalation chain. A suspected sensor fault goes to the maintenance
//! contacts (`[[maintenance]]`) of its street, never to the rescue teams; a
//! broken collection link (采集链路中断) to both.

use chrono::DateTime;
use chrono_tz::Tz;

use super::model::{Alert, AlertKind, Recipient};
use crate::config::{Member, Role, Team, TeamsFile};
use crate::level::Level;
use crate::roster;

fn recipient(team: &Team, m: &Member) -> Recipient {
    Recipient {
        team: team.id.clone(),
        name: m.name.clone(),
        role: m.role.as_str().to_string(),
        phone: m.phone.clone(),
        email: m.email.clone(),
    }
}

/// The level an alert is routed at (device-offline, maintenance and
/// collection-link alerts as Ⅳ).
pub fn routing_level(alert: &Alert) -> Option<Level> {
    match alert.kind {
        Some(AlertKind::Offline | AlertKind::Maintenance | AlertKind::Gateway) => Some(Level::IV),
        _ => alert.level.or(alert.peak_level),
    }
}

/// Teams told about the alert at `level`: those covering its street (for
/// the district, those covering every street) whose lowest level it reaches.
/// Sensor faults: the maintenance contacts covering the street instead.
pub fn teams<'t>(teams: &'t TeamsFile, alert: &Alert, level: Level) -> Vec<&'t Team> {
    // An intake's alert has no street: the district's.
    let district = alert.kind == Some(AlertKind::Gateway) && alert.street.is_empty();
    let maintenance = teams.maintenance.iter().filter(|t| district || t.streets.contains(&alert.street));
    match alert.kind {
        Some(AlertKind::Maintenance) => return maintenance.collect(),
        Some(AlertKind::Gateway) => {
            let as_district = Alert { kind: Some(AlertKind::District), ..Alert::default() };
            let rescue = rescue(teams, if district { &as_district } else { alert }, level);
            return rescue.into_iter().chain(maintenance).collect();
        }
        _ => {}
    }
    rescue(teams, alert, level)
}

fn rescue<'t>(teams: &'t TeamsFile, alert: &Alert, level: Level) -> Vec<&'t Team> {
    teams
        .teams
        .iter()
        .filter(|t| t.min_level <= level)
        .filter(|t| match alert.kind {
            Some(AlertKind::District) => {
                let all: Vec<&String> = teams.teams.iter().flat_map(|t| &t.streets).collect();
                all.iter().all(|s| t.streets.contains(s))
            }
            _ => t.streets.contains(&alert.street),
        })
        .collect()
}

/// Those of `candidates` on duty at `at` (the roster); all of them when the
/// roster leaves nobody — a gap in the roster must not silence a team.
fn on_duty<'t>(team: &'t Team, candidates: Vec<&'t Member>, at: &DateTime<Tz>) -> Vec<&'t Member> {
    let on: Vec<&Member> =
        candidates.iter().copied().filter(|m| roster::on_duty(team, &m.name, at)).collect();
    if on.is_empty() {
        if !candidates.is_empty() {
            tracing::warn!(team = %team.id, "nobody on the duty roster now: telling every member instead");
        }
        candidates
    } else {
        on
    }
}

/// A team's members told at `level` at local time `at`.
pub fn members(team: &Team, level: Level, at: &DateTime<Tz>) -> Vec<Recipient> {
    let candidates = team
        .members
        .iter()
        .filter(|m| m.min_level.unwrap_or(team.min_level).max(team.min_level) <= level)
        .collect();
    on_duty(team, candidates, at).into_iter().map(|m| recipient(team, m)).collect()
}

/// The members of `role` for an escalation from `team`: the team's own, or
/// else those of any team covering the street (the district HQ); on duty
/// at `at`.
pub fn tier(
    teams_file: &TeamsFile,
    team: &Team,
    role: Role,
    street: &str,
    at: &DateTime<Tz>,
) -> Vec<Recipient> {
    let of = |t: &'_ Team| -> Vec<Recipient> {
        let candidates = t.members.iter().filter(|m| m.role == role).collect();
        on_duty(t, candidates, at).into_iter().map(|m| recipient(t, m)).collect()
    };
    let own = of(team);
    if !own.is_empty() {
        return own;
    }
    teams_file.teams.iter().filter(|t| t.streets.iter().any(|s| s == street)).flat_map(of).collect()
}

/// The escalation chain of a team (a maintenance contact has none unless it
/// gives its own: a sensor fault does not climb the flood chain).
pub fn chain<'t>(teams_file: &'t TeamsFile, team: &'t Team) -> &'t [Role] {
    match &team.chain {
        Some(c) => c,
        None if teams_file.is_maintenance(&team.id) => &[],
        None => &teams_file.alerting.chain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TeamsFile {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        crate::config::load_with_env(&main, &Default::default()).unwrap().teams
    }

    fn noon() -> DateTime<Tz> {
        use chrono::TimeZone;
        chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 7, 20, 12, 0, 0).unwrap()
    }

    fn alert(street: &str, level: Level) -> Alert {
        Alert { kind: Some(AlertKind::Site), street: street.into(), level: Some(level), ..Alert::default() }
    }

    #[test]
    fn teams_and_members_by_street_and_level() {
        let t = sample();
        let names = |a: &Alert, l: Level| -> Vec<String> {
            teams(&t, a, l).iter().flat_map(|team| members(team, l, &noon())).map(|r| r.name).collect()
        };
        assert_eq!(names(&alert("chengdong", Level::IV), Level::IV), ["张队长", "区值班员"]);
        assert_eq!(
            names(&alert("chengdong", Level::III), Level::III),
            ["张队长", "李队员", "区值班员", "区防汛办 刘主任"]
        );
        assert_eq!(
            names(&alert("binhe", Level::II), Level::II),
            ["赵队长", "钱队员", "滨河街道 孙主任", "区值班员", "区防汛办 刘主任", "区指挥部 陈副指挥"]
        );
        let district = Alert { kind: Some(AlertKind::District), ..alert("", Level::I) };
        assert_eq!(
            names(&district, Level::I),
            ["区值班员", "区防汛办 刘主任", "区指挥部 陈副指挥", "区指挥部 林指挥"],
            "the district goes to the team covering every street"
        );
    }

    #[test]
    fn sensor_faults_go_to_maintenance_links_to_both_levels_to_the_rescue_teams() {
        let t = sample();
        let ids = |kind: AlertKind| -> Vec<String> {
            let a = Alert { kind: Some(kind), ..alert("binhe", Level::IV) };
            teams(&t, &a, Level::IV).iter().map(|team| team.id.clone()).collect()
        };
        assert_eq!(ids(AlertKind::Maintenance), ["iot"]);
        assert_eq!(ids(AlertKind::Gateway), ["team2", "hq", "iot"]);
        assert_eq!(ids(AlertKind::Site), ["team2", "hq"]);
        assert_eq!(ids(AlertKind::Offline), ["team2", "hq"]);
        let district = Alert { kind: Some(AlertKind::District), ..alert("", Level::I) };
        assert_eq!(teams(&t, &district, Level::I).iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["hq"]);
        let iot = t.maintenance.iter().find(|m| m.id == "iot").unwrap();
        assert!(chain(&t, iot).is_empty(), "a sensor fault does not climb the flood chain");
    }

    #[test]
    fn the_chain_finds_the_district_hq_outside_the_team() {
        let t = sample();
        let team1 = t.teams.iter().find(|x| x.id == "team1").unwrap();
        assert_eq!(chain(&t, team1), [Role::Leader, Role::StreetDirector, Role::DistrictHq]);
        let names = |role| {
            tier(&t, team1, role, "chengdong", &noon()).into_iter().map(|r| r.name).collect::<Vec<_>>()
        };
        assert_eq!(names(Role::StreetDirector), ["城东街道 王主任"]);
        assert_eq!(names(Role::DistrictHq), ["区指挥部 陈副指挥", "区指挥部 林指挥"]);
    }

    #[test]
    fn the_roster_picks_who_is_on_duty_and_a_gap_tells_everyone() {
        use chrono::TimeZone;
        let mut t = sample();
        let hq = t.teams.iter_mut().find(|x| x.id == "hq").unwrap();
        let mut night = hq.members[0].clone();
        night.name = "夜班值班员".into();
        hq.members.insert(1, night);
        let shift = |member: &str, from: &str, to: &str| crate::config::Shift {
            member: member.into(),
            days: vec!["mon".into()],
            dates: vec![],
            from: from.into(),
            to: to.into(),
        };
        hq.roster = vec![shift("区值班员", "08:00", "20:00"), shift("夜班值班员", "20:00", "08:00")];
        let hq = t.teams.iter().find(|x| x.id == "hq").unwrap();
        let at = |h| chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 7, 20, h, 0, 0).unwrap();
        let names = |h| members(hq, Level::IV, &at(h)).into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(12), ["区值班员"]);
        assert_eq!(names(22), ["夜班值班员"]);
        assert_eq!(names(3), ["区值班员", "夜班值班员"], "Monday 03:00 is not covered: both are told");
        let duty = |h| {
            tier(&t, hq, Role::DutyOfficer, "chengdong", &at(h))
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(duty(22), ["夜班值班员"], "escalation tiers follow the roster too");
    }
}
