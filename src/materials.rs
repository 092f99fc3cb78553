//! Flood materials (防汛物资) in use: the stock of each depot — the season's
//! quantities of materials.toml, less what was issued during events, plus
//! what came back — and the nearest depots that hold what a plan card calls
//! for. Pure: the movements are kept in `state.db` by the alert manager
//! (`alerts::records`), which also puts them on the alert's timeline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::MaterialsFile;
use crate::reading::TimestampNs;

string_enum! {
    /// Which way stock moves.
    pub enum MoveKind ("movement") {
        /// 出库: taken out for an event.
        Issue = "issue",
        /// 归还: brought back.
        Return = "return",
    }
}

impl MoveKind {
    pub fn name_zh(self) -> &'static str {
        match self {
            MoveKind::Issue => "领用",
            MoveKind::Return => "归还",
        }
    }
}

/// One issue or return of stock, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Movement {
    pub id: i64,
    pub ts: TimestampNs,
    pub depot: String,
    pub item: String,
    pub kind: MoveKind,
    pub quantity: f64,
    /// The alert it was for, whose timeline shows it.
    pub alert_id: Option<i64>,
    pub by: String,
    pub note: Option<String>,
}

/// What each depot holds now: (depot id, item id) → quantity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stock(BTreeMap<(String, String), f64>);

impl Stock {
    /// The season's quantities with `moves` applied in order.
    pub fn new(file: &MaterialsFile, moves: &[Movement]) -> Stock {
        let mut s = Stock::default();
        for d in &file.depots {
            for (item, q) in &d.items {
                s.0.insert((d.id.clone(), item.clone()), *q);
            }
        }
        for m in moves {
            s.apply(m);
        }
        s
    }

    pub fn get(&self, depot: &str, item: &str) -> f64 {
        self.0.get(&(depot.to_string(), item.to_string())).copied().unwrap_or(0.0)
    }

    pub fn apply(&mut self, m: &Movement) {
        let q = self.0.entry((m.depot.clone(), m.item.clone())).or_insert(0.0);
        match m.kind {
            MoveKind::Issue => *q -= m.quantity,
            MoveKind::Return => *q += m.quantity,
        }
    }

    /// Every (depot, item, quantity) held, in depot then item order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, f64)> {
        self.0.iter().map(|((d, i), q)| (d.as_str(), i.as_str(), *q))
    }
}

/// Whether a movement may be recorded: a known depot and item, a positive
/// quantity, and no more issued than the depot holds. The reason otherwise.
pub fn check(
    file: &MaterialsFile,
    stock: &Stock,
    depot: &str,
    item: &str,
    kind: MoveKind,
    quantity: f64,
) -> Result<(), String> {
    if file.depot(depot).is_none() {
        let known: Vec<&str> = file.depots.iter().map(|d| d.id.as_str()).collect();
        return Err(format!("no depot {depot:?} (depots: {})", known.join(", ")));
    }
    let Some(it) = file.item(item) else {
        let known: Vec<&str> = file.items.iter().map(|(i, _)| i.as_str()).collect();
        return Err(format!("no item {item:?} (items: {})", known.join(", ")));
    };
    if !(quantity.is_finite() && quantity > 0.0) {
        return Err(format!("quantity {quantity}: more than 0"));
    }
    let on_hand = stock.get(depot, item);
    if kind == MoveKind::Issue && quantity > on_hand + 1e-9 {
        return Err(format!("{depot} holds {} {} of {item}, not {}", num(on_hand), it.unit, num(quantity)));
    }
    Ok(())
}

/// A number as people write it: `200`, `2.5`.
pub fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One depot's part in what a card calls for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Supply {
    pub depot: String,
    pub name: String,
    pub keeper: String,
    pub phone: String,
    /// Great-circle distance from the site, km.
    pub distance_km: f64,
    pub items: Vec<Supplied>,
}

/// An item to take from a depot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Supplied {
    pub item: String,
    pub name: String,
    pub unit: String,
    /// How much to take from this depot.
    pub quantity: f64,
    /// What the depot holds.
    pub on_hand: f64,
}

