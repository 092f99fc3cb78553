//! The command center's records beside the alerts in `state.db`: issues and
//! returns of flood materials (`material_moves`, each also on its alert's
//! timeline) and drills (`drills`, written by `floodguard notify-test`).

use rusqlite::{params, Connection};

use super::store::{Result, Store, Tx};
use crate::drills::{Drill, DrillLine};
use crate::materials::Movement;
use crate::reading::TimestampNs;

fn movements(conn: &Connection, alert_id: Option<i64>) -> Result<Vec<Movement>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ts, depot, item, kind, quantity, alert_id, by, note FROM material_moves
         WHERE ?1 IS NULL OR alert_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![alert_id], |r| {
        Ok(Movement {
            id: r.get(0)?,
            ts: r.get(1)?,
            depot: r.get(2)?,
            item: r.get(3)?,
            kind: r.get::<_, String>(4)?.parse().unwrap_or(crate::materials::MoveKind::Issue),
            quantity: r.get(5)?,
            alert_id: r.get(6)?,
            by: r.get(7)?,
            note: r.get(8)?,
        })
    })?;
    rows.collect()
}

impl Store {
    /// Every issue and return, oldest first (all of them: the stock is
    /// the season's quantities with these applied).
    pub fn movements(&self) -> Result<Vec<Movement>> {
        movements(self.conn(), None)
    }

    /// The drills held since `since` (all with `None`), oldest first.
    pub fn drills(&self, since: Option<TimestampNs>) -> Result<Vec<Drill>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, ts, team, team_name, results FROM drills WHERE ?1 IS NULL OR ts >= ?1 ORDER BY ts, id",
        )?;
        let rows = stmt.query_map(params![since], |r| {
            let results: String = r.get(4)?;
            Ok(Drill {
                id: r.get(0)?,
                ts: r.get(1)?,
                team: r.get(2)?,
                team_name: r.get(3)?,
                lines: serde_json::from_str::<Vec<DrillLine>>(&results).unwrap_or_default(),
            })
        })?;
        rows.collect()
    }

    /// Records a drill; its id.
    pub fn insert_drill(&mut self, d: &Drill) -> Result<i64> {
        let results = serde_json::to_string(&d.lines).unwrap_or_else(|_| "[]".into());
        self.transaction(|tx: &Tx<'_>| {
            tx.raw().execute(
                "INSERT INTO drills (ts, team, team_name, results) VALUES (?1, ?2, ?3, ?4)",
                params![d.ts, d.team, d.team_name, results],
            )?;
            Ok::<_, rusqlite::Error>(tx.raw().last_insert_rowid())
        })
    }
}

impl Tx<'_> {
    /// Records an issue or return; its id.
    pub fn insert_movement(&self, m: &Movement) -> Result<i64> {
        self.raw().execute(
            "INSERT INTO material_moves (ts, depot, item, kind, quantity, alert_id, by, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![m.ts, m.depot, m.item, m.kind.as_str(), m.quantity, m.alert_id, m.by, m.note],
        )?;
        Ok(self.raw().last_insert_rowid())
    }

    pub fn movements_of(&self, alert_id: i64) -> Result<Vec<Movement>> {
        movements(self.raw(), Some(alert_id))
    }
}
