//! `GET /api/v1/sites/{id}/series?metric=&since=`: a site's recent values
//! from the live layer's history (see [`crate::history`]), with the plan's
//! thresholds for that metric so the page can draw them as bands.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::api::ApiError;
use super::AppState;
use crate::engine::rfc3339;
use crate::history::{self, History, Keep, BUCKET_S, SPAN_S};
use crate::level::Level;
use crate::plan::{Check, Direction, Plan};
use crate::reading::{to_ns, TimestampNs};

#[derive(Debug, Deserialize, IntoParams)]
pub struct SeriesQuery {
    /// The metric (default: the site's primary metric, e.g. `water_depth_cm`).
    pub metric: Option<String>,
    /// RFC 3339, or a duration back from now (`"2h"`, `"90m"`); default and
    /// at most the history's span (6 h).
    pub since: Option<String>,
}

/// One bucket: its start and kept value.
#[derive(Debug, Serialize, ToSchema)]
pub struct PointView {
    pub ts: String,
    pub value: f64,
}

/// A site's recent series with its thresholds.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesView {
    pub site: String,
    pub metric: String,
    pub unit: String,
    /// Width of a bucket in seconds, and which value of a bucket is kept
    /// (`max`, `min`, `sum`, `last`).
    pub bucket_s: u32,
    #[schema(value_type = String)]
    pub keep: Keep,
    pub since: String,
    /// `above` (higher is worse) or `below`; `null` without a level rule.
    pub direction: Option<String>,
    /// The plan's threshold per level for this site and metric (`{"IV": 10, …}`).
    #[schema(value_type = BTreeMap<String, f64>)]
    pub thresholds: BTreeMap<Level, f64>,
    pub points: Vec<PointView>,
}

/// Why a series cannot be served.
#[derive(Debug, PartialEq)]
pub enum SeriesError {
    NoSite,
    NotCharted(Vec<String>),
}

/// `f32` as the shortest decimal that reads back the same (12.3, not 12.300000190734863).
fn widen(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// The series of `metric` (default: primary) of `site` since `since`, from
/// `history`, with the plan's thresholds; times in `tz`.
pub fn view(
    plan: &Plan,
    history: &History,
    site: &str,
    metric: Option<&str>,
    since: TimestampNs,
    tz: chrono_tz::Tz,
) -> Result<SeriesView, SeriesError> {
    let (_, sp) = plan.site(site).ok_or(SeriesError::NoSite)?;
    let charted = || {
        let mut m: Vec<String> =
            sp.units.keys().filter(|m| history::keep_for(sp, m).is_some()).map(|m| m.to_string()).collect();
        m.sort();
        m
    };
    let metric = match metric.or(sp.primary.as_deref()) {
        Some(m) => m,
        None => return Err(SeriesError::NotCharted(charted())),
    };
    let keep = history::keep_for(sp, metric).ok_or_else(|| SeriesError::NotCharted(charted()))?;
    let level = sp.rules.iter().find_map(|r| match &r.check {
        Check::Level { metric: m, direction, thresholds, .. } if &**m == metric => {
            Some((direction, thresholds))
        }
        _ => None,
    });
    let points = history
        .get(site, metric)
        .map(|s| {
            s.since(history::secs(since))
                .map(|p| PointView { ts: rfc3339(i64::from(p.t) * 1_000_000_000, tz), value: widen(p.v) })
                .collect()
        })
        .unwrap_or_default();
    Ok(SeriesView {
        site: sp.id.to_string(),
        metric: metric.to_string(),
        unit: sp.unit(metric).to_string(),
        bucket_s: BUCKET_S,
        keep,
        since: rfc3339(since, tz),
        direction: level.map(|(d, _)| if *d == Direction::Below { "below" } else { "above" }.to_string()),
        thresholds: level
            .map(|(_, t)| Level::ALL.iter().zip(t).filter_map(|(l, t)| t.map(|t| (*l, t))).collect())
            .unwrap_or_default(),
        points,
    })
}

/// `since` as a time: RFC 3339 or a duration back from `now`, clamped to
/// the history's span.
pub fn parse_since(since: Option<&str>, now: TimestampNs) -> Result<TimestampNs, String> {
    let oldest = now - i64::from(SPAN_S) * 1_000_000_000;
    let t = match since.map(str::trim).filter(|s| !s.is_empty()) {
        None => oldest,
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => to_ns(t.with_timezone(&chrono::Utc)),
            Err(_) => match humantime::parse_duration(s) {
                Ok(d) => now - i64::try_from(d.as_nanos()).unwrap_or(i64::MAX / 2),
                Err(_) => return Err(format!("since={s:?} is neither RFC 3339 nor a duration like \"2h\"")),
            },
        },
    };
    Ok(t.max(oldest))
}

