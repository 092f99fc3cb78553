//! `materials.toml`: the district's flood materials (防汛物资) — the items
//! (sandbags, mobile pump trucks, pumps, generators …) with their unit and
//! value, and the depots that hold them, with their keeper. Optional: a
//! district without the file has no materials, and then no plan card may
//! name any.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::sites::{is_valid_id, Location};

/// `[items.<id>]`: a kind of material.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Item {
    /// 编织袋（沙袋）
    pub name: String,
    pub name_en: Option<String>,
    /// 条, 台, 件 …
    pub unit: String,
    /// Value of one unit, yuan (元): what the readiness report adds up.
    pub unit_value: f64,
}

/// `[[depots]]`: a store of materials (物资仓库) and who opens it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Depot {
    /// ASCII id: the API's key.
    pub id: String,
    pub name: String,
    pub name_en: Option<String>,
    /// Street id from sites.toml.
    pub street: String,
    pub location: Location,
    /// 仓库管理员
    pub keeper: String,
    pub phone: String,
    /// Item id → quantity on hand at the start of the season.
    #[serde(default)]
    pub items: BTreeMap<String, f64>,
}

/// The contents of `materials.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaterialsFile {
    /// Item id → item, in the order of the file.
    pub items: Vec<(String, Item)>,
    pub depots: Vec<Depot>,
}

impl MaterialsFile {
    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|(i, _)| i == id).map(|(_, item)| item)
    }

    pub fn depot(&self, id: &str) -> Option<&Depot> {
        self.depots.iter().find(|d| d.id == id)
    }
}

/// Checks of `materials.toml` against the streets; each problem as `(key
/// path, reason)`.
pub fn validate(file: &MaterialsFile, streets: &HashSet<&str>) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    for (id, item) in &file.items {
        let at = |k: &str| format!("items.{id}.{k}");
        if !is_valid_id(id) {
            errs.push((format!("items.{id}"), format!("invalid item id {id:?}: use A-Z a-z 0-9 - _ .")));
        }
        if item.name.trim().is_empty() {
            errs.push((at("name"), "must not be empty".into()));
        }
        if item.unit.trim().is_empty() {
            errs.push((at("unit"), "must not be empty (条, 台, 件 …)".into()));
        }
        if !(item.unit_value.is_finite() && item.unit_value >= 0.0) {
            errs.push((at("unit_value"), format!("{} is not a value in yuan (0 or more)", item.unit_value)));
        }
    }
    let mut ids = HashSet::new();
    for (i, d) in file.depots.iter().enumerate() {
        let at = |k: &str| format!("depots[{i}].{k}");
        if !is_valid_id(&d.id) {
            errs.push((at("id"), format!("invalid id {:?}: use A-Z a-z 0-9 - _ .", d.id)));
        }
        if !ids.insert(d.id.as_str()) {
            errs.push((at("id"), format!("duplicate depot id {:?}", d.id)));
        }
        if d.name.trim().is_empty() {
            errs.push((at("name"), "must not be empty".into()));
        }
        if !streets.contains(d.street.as_str()) {
            errs.push((at("street"), format!("unknown street {:?}", d.street)));
        }
        if !(-90.0..=90.0).contains(&d.location.lat) {
            errs.push((at("location.lat"), format!("{} is not a latitude (-90..90)", d.location.lat)));
        }
        if !(-180.0..=180.0).contains(&d.location.lon) {
            errs.push((at("location.lon"), format!("{} is not a longitude (-180..180)", d.location.lon)));
        }
        if d.keeper.trim().is_empty() {
            errs.push((at("keeper"), "who opens the depot (仓库管理员) must be given".into()));
        }
        if !super::teams::is_phone(&d.phone) {
            errs.push((at("phone"), format!("{:?} is not a phone number", d.phone)));
        }
        for (item, q) in &d.items {
            if file.item(item).is_none() {
                let known: Vec<&str> = file.items.iter().map(|(i, _)| i.as_str()).collect();
                errs.push((
                    at(&format!("items.{item}")),
                    format!("unknown item {item:?} (items: {})", known.join(", ")),
                ));
            }
            if !(q.is_finite() && *q >= 0.0) {
                errs.push((at(&format!("items.{item}")), format!("{q} is not a quantity (0 or more)")));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, unit: &str, v: f64) -> Item {
        Item { name: name.into(), name_en: None, unit: unit.into(), unit_value: v }
    }

    #[test]
    fn every_problem_is_named_by_key_path() {
        let depot = |id: &str, street: &str| Depot {
            id: id.into(),
            name: "仓库".into(),
            name_en: None,
            street: street.into(),
            location: Location { lat: 30.6, lon: 114.3 },
            keeper: "王保管".into(),
            phone: "13800000501".into(),
            items: BTreeMap::from([("sandbag".into(), 100.0)]),
        };
        let mut bad = depot("d1", "nowhere");
        bad.items.insert("rope".into(), -1.0);
        bad.phone = "call".into();
        bad.location.lat = 91.0;
        let file = MaterialsFile {
            items: vec![("sandbag".into(), item("沙袋", "条", 3.0)), ("pump".into(), item("", "", f64::NAN))],
            depots: vec![depot("d0", "a"), bad, depot("d0", "a")],
        };
        let errs = validate(&file, &HashSet::from(["a"]));
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "items.pump.name",
                "items.pump.unit",
                "items.pump.unit_value",
                "depots[1].street",
                "depots[1].location.lat",
                "depots[1].phone",
                "depots[1].items.rope",
                "depots[1].items.rope",
                "depots[2].id",
            ],
            "{errs:?}"
        );
        assert!(errs[6].1.contains("unknown item \"rope\" (items: sandbag, pump)"), "{errs:?}");
    }
}
