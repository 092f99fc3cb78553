//! Drills on record (演练记录): each `floodguard notify-test` — which team,
//! when, and each recipient's result — kept in `state.db`
//! (`alerts::records`), listed on the live page (`GET /api/v1/drills`) and
//! counted by the readiness report (drills held, the last, the reach rate).

use serde::{Deserialize, Serialize};

use crate::reading::TimestampNs;

/// One recipient's result in a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillLine {
    pub name: String,
    pub channel: String,
    /// The phone or e-mail; a robot's host only.
    pub address: String,
    /// The provider accepted the message.
    pub ok: bool,
    /// The provider's answer, or why it failed.
    pub detail: String,
}

/// One drill.
#[derive(Debug, Clone, PartialEq)]
pub struct Drill {
    pub id: i64,
    pub ts: TimestampNs,
    pub team: String,
    pub team_name: String,
    pub lines: Vec<DrillLine>,
}

impl Drill {
    /// Messages accepted, and messages sent.
    pub fn reached(&self) -> (usize, usize) {
        (self.lines.iter().filter(|l| l.ok).count(), self.lines.len())
    }
}

/// What the readiness report says of the drills: how many, the last, and
/// the share of messages accepted over all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillSummary {
    pub count: usize,
    pub teams: usize,
    pub last: Option<TimestampNs>,
    pub accepted: usize,
    pub sent: usize,
}

impl DrillSummary {
    pub fn of(drills: &[Drill]) -> DrillSummary {
        let mut teams: Vec<&str> = drills.iter().map(|d| d.team.as_str()).collect();
        teams.sort_unstable();
        teams.dedup();
        DrillSummary {
            count: drills.len(),
            teams: teams.len(),
            last: drills.iter().map(|d| d.ts).max(),
            accepted: drills.iter().map(|d| d.reached().0).sum(),
            sent: drills.iter().map(|d| d.reached().1).sum(),
        }
    }

    /// The reach rate, %; `None` before any message was sent.
    pub fn reach_percent(&self) -> Option<f64> {
        (self.sent > 0).then(|| self.accepted as f64 * 100.0 / self.sent as f64)
    }
}

impl DrillLine {
    /// A result line of `floodguard notify-test`.
    pub fn of(r: &crate::notify::drill::DrillResult) -> DrillLine {
        use crate::notify::send::Outcome;
        let ok = matches!(r.outcome, Outcome::Sent { .. });
        let detail = r.outcome.text().to_string();
        DrillLine { name: r.name.clone(), channel: r.channel.clone(), address: r.address.clone(), ok, detail }
    }
}

/// Records a drill of `team` held at `ts` in the state store at `state_db`;
/// its id.
pub fn record(
    state_db: &std::path::Path,
    team: &crate::config::Team,
    ts: TimestampNs,
    results: &[crate::notify::drill::DrillResult],
) -> Result<i64, String> {
    let drill = Drill {
        id: 0,
        ts,
        team: team.id.clone(),
        team_name: team.name.clone(),
        lines: results.iter().map(DrillLine::of).collect(),
    };
    let mut store = crate::alerts::store::Store::open(state_db).map_err(|e| e.to_string())?;
    store.insert_drill(&drill).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ok: bool) -> DrillLine {
        DrillLine { name: "x".into(), channel: "sms".into(), address: "1".into(), ok, detail: String::new() }
    }

    #[test]
    fn the_summary_counts_drills_teams_and_the_reach() {
        let d =
            |id, team: &str, ts, lines| Drill { id, ts, team: team.into(), team_name: team.into(), lines };
        let drills = [
            d(1, "team1", 10, vec![line(true), line(true), line(false)]),
            d(2, "team2", 30, vec![line(true)]),
            d(3, "team1", 20, vec![line(true), line(true), line(true), line(true)]),
        ];
        let s = DrillSummary::of(&drills);
        assert_eq!((s.count, s.teams, s.last, s.accepted, s.sent), (3, 2, Some(30), 7, 8));
        assert_eq!(s.reach_percent(), Some(87.5));
        assert_eq!(DrillSummary::of(&[]).reach_percent(), None);
    }

    #[test]
    fn a_recorded_drill_reads_back_with_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        let c = crate::config::load_with_env(&main, &Default::default()).unwrap();
        let team = c.teams.teams.iter().find(|t| t.id == "team1").unwrap();
        use crate::notify::send::Outcome;
        let r = |name: &str, outcome| crate::notify::drill::DrillResult {
            name: name.into(),
            channel: "sms".into(),
            address: "13800000101".into(),
            outcome,
        };
        let results = [r("张队长", Outcome::sent("OK")), r("李队员", Outcome::Failed("blocked".into()))];
        record(&path, team, 7, &results).unwrap();
        record(&path, team, 9, &results[..1]).unwrap();
        let store = crate::alerts::store::Store::open(&path).unwrap();
        let drills = store.drills(None).unwrap();
        assert_eq!(drills.len(), 2);
        assert_eq!(
            (drills[0].team.as_str(), drills[0].team_name.as_str(), drills[0].ts),
            ("team1", "一队", 7)
        );
        assert_eq!(
            drills[0].lines[1],
            DrillLine {
                name: "李队员".into(),
                channel: "sms".into(),
                address: "13800000101".into(),
                ok: false,
                detail: "blocked".into()
            }
        );
        assert_eq!(DrillSummary::of(&drills).reach_percent(), Some(200.0 / 3.0));
        assert_eq!(store.drills(Some(8)).unwrap().len(), 1);
    }
}
