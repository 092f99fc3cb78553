use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::alerts::model::{AlertState, Matchers};

const MIN: i64 = 60_000_000_000;
/// 2026-07-21 12:00 +08:00
const T0: i64 = 1_784_606_400_000_000_000;

#[allow(clippy::too_many_arguments)]
fn alert(
    id: i64,
    site: &str,
    name: &str,
    street: &str,
    rule_name: &str,
    peak: Level,
    value: f64,
    unit: &str,
    start: i64,
    peak_at: i64,
    ack: Option<i64>,
    disposed: Option<i64>,
    resolved: Option<i64>,
) -> Alert {
    Alert {
        id,
        kind: Some(AlertKind::Site),
        site: site.into(),
        site_name: name.into(),
        street: street.into(),
        rule: "depth".into(),
        rule_name: rule_name.into(),
        state: if resolved.is_some() { AlertState::Resolved } else { AlertState::Firing },
        level: if resolved.is_some() { None } else { Some(peak) },
        peak_level: Some(peak),
        peak_value: Some(value),
        unit: unit.into(),
        peak_at: Some(T0 + peak_at * MIN),
        started_at: T0 + start * MIN,
        acked_at: ack.map(|m| T0 + m * MIN),
        acked_by: ack.map(|_| "队长".into()),
        disposed_at: disposed.map(|m| T0 + m * MIN),
        resolved_at: resolved.map(|m| T0 + m * MIN),
        card: None,
        ..Alert::default()
    }
}

/// A storm afternoon in 某区: four site alerts, a street escalation, a silence.
fn history() -> (Vec<Alert>, Vec<Silence>) {
    let mut alerts = vec![
        alert(
            1,
            "CD-JS-01",
            "人民路铁路桥下穿",
            "chengdong",
            "积水深度",
            Level::III,
            23.5,
            "cm",
            10,
            40,
            Some(16),
            Some(95),
            Some(130),
        ),
        alert(
            2,
            "BH-JS-01",
            "滨河路隧道口",
            "binhe",
            "积水深度",
            Level::II,
            31.0,
            "cm",
            20,
            55,
            Some(24),
            Some(70),
            Some(150),
        ),
        alert(
            3,
            "BH-SW-01",
            "清水河滨河大桥",
            "binhe",
            "河道水位",
            Level::III,
            4.62,
            "m",
            60,
            140,
            Some(90),
            None,
            None,
        ),
        alert(
            4,
            "CD-JS-02",
            "解放路菜市场低洼段",
            "chengdong",
            "积水深度",
            Level::IV,
            17.0,
            "cm",
            30,
            35,
            None,
            None,
            Some(50),
        ),
    ];
    alerts[2].rule = "river_level".into();
    let street = Alert {
        id: 5,
        kind: Some(AlertKind::Street),
        site: "binhe".into(),
        site_name: "滨河街道".into(),
        street: "binhe".into(),
        rule: "area".into(),
        rule_name: "街道响应等级".into(),
        peak_level: Some(Level::II),
        peak_at: Some(T0 + 55 * MIN),
        started_at: T0 + 20 * MIN,
        resolved_at: Some(T0 + 150 * MIN),
        state: AlertState::Resolved,
        ..Alert::default()
    };
    alerts.push(street);
    let silences = vec![
        Silence {
            id: 1,
            matchers: Matchers { site: Some("XC-BZ-01".into()), ..Matchers::default() },
            starts_at: T0 - 60 * MIN,
            ends_at: T0 + 120 * MIN,
            created_by: "区水务泵站管理所".into(),
            comment: "新城一号泵站检修".into(),
            from_config: false,
        },
        Silence {
            id: 2,
            matchers: Matchers { street: Some("xincheng".into()), ..Matchers::default() },
            starts_at: T0 + 300 * MIN,
            ends_at: T0 + 360 * MIN,
            created_by: "x".into(),
            comment: "outside the period".into(),
            from_config: false,
        },
    ];
    (alerts, silences)
}

/// The messages of alert 2 (BH-JS-01, Ⅱ at T0 + 20 min): the leader's SMS
/// failed on the handset and a call followed, unanswered; the member's SMS
/// was delivered; the e-mail went without a receipt.
fn deliveries() -> Vec<Delivery> {
    use crate::notify::message::Rendered;
    use crate::notify::outbox::{Body, Row};
    let d = |id: i64,
             channel: &str,
             to: &str,
             state: &str,
             receipt: Option<&str>,
             sent: i64,
             reached: Option<i64>,
             note: Option<&str>| Delivery {
        alert_id: 2,
        row: Row {
            id,
            notification_id: 1,
            channel: channel.into(),
            recipient: "x".into(),
            recipient_name: to.into(),
            team: "team2".into(),
            body: Body {
                rendered: Rendered::default(),
                to: "x".into(),
                secret: None,
                alert_ids: vec![2],
                merged: 1,
                labels: vec![],
            },
            key: format!("k{id}"),
            state: state.into(),
            attempts: 1,
            next_attempt_at: 0,
            created_at: T0 + 20 * MIN,
            priority: 3,
            provider_id: None,
            receipt: receipt.map(str::to_string),
            check_at: None,
            sent_bytes: 0,
            part_max: None,
            fallback_of: (channel == "voice").then_some(1),
            held: None,
            sent_at: Some(T0 + 20 * MIN + sent * 1_000_000_000),
        },
        last_error: None,
        receipt_at: reached.map(|r| T0 + 20 * MIN + r * 1_000_000_000),
        receipt_note: note.map(str::to_string),
        rerouted_to: None,
        merged_into: None,
    };
    vec![
        d(1, "sms", "赵队长", "sent", Some("failed"), 3, Some(40), Some("MK:0001")),
        d(2, "sms", "钱队员", "sent", Some("delivered"), 3, Some(9), Some("DELIVERED")),
        d(3, "email", "赵队长", "sent", None, 2, None, None),
        d(4, "voice", "赵队长", "sent", Some("no_answer"), 45, Some(95), Some("无人接听")),
    ]
}

fn input<'a>(
    alerts: &'a [Alert],
    silences: &'a [Silence],
    teams: &'a TeamsFile,
    streets: &'a [(String, String)],
    deliveries: &'a [Delivery],
) -> Input<'a> {
    Input {
        district_name: "某区",
        streets,
        teams,
        alerts,
        silences,
        deliveries,
        since: T0,
        until: T0 + 180 * MIN,
        tz: chrono_tz::Asia::Shanghai,
        analysis: None,
    }
}

fn sample() -> (TeamsFile, Vec<(String, String)>) {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    let c = crate::config::load_with_env(&main, &Default::default()).unwrap();
    let streets = c.sites.streets.iter().map(|s| (s.id.clone(), s.name.clone())).collect();
    (c.teams, streets)
}

#[test]
fn the_report_of_a_fixture_history_matches_the_expected_markdown() {
    let (teams, streets) = sample();
    let (alerts, silences) = history();
    let d = deliveries();
    let got = markdown(&input(&alerts, &silences, &teams, &streets, &d));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report.md");
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(got, want, "\n--- got ---\n{got}");
}

#[test]
fn html_has_the_same_tables() {
    let (teams, streets) = sample();
    let (alerts, silences) = history();
    let d = deliveries();
    let page = html(&input(&alerts, &silences, &teams, &streets, &d));
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("<h1>某区汛情报告</h1>"));
    assert!(page.contains("<td>滨河路隧道口</td>"));
    assert_eq!(page.matches("<table>").count(), 6);
    assert!(page.contains("<td>电话</td><td>未接听</td>"), "the call of section 七");
    let _ = Arc::new(0);
}