/// Recent values of one metric of a site, with the plan's thresholds.
#[utoipa::path(get, path = "/api/v1/sites/{id}/series", params(SeriesQuery),
    responses((status = 200, body = SeriesView), (status = 400), (status = 404)))]
pub async fn series(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Response, ApiError> {
    let now = s.clock.now();
    let since =
        parse_since(q.since.as_deref(), now).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let plan = s.live.plan();
    let history = s.live.history.lock().expect("history lock");
    match view(&plan, &history, &id, q.metric.as_deref(), since, s.live.timezone) {
        Ok(v) => Ok(Json(v).into_response()),
        Err(SeriesError::NoSite) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no site {id:?}"))),
        Err(SeriesError::NotCharted(metrics)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no recent series of {:?} at {id}", q.metric.as_deref().unwrap_or("")),
        )
        .detail(json!({ "metrics": metrics }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;
    // 2026-07-21T14:04:00+08:00, a bucket boundary.
    const T0: TimestampNs = 1_784_613_840_000_000_000;
    const MIN: TimestampNs = 60_000_000_000;

    fn plan() -> Arc<Plan> {
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
        crate::config::load_with_env(&main, &Default::default()).unwrap().plan
    }

    #[test]
    fn a_series_with_its_thresholds_in_json() {
        let plan = plan();
        let mut h = History::new();
        let (site, m) = (Arc::from("CD-JS-01"), Arc::from("water_depth_cm"));
        for (dt, v) in [(0, 12.3), (1, 14.0), (3, 21.5)] {
            h.record(&site, &m, T0 + dt * MIN, v, Keep::Max);
        }
        let v = view(&plan, &h, "CD-JS-01", None, T0, TZ).unwrap();
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json,
            json!({
                "site": "CD-JS-01", "metric": "water_depth_cm", "unit": "cm",
                "bucket_s": 120, "keep": "max", "since": "2026-07-21T14:04:00+08:00",
                "direction": "above",
                "thresholds": {"IV": 10.0, "III": 20.0, "II": 27.0, "I": 40.0},
                "points": [
                    {"ts": "2026-07-21T14:04:00+08:00", "value": 14.0},
                    {"ts": "2026-07-21T14:06:00+08:00", "value": 21.5},
                ],
            })
        );
        let later = view(&plan, &h, "CD-JS-01", Some("water_depth_cm"), T0 + 2 * MIN, TZ).unwrap();
        assert_eq!(later.points.len(), 1);
        assert_eq!(widen(12.3), 12.3);
    }

    #[test]
    fn a_manhole_keeps_the_lowest_and_says_below() {
        let plan = plan();
        let h = History::new();
        let v = view(&plan, &h, "CD-JC-01", None, T0, TZ).unwrap();
        assert_eq!(v.keep, Keep::Min);
        assert_eq!(v.direction.as_deref(), Some("below"));
        assert!(v.points.is_empty());
        assert_eq!(v.thresholds.len(), 4);
    }

    #[test]
    fn unknown_sites_and_metrics() {
        let plan = plan();
        let h = History::new();
        assert_eq!(view(&plan, &h, "NOPE", None, T0, TZ).unwrap_err(), SeriesError::NoSite);
        match view(&plan, &h, "CD-JS-01", Some("battery_v"), T0, TZ).unwrap_err() {
            SeriesError::NotCharted(m) => assert_eq!(m, ["water_depth_cm"]),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn since_as_time_or_duration() {
        let now = T0;
        assert_eq!(parse_since(None, now).unwrap(), now - 6 * 60 * MIN);
        assert_eq!(parse_since(Some("90m"), now).unwrap(), now - 90 * MIN);
        assert_eq!(parse_since(Some("2026-07-21T14:00:00+08:00"), now).unwrap(), now - 4 * MIN);
        assert_eq!(parse_since(Some("30h"), now).unwrap(), now - 6 * 60 * MIN, "clamped to the span");
        assert!(parse_since(Some("yesterday"), now).is_err());
    }
}
