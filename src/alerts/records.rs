//! The command center's records beside the alerts in `state.db`: issues and
//! returns of flood materials (`material_moves`, each also on its alert's
//! timeline) and drills (`drills`, written by `floodguard notify-test`).

use super::store::{Result, Store, Tx};
use crate::drills::{Drill, DrillLine};
use crate::materials::Movement;
use crate::reading::TimestampNs;
use crate::state::db::Backend;
use crate::vals;

fn movements(db: &dyn Backend, alert_id: Option<i64>) -> Result<Vec<Movement>> {
    db.query(
        "SELECT id, ts, depot, item, kind, quantity, alert_id, by, note FROM material_moves
         WHERE CAST(?1 AS BIGINT) IS NULL OR alert_id = ?1 ORDER BY id",
        &vals![alert_id],
    )?
    .iter()
    .map(|r| {
        Ok(Movement {
            id: r.i64(0)?,
            ts: r.i64(1)?,
            depot: r.string(2)?,
            item: r.string(3)?,
            kind: r.string(4)?.parse().unwrap_or(crate::materials::MoveKind::Issue),
            quantity: r.f64(5)?,
            alert_id: r.opt_i64(6)?,
            by: r.string(7)?,
            note: r.opt_string(8)?,
        })
    })
    .collect()
}

impl Store {
    /// Every issue and return, oldest first (all of them: the stock is
    /// the season's quantities with these applied).
    pub fn movements(&self) -> Result<Vec<Movement>> {
        movements(self.db(), None)
    }

    /// The drills held since `since` (all with `None`), oldest first.
    pub fn drills(&self, since: Option<TimestampNs>) -> Result<Vec<Drill>> {
        self.db()
            .query(
                "SELECT id, ts, team, team_name, results FROM drills
                 WHERE CAST(?1 AS BIGINT) IS NULL OR ts >= ?1 ORDER BY ts, id",
                &vals![since],
            )?
            .iter()
            .map(|r| {
                Ok(Drill {
                    id: r.i64(0)?,
                    ts: r.i64(1)?,
                    team: r.string(2)?,
                    team_name: r.string(3)?,
                    lines: serde_json::from_str::<Vec<DrillLine>>(&r.string(4)?).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Records a drill; its id.
    pub fn insert_drill(&mut self, d: &Drill) -> Result<i64> {
        let results = serde_json::to_string(&d.lines).unwrap_or_else(|_| "[]".into());
        self.transaction(|tx: &Tx<'_>| {
            tx.db().insert(
                "INSERT INTO drills (ts, team, team_name, results) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                &vals![d.ts, d.team.as_str(), d.team_name.as_str(), results],
            )
        })
    }
}

impl Tx<'_> {
    /// Records an issue or return; its id.
    pub fn insert_movement(&self, m: &Movement) -> Result<i64> {
        self.db().insert(
            "INSERT INTO material_moves (ts, depot, item, kind, quantity, alert_id, by, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            &vals![
                m.ts,
                m.depot.as_str(),
                m.item.as_str(),
                m.kind.as_str(),
                m.quantity,
                m.alert_id,
                m.by.as_str(),
                m.note.as_deref()
            ],
        )
    }

    pub fn movements(&self) -> Result<Vec<Movement>> {
        movements(self.db(), None)
    }

    pub fn movements_of(&self, alert_id: i64) -> Result<Vec<Movement>> {
        movements(self.db(), Some(alert_id))
    }
}
