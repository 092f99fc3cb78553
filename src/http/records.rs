//! `/api/v1/materials` (flood materials: depots, stock, issues and returns)
//! and `/api/v1/drills` (the drills on record).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::alerts::{body, manager};
use super::api::{authorize, ApiError};
use super::{blocking, AppState};
use crate::alerts::NewMovement;
use crate::engine::rfc3339;
use crate::materials::{MoveKind, Movement};

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    pub id: String,
    pub name: String,
    pub name_en: Option<String>,
    pub unit: String,
    /// Yuan per unit.
    pub unit_value: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockView {
    pub item: String,
    /// Held now.
    pub quantity: f64,
    /// At the start of the season (materials.toml).
    pub season: f64,
    /// `quantity` × unit value, yuan.
    pub value: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DepotView {
    pub id: String,
    pub name: String,
    pub name_en: Option<String>,
    pub street: String,
    pub lat: f64,
    pub lon: f64,
    pub keeper: String,
    pub phone: String,
    pub stock: Vec<StockView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MovementView {
    pub id: i64,
    /// RFC 3339 with offset.
    pub ts: String,
    pub depot: String,
    pub item: String,
    /// issue or return.
    pub kind: String,
    pub quantity: f64,
    pub alert_id: Option<i64>,
    pub by: String,
    pub note: Option<String>,
}

impl MovementView {
    fn new(m: &Movement, tz: chrono_tz::Tz) -> Self {
        MovementView {
            id: m.id,
            ts: rfc3339(m.ts, tz),
            depot: m.depot.clone(),
            item: m.item.clone(),
            kind: m.kind.as_str().to_string(),
            quantity: m.quantity,
            alert_id: m.alert_id,
            by: m.by.clone(),
            note: m.note.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MaterialsView {
    pub items: Vec<ItemView>,
    pub depots: Vec<DepotView>,
    /// Every issue and return, newest first.
    pub movements: Vec<MovementView>,
    /// What all the depots hold is worth, yuan.
    pub value: f64,
}

/// The depots with what they hold now, and the issues and returns.
#[utoipa::path(get, path = "/api/v1/materials", responses((status = 200, body = MaterialsView)))]
pub async fn materials(State(s): State<AppState>) -> Result<Response, ApiError> {
    let m = manager(&s)?;
    let tz = s.live.timezone;
    let (supplies, moves) = blocking(move || m.supplies()).await?;
    let file = &supplies.materials;
    let items: Vec<ItemView> = file
        .items
        .iter()
        .map(|(id, i)| ItemView {
            id: id.clone(),
            name: i.name.clone(),
            name_en: i.name_en.clone(),
            unit: i.unit.clone(),
            unit_value: i.unit_value,
        })
        .collect();
    let mut value = 0.0;
    let depots = file
        .depots
        .iter()
        .map(|d| DepotView {
            id: d.id.clone(),
            name: d.name.clone(),
            name_en: d.name_en.clone(),
            street: d.street.clone(),
            lat: d.location.lat,
            lon: d.location.lon,
            keeper: d.keeper.clone(),
            phone: d.phone.clone(),
            stock: file
                .items
                .iter()
                .filter_map(|(id, it)| {
                    let quantity = supplies.stock.get(&d.id, id);
                    let season = d.items.get(id).copied().unwrap_or(0.0);
                    (quantity != 0.0 || season != 0.0).then(|| {
                        value += quantity * it.unit_value;
                        StockView { item: id.clone(), quantity, season, value: quantity * it.unit_value }
                    })
                })
                .collect(),
        })
        .collect();
    let movements = moves.iter().rev().map(|m| MovementView::new(m, tz)).collect();
    Ok(Json(MaterialsView { items, depots, movements, value }).into_response())
}

/// `{"depot": "depot-cd", "item": "sandbag", "kind": "issue", "quantity": 200,
/// "alert_id": 12, "by": "王保管", "note": "人民路下穿封堵"}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementBody {
    pub depot: String,
    pub item: String,
    /// issue (出库) or return (归还).
    pub kind: String,
    pub quantity: f64,
    /// The alert it is for: the movement goes on its timeline.
    pub alert_id: Option<i64>,
    pub by: String,
    pub note: Option<String>,
}

/// Record an issue or a return of stock. 422 for an unknown depot or item,
/// or an issue beyond what the depot holds; 404 for an unknown alert.
#[utoipa::path(post, path = "/api/v1/materials", request_body = MovementBody,
    responses((status = 201, body = MovementView), (status = 401), (status = 404), (status = 413), (status = 422)),
    security(("bearer" = [])))]
pub async fn record(
    State(s): State<AppState>,
    headers: HeaderMap,
    b: Result<Json<MovementBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let b = body(b)?;
    let kind: MoveKind = b.kind.parse().map_err(|_| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("kind {:?}: issue or return", b.kind))
    })?;
    let (m, now, tz) = (manager(&s)?, s.clock.now(), s.live.timezone);
    let new = NewMovement {
        depot: b.depot,
        item: b.item,
        kind,
        quantity: b.quantity,
        alert_id: b.alert_id,
        by: b.by,
        note: b.note,
    };
    let moved = blocking(move || m.record_movement(new, now)).await?;
    tracing::info!(depot = %moved.depot, item = %moved.item, kind = %moved.kind, quantity = moved.quantity, alert = ?moved.alert_id, by = %moved.by, "materials recorded");
    Ok((StatusCode::CREATED, Json(MovementView::new(&moved, tz))).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DrillView {
    pub id: i64,
    pub ts: String,
    pub team: String,
    pub team_name: String,
    /// Messages the providers accepted, of `sent`.
    pub accepted: usize,
    pub sent: usize,
    pub results: Vec<crate::drills::DrillLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DrillList {
    pub drills: Vec<DrillView>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DrillQuery {
    /// How many of the latest (default 50).
    pub limit: Option<usize>,
}

/// The drills on record (`floodguard notify-test`), newest first.
#[utoipa::path(get, path = "/api/v1/drills", params(DrillQuery), responses((status = 200, body = DrillList)))]
pub async fn drills(State(s): State<AppState>, Query(q): Query<DrillQuery>) -> Result<Response, ApiError> {
    let m = manager(&s)?;
    let tz = s.live.timezone;
    let limit = q.limit.unwrap_or(50).clamp(1, 10_000);
    let list = blocking(move || m.drills()).await?;
    let drills = list
        .iter()
        .rev()
        .take(limit)
        .map(|d| {
            let (accepted, sent) = d.reached();
            DrillView {
                id: d.id,
                ts: rfc3339(d.ts, tz),
                team: d.team.clone(),
                team_name: d.team_name.clone(),
                accepted,
                sent,
                results: d.lines.clone(),
            }
        })
        .collect();
    Ok(Json(DrillList { drills }).into_response())
}

#[cfg(test)]
mod tests {
    use super::super::router;
    use super::super::tests::{feed, get, post_json, send, state};
    use crate::reading::{Reading, Value};
    use axum::http::StatusCode;

    fn json(body: &str) -> serde_json::Value {
        serde_json::from_str(body).unwrap()
    }

    #[tokio::test]
    async fn an_orange_underpass_names_its_depot_and_an_issue_of_sandbags_is_on_its_timeline_and_in_the_stock(
    ) {
        let s = state();
        let now = crate::reading::to_ns(chrono::Utc::now());
        for k in 0..2 {
            let r = Reading {
                site: "CD-JS-01".into(),
                metric: "water_depth_cm".into(),
                value: Value::Float(30.0),
                ts: now + k,
            };
            feed(&s, &[r], now + k);
        }
        let (_, body) = get(router(s.clone()), "/api/v1/alerts").await;
        let alerts = json(&body);
        let a =
            alerts["alerts"].as_array().unwrap().iter().find(|a| a["site"] == "CD-JS-01").unwrap().clone();
        assert_eq!(a["level"], "II");
        assert_eq!(a["supply"][0]["depot"], "depot-cd", "{a}");
        assert_eq!(a["supply"][0]["keeper"], "王保管");
        assert_eq!(a["supply"][0]["phone"], "13800000501");
        let id = a["id"].as_i64().unwrap();

        let issue = format!(
            r#"{{"depot":"depot-cd","item":"sandbag","kind":"issue","quantity":200,"alert_id":{id},"by":"王保管","note":"下穿入口封堵"}}"#
        );
        assert_eq!(
            send(router(s.clone()), post_json("/api/v1/materials", None, &issue)).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (code, out) =
            send(router(s.clone()), post_json("/api/v1/materials", Some("t0ken"), &issue)).await;
        assert_eq!(code, StatusCode::CREATED, "{out}");
        assert_eq!(json(&out)["quantity"], 200.0);
        // On the alert's timeline …
        let (_, body) = get(router(s.clone()), &format!("/api/v1/alerts/{id}")).await;
        let a = json(&body);
        let e = a["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "material_issued")
            .expect("timeline");
        assert_eq!(e["by"], "王保管");
        assert_eq!(e["note"], "领用编织袋（沙袋） 200 条（城东防汛物资仓库）：下穿入口封堵");
        // … and in the stock.
        let (_, body) = get(router(s.clone()), "/api/v1/materials").await;
        let m = json(&body);
        let cd = m["depots"].as_array().unwrap().iter().find(|d| d["id"] == "depot-cd").unwrap();
        let sandbags = cd["stock"].as_array().unwrap().iter().find(|x| x["item"] == "sandbag").unwrap();
        assert_eq!(
            (sandbags["quantity"].as_f64(), sandbags["season"].as_f64()),
            (Some(2800.0), Some(3000.0))
        );
        assert_eq!(m["movements"][0]["alert_id"], id);
        // More than the depot holds, an unknown item or alert: refused, nothing changes.
        let too_many =
            r#"{"depot":"depot-cd","item":"sandbag","kind":"issue","quantity":2801,"by":"王保管"}"#;
        let (code, err) =
            send(router(s.clone()), post_json("/api/v1/materials", Some("t0ken"), too_many)).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.contains("holds 2800"), "{err}");
        let rope = r#"{"depot":"depot-cd","item":"rope","kind":"issue","quantity":1,"by":"x"}"#;
        assert_eq!(
            send(router(s.clone()), post_json("/api/v1/materials", Some("t0ken"), rope)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let nowhere =
            r#"{"depot":"depot-cd","item":"sandbag","kind":"return","quantity":1,"alert_id":999,"by":"x"}"#;
        assert_eq!(
            send(router(s.clone()), post_json("/api/v1/materials", Some("t0ken"), nowhere)).await.0,
            StatusCode::NOT_FOUND
        );
        let (_, body) = get(router(s.clone()), "/api/v1/materials").await;
        assert_eq!(json(&body)["movements"].as_array().unwrap().len(), 1);
        // A return brings them back.
        let back = r#"{"depot":"depot-cd","item":"sandbag","kind":"return","quantity":150,"by":"王保管"}"#;
        assert_eq!(
            send(router(s.clone()), post_json("/api/v1/materials", Some("t0ken"), back)).await.0,
            StatusCode::CREATED
        );
        let (_, body) = get(router(s), "/api/v1/materials").await;
        let m = json(&body);
        let cd = m["depots"].as_array().unwrap().iter().find(|d| d["id"] == "depot-cd").unwrap();
        assert_eq!(cd["stock"][0]["quantity"], 2950.0);
    }
}
