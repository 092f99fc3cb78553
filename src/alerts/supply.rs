//! Flood materials in the alert manager: the stock it keeps (the season's
//! quantities with every recorded issue and return applied), the nearest
//! depots an alert's message names, and issues and returns recorded in the
//! same transaction as the alert's timeline entry.

use std::sync::Arc;

use super::*;
use crate::config::MaterialsFile;
use crate::materials::{self, MoveKind, Movement, Stock, Supply};
use crate::plan::Card;

/// Flood materials as the manager knows them.
#[derive(Debug, Clone, Default)]
pub struct Supplies {
    pub materials: Arc<MaterialsFile>,
    pub stock: Stock,
}

/// An issue or return to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMovement {
    pub depot: String,
    pub item: String,
    pub kind: MoveKind,
    pub quantity: f64,
    pub alert_id: Option<i64>,
    pub by: String,
    pub note: Option<String>,
}

impl Supplies {
    /// The depots for `card`'s materials at `site` (none without either).
    pub fn for_site(&self, places: &Places, site: &str, card: Option<&Card>) -> Vec<Supply> {
        match (card, places.locations.get(site)) {
            (Some(card), Some(at)) if !card.materials.is_empty() => {
                materials::nearest(&self.materials, &self.stock, *at, &card.materials)
            }
            _ => Vec::new(),
        }
    }
}

impl AlertManager {
    /// The manager with `materials` and the stock on record.
    pub fn with_materials(self, materials: Arc<MaterialsFile>) -> Result<Self, OpError> {
        self.reload_materials(materials)?;
        Ok(self)
    }

    /// New materials (a reload): the stock is worked out again from the record.
    pub fn reload_materials(&self, materials: Arc<MaterialsFile>) -> Result<(), OpError> {
        let mut inner = self.inner.lock().expect("alerts lock");
        let moves = inner.store.movements()?;
        inner.supplies = Supplies { stock: Stock::new(&materials, &moves), materials };
        Ok(())
    }

    /// The materials, their stock now and every issue and return on record.
    pub fn supplies(&self) -> Result<(Supplies, Vec<Movement>), OpError> {
        let inner = self.inner.lock().expect("alerts lock");
        Ok((inner.supplies.clone(), inner.store.movements()?))
    }

    /// The nearest depots for what `card` calls for at `site`.
    pub fn supply_for(&self, site: &str, card: Option<&Card>) -> Vec<Supply> {
        let inner = self.inner.lock().expect("alerts lock");
        inner.supplies.for_site(&inner.places, site, card)
    }

    /// Records an issue or a return of stock; with an alert, on its
    /// timeline (`material_issued` / `material_returned`) in the same
    /// transaction. An issue beyond what the depot holds is refused.
    pub fn record_movement(&self, m: NewMovement, now: TimestampNs) -> Result<Movement, OpError> {
        if m.by.trim().is_empty() {
            return Err(OpError::Invalid(
                "`by`: who takes or brings back the materials must be given".into(),
            ));
        }
        self.with(|w| {
            materials::check(&w.supplies.materials, &w.supplies.stock, &m.depot, &m.item, m.kind, m.quantity)
                .map_err(OpError::Invalid)?;
            let mut movement = Movement {
                id: 0,
                ts: now,
                depot: m.depot.clone(),
                item: m.item.clone(),
                kind: m.kind,
                quantity: m.quantity,
                alert_id: m.alert_id,
                by: m.by.clone(),
                note: m.note.clone(),
            };
            if let Some(id) = m.alert_id {
                let alert = w.load(id)?;
                let materials = &w.supplies.materials;
                let (Some(item), Some(depot)) = (materials.item(&m.item), materials.depot(&m.depot)) else {
                    return Err(OpError::Invalid("unknown depot or item".into()));
                };
                let mut note = format!(
                    "{}{} {} {}（{}）",
                    m.kind.name_zh(),
                    item.name,
                    materials::num(m.quantity),
                    item.unit,
                    depot.name
                );
                if let Some(n) = m.note.as_deref().filter(|n| !n.trim().is_empty()) {
                    note.push_str(&format!("：{n}"));
                }
                let event = match m.kind {
                    MoveKind::Issue => "material_issued",
                    MoveKind::Return => "material_returned",
                };
                let e = Event::new(now, event, alert.level).by(Some(&m.by), Some(&note));
                w.save(&alert, &[e])?;
            }
            movement.id = w.tx.insert_movement(&movement)?;
            w.supplies.stock.apply(&movement);
            Ok(movement)
        })
    }
}