/// Distance between two (lat, lon) points on the Earth, km (haversine).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// The depots to take `needs` (item → quantity) from for a site at `at`:
/// each item from the nearest depot that holds all of it, or — when none
/// does — from the nearest ones in turn until it is covered or nothing is
/// left. Depots nearest first; an item no depot holds is left out.
pub fn nearest(
    file: &MaterialsFile,
    stock: &Stock,
    at: (f64, f64),
    needs: &BTreeMap<String, f64>,
) -> Vec<Supply> {
    let mut depots: Vec<(f64, &crate::config::Depot)> =
        file.depots.iter().map(|d| (distance_km(at, (d.location.lat, d.location.lon)), d)).collect();
    depots.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let mut out: Vec<Supply> = Vec::new();
    let mut add = |d: &crate::config::Depot, km: f64, item: &str, take: f64, on_hand: f64| {
        let Some(it) = file.item(item) else { return };
        let i = match out.iter().position(|s| s.depot == d.id) {
            Some(i) => i,
            None => {
                out.push(Supply {
                    depot: d.id.clone(),
                    name: d.name.clone(),
                    keeper: d.keeper.clone(),
                    phone: d.phone.clone(),
                    distance_km: (km * 10.0).round() / 10.0,
                    items: Vec::new(),
                });
                out.len() - 1
            }
        };
        out[i].items.push(Supplied {
            item: item.to_string(),
            name: it.name.clone(),
            unit: it.unit.clone(),
            quantity: take,
            on_hand,
        });
    };
    for (item, need) in needs {
        let holding: Vec<(f64, &crate::config::Depot, f64)> = depots
            .iter()
            .map(|(km, d)| (*km, *d, stock.get(&d.id, item)))
            .filter(|(_, _, q)| *q > 0.0)
            .collect();
        if let Some((km, d, q)) = holding.iter().find(|(_, _, q)| *q + 1e-9 >= *need) {
            add(d, *km, item, *need, *q);
            continue;
        }
        let mut left = *need;
        for (km, d, q) in holding {
            if left <= 0.0 {
                break;
            }
            let take = q.min(left);
            add(d, km, item, take, q);
            left -= take;
        }
    }
    let order: Vec<&str> = depots.iter().map(|(_, d)| d.id.as_str()).collect();
    out.sort_by_key(|s| order.iter().position(|d| *d == s.depot));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> crate::config::Config {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        crate::config::load_with_env(&main, &Default::default()).unwrap()
    }

    fn issue(depot: &str, item: &str, q: f64) -> Movement {
        Movement {
            id: 0,
            ts: 0,
            depot: depot.into(),
            item: item.into(),
            kind: MoveKind::Issue,
            quantity: q,
            alert_id: None,
            by: "x".into(),
            note: None,
        }
    }

    #[test]
    fn distances_are_great_circle_km() {
        // One degree of latitude is 111.2 km.
        assert!((distance_km((30.0, 114.0), (31.0, 114.0)) - 111.19).abs() < 0.05);
        assert_eq!(distance_km((30.6, 114.3), (30.6, 114.3)), 0.0);
    }

    #[test]
    fn an_underpass_at_orange_takes_everything_from_the_depot_beside_it() {
        let c = sample();
        let stock = Stock::new(&c.materials, &[]);
        let card = c.plan.card(crate::config::Kind::Waterlogging, crate::level::Level::II).unwrap();
        let s = c.site("CD-JS-01").unwrap();
        let supply = nearest(&c.materials, &stock, (s.location.lat, s.location.lon), &card.materials);
        assert_eq!(supply.len(), 1, "{supply:?}");
        assert_eq!(supply[0].depot, "depot-cd");
        assert_eq!(supply[0].keeper, "王保管");
        let sandbags = supply[0].items.iter().find(|i| i.item == "sandbag").unwrap();
        assert_eq!((sandbags.quantity, sandbags.on_hand, sandbags.unit.as_str()), (200.0, 3000.0, "条"));
        assert!(supply[0].distance_km < 0.5, "{}", supply[0].distance_km);
    }

    #[test]
    fn an_item_the_nearest_depot_lacks_comes_from_the_next() {
        let c = sample();
        let stock = Stock::new(&c.materials, &[]);
        let card = c.plan.card(crate::config::Kind::Waterlogging, crate::level::Level::II).unwrap();
        let s = c.site("BH-JS-01").unwrap();
        let supply = nearest(&c.materials, &stock, (s.location.lat, s.location.lon), &card.materials);
        let depots: Vec<&str> = supply.iter().map(|s| s.depot.as_str()).collect();
        // 滨河 has no pump truck: 城东's is nearer than 新城's.
        assert_eq!(depots, ["depot-bh", "depot-cd"]);
        assert_eq!(supply[1].items.len(), 1);
        assert_eq!(supply[1].items[0].item, "pump_truck");
        // With 城东's two trucks out, 新城's one.
        let stock = Stock::new(&c.materials, &[issue("depot-cd", "pump_truck", 2.0)]);
        let supply = nearest(&c.materials, &stock, (s.location.lat, s.location.lon), &card.materials);
        assert_eq!(supply.iter().map(|s| s.depot.as_str()).collect::<Vec<_>>(), ["depot-bh", "depot-xc"]);
    }

    #[test]
    fn a_need_no_one_depot_covers_is_split_nearest_first() {
        let c = sample();
        // 城东 down to 50 sandbags; 滨河 emptied: 500 must come from several.
        let stock = Stock::new(
            &c.materials,
            &[
                issue("depot-cd", "sandbag", 2950.0),
                issue("depot-bh", "sandbag", 5000.0),
                issue("depot-xc", "sandbag", 1800.0),
            ],
        );
        let s = c.site("CD-JS-01").unwrap();
        let needs = BTreeMap::from([("sandbag".to_string(), 500.0)]);
        let supply = nearest(&c.materials, &stock, (s.location.lat, s.location.lon), &needs);
        let got: Vec<(&str, f64)> = supply.iter().map(|s| (s.depot.as_str(), s.items[0].quantity)).collect();
        assert_eq!(got, [("depot-cd", 50.0), ("depot-xc", 200.0)], "all there is");
    }

    #[test]
    fn stock_moves_and_an_issue_beyond_it_is_refused() {
        let c = sample();
        let mut stock = Stock::new(&c.materials, &[]);
        assert!(check(&c.materials, &stock, "depot-cd", "sandbag", MoveKind::Issue, 200.0).is_ok());
        stock.apply(&issue("depot-cd", "sandbag", 200.0));
        assert_eq!(stock.get("depot-cd", "sandbag"), 2800.0);
        let e = check(&c.materials, &stock, "depot-cd", "sandbag", MoveKind::Issue, 2801.0).unwrap_err();
        assert_eq!(e, "depot-cd holds 2800 条 of sandbag, not 2801");
        assert!(check(&c.materials, &stock, "depot-cd", "sandbag", MoveKind::Return, 5.0).is_ok());
        assert!(check(&c.materials, &stock, "nowhere", "sandbag", MoveKind::Return, 5.0)
            .unwrap_err()
            .contains("no depot"));
        assert!(check(&c.materials, &stock, "depot-cd", "rope", MoveKind::Issue, 5.0)
            .unwrap_err()
            .contains("no item"));
        assert!(check(&c.materials, &stock, "depot-cd", "sandbag", MoveKind::Issue, 0.0).is_err());
    }
}
