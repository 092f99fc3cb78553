use std::path::Path;

use super::*;
use crate::config::Kind;
use crate::engine::{Change, SiteChange, Transition};

const S: i64 = 1_000_000_000;
const MIN: i64 = 60 * S;
/// 2026-07-21 14:00 +08:00
const T0: i64 = 1_784_613_600_000_000_000;

#[derive(Default)]
struct Capture(Mutex<Vec<Notification>>);

impl Notifier for Capture {
    fn notify(&self, n: &Notification) {
        self.0.lock().unwrap().push(n.clone());
    }
}

impl Capture {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap()).iter().map(show).collect()
    }
}

/// `team: kind site level → names` per intent, one line per notification.
fn show(n: &Notification) -> String {
    let parts: Vec<String> = n
        .intents
        .iter()
        .map(|i| {
            let names: Vec<&str> = i.recipients.iter().map(|r| r.name.as_str()).collect();
            let role = i.escalation_role.as_deref().map_or(String::new(), |r| format!("[{r}]"));
            format!("{}{role} {} {}", i.kind, i.alert.site, i.alert.level.map_or("-", |l| l.as_str()))
                + &format!(" → {}", names.join(","))
        })
        .collect();
    format!("{}@{}s: {}", n.team, (n.created_at - T0) / S, parts.join(" | "))
}

fn sample() -> crate::config::Config {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/floodguard.toml");
    crate::config::load_with_env(&main, &Default::default()).unwrap()
}

fn manager_on(store: Store, capture: Arc<Capture>) -> AlertManager {
    let c = sample();
    AlertManager::new(store, c.teams.clone(), Places::from_plan(&c.plan), capture, None, None).unwrap()
}

/// Applies transitions as the alert stage does, failing the test on an error.
fn handle(m: &AlertManager, transitions: &[Transition]) {
    m.handle(transitions, None).unwrap();
}

fn manager() -> (AlertManager, Arc<Capture>) {
    let cap = Arc::new(Capture::default());
    (manager_on(Store::memory().unwrap(), cap.clone()), cap)
}

fn site(site: &str, street: &str, from: Option<Level>, to: Option<Level>, value: f64, at: i64) -> Transition {
    Transition {
        at,
        change: Change::Site(SiteChange {
            site: site.into(),
            site_name: format!("{site}名").into(),
            street: street.into(),
            kind: Kind::Waterlogging,
            rule: "depth".into(),
            rule_name: "积水深度".into(),
            from,
            to,
            metric: Some("water_depth_cm".into()),
            value: Some(value),
            unit: "cm".into(),
            threshold: to.map(|_| 10.0),
            trend: None,
            eta: None,
            card: None,
            suspect: None,
        }),
    }
}

fn timeline(a: &Alert) -> Vec<String> {
    a.timeline
        .iter()
        .map(|e| {
            let mut s = format!("{}s {}", (e.ts - T0) / S, e.event);
            if let Some(l) = e.level {
                s += &format!(" {l}");
            }
            if let Some(b) = &e.by {
                s += &format!(" by {b}");
            }
            if let Some(n) = &e.note {
                s += &format!(" ({n})");
            }
            s
        })
        .collect()
}

use Level::*;

#[test]
fn a_site_climbs_is_acked_drops_is_disposed_and_resolves() {
    let (m, cap) = manager();
    // Ⅳ: waits up to 30 s for company, then team1's leader and the duty officer.
    handle(&m, &[site("CD-JS-01", "chengdong", None, Some(IV), 11.0, T0)]);
    assert_eq!(cap.take(), Vec::<String>::new());
    let id = m.alerts(true, 10).unwrap()[0].id;
    assert_eq!(m.alert(id).unwrap().unwrap().state, AlertState::Pending);
    m.tick(T0 + 30 * S).unwrap();
    assert_eq!(
        cap.take(),
        ["hq@30s: firing CD-JS-01 IV → 区值班员", "team1@30s: firing CD-JS-01 IV → 张队长"]
    );
    assert_eq!(m.alert(id).unwrap().unwrap().state, AlertState::Firing);
    // Ⅲ, then Ⅱ (no wait for Ⅱ): more people at each level.
    handle(&m, &[site("CD-JS-01", "chengdong", Some(IV), Some(III), 21.0, T0 + 2 * MIN)]);
    m.tick(T0 + 2 * MIN + 30 * S).unwrap();
    assert_eq!(
        cap.take(),
        [
            "hq@150s: escalated CD-JS-01 III → 区值班员,区防汛办 刘主任",
            "team1@150s: escalated CD-JS-01 III → 张队长,李队员"
        ]
    );
    handle(&m, &[site("CD-JS-01", "chengdong", Some(III), Some(II), 28.0, T0 + 4 * MIN)]);
    assert_eq!(
        cap.take(),
        [
            "hq@240s: escalated CD-JS-01 II → 区值班员,区防汛办 刘主任,区指挥部 陈副指挥",
            "team1@240s: escalated CD-JS-01 II → 张队长,李队员,城东街道 王主任"
        ]
    );
    // Acked; the water drops (told, after the window); disposed; resolved.
    let a = m.ack(id, "张队长", Some("已到场"), T0 + 5 * MIN).unwrap();
    assert_eq!(a.state, AlertState::Acked);
    handle(&m, &[site("CD-JS-01", "chengdong", Some(II), Some(III), 22.0, T0 + 8 * MIN)]);
    m.tick(T0 + 8 * MIN + 30 * S).unwrap();
    assert_eq!(
        cap.take(),
        [
            "hq@510s: deescalated CD-JS-01 III → 区值班员,区防汛办 刘主任",
            "team1@510s: deescalated CD-JS-01 III → 张队长,李队员"
        ]
    );
    let a = m.dispose(id, "张队长", "泵车抽排完毕，道路恢复通行", T0 + 20 * MIN).unwrap();
    assert_eq!(a.state, AlertState::Disposed);
    handle(&m, &[site("CD-JS-01", "chengdong", Some(III), None, 2.0, T0 + 25 * MIN)]);
    m.tick(T0 + 25 * MIN + 30 * S).unwrap();
    assert_eq!(
        cap.take(),
        [
            "hq@1530s: resolved CD-JS-01 - → 区值班员,区防汛办 刘主任,区指挥部 陈副指挥",
            "team1@1530s: resolved CD-JS-01 - → 张队长,李队员,城东街道 王主任"
        ],
        "everyone told at the peak hears it is over"
    );
    let a = m.alert(id).unwrap().unwrap();
    assert_eq!(a.state, AlertState::Resolved);
    assert_eq!(a.peak_level, Some(II));
    assert_eq!(a.peak_value, Some(28.0));
    assert_eq!(
        timeline(&a),
        [
            "0s firing IV",
            "30s notified IV (firing → 区值班员 (hq))",
            "30s notified IV (firing → 张队长 (team1))",
            "120s escalated III",
            "150s notified III (escalated → 区值班员、区防汛办 刘主任 (hq))",
            "150s notified III (escalated → 张队长、李队员 (team1))",
            "240s escalated II",
            "240s notified II (escalated → 区值班员、区防汛办 刘主任、区指挥部 陈副指挥 (hq))",
            "240s notified II (escalated → 张队长、李队员、城东街道 王主任 (team1))",
            "300s acked II by 张队长 (已到场)",
            "480s deescalated III",
            "510s notified III (deescalated → 区值班员、区防汛办 刘主任 (hq))",
            "510s notified III (deescalated → 张队长、李队员 (team1))",
            "1200s disposed III by 张队长 (泵车抽排完毕，道路恢复通行)",
            "1500s resolved",
            "1530s notified (resolved → 区值班员、区防汛办 刘主任、区指挥部 陈副指挥 (hq))",
            "1530s notified (resolved → 张队长、李队员、城东街道 王主任 (team1))",
        ]
    );
    // Closed: acking again is a conflict; disposing again too.
    assert!(matches!(m.ack(id, "x", None, T0 + 30 * MIN), Err(OpError::Conflict(_))));
    assert!(matches!(m.dispose(id, "x", "y", T0 + 30 * MIN), Err(OpError::Conflict(_))));
    assert!(matches!(m.ack(999, "x", None, T0), Err(OpError::NoAlert(999))));
}

#[test]
fn unacked_alerts_repeat_and_escalate_along_the_chain() {
    let (m, cap) = manager();
    handle(&m, &[site("BH-JS-01", "binhe", None, Some(II), 28.0, T0)]);
    cap.take();
    // Ⅱ: escalate after 15 min, repeat every 30 min.
    m.tick(T0 + 14 * MIN).unwrap();
    assert_eq!(cap.take(), Vec::<String>::new());
    m.tick(T0 + 15 * MIN).unwrap();
    m.tick(T0 + 15 * MIN + 30 * S).unwrap();
    assert_eq!(
        cap.take(),
        ["team2@930s: escalation[street_director] BH-JS-01 II → 滨河街道 孙主任"],
        "the chain's second tier (the leader was first)"
    );
    m.tick(T0 + 30 * MIN).unwrap();
    m.tick(T0 + 30 * MIN + 30 * S).unwrap();
    assert_eq!(
        cap.take(),
        [
            "hq@1830s: repeat BH-JS-01 II → 区值班员,区防汛办 刘主任,区指挥部 陈副指挥",
            "team2@1830s: repeat BH-JS-01 II → 赵队长,钱队员,滨河街道 孙主任 | escalation[district_hq] BH-JS-01 II → 区指挥部 陈副指挥,区指挥部 林指挥"
        ]
    );
    // The chain has no fourth tier; an ack stops everything.
    let id = m.alerts(true, 10).unwrap()[0].id;
    m.ack(id, "赵队长", None, T0 + 31 * MIN).unwrap();
    m.tick(T0 + 90 * MIN).unwrap();
    m.tick(T0 + 91 * MIN).unwrap();
    assert_eq!(cap.take(), Vec::<String>::new());
}

#[test]
fn a_storm_at_iii_is_one_summary_per_team() {
    let (m, cap) = manager();
    let sites = ["CD-JS-01", "CD-JS-02", "CD-JS-03"];
    for (k, s) in sites.iter().enumerate() {
        handle(&m, &[site(s, "chengdong", None, Some(III), 21.0, T0 + k as i64 * S)]);
    }
    m.tick(T0 + 29 * S).unwrap();
    assert_eq!(cap.take(), Vec::<String>::new(), "the first waits its 30 s");
    m.tick(T0 + 30 * S).unwrap();
    let sent = cap.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].starts_with("team1@30s: firing CD-JS-01 III"), "{sent:?}");
    assert_eq!(sent[1].matches("firing").count(), 3, "{sent:?}");
}

#[test]
fn an_alert_that_flips_within_the_group_window_is_told_once_at_its_latest_level() {
    let (m, cap) = manager();
    handle(&m, &[site("CD-JS-01", "chengdong", None, Some(IV), 11.0, T0)]);
    handle(&m, &[site("CD-JS-01", "chengdong", Some(IV), Some(III), 21.0, T0 + 5 * S)]);
    handle(&m, &[site("CD-JS-01", "chengdong", Some(III), Some(IV), 15.0, T0 + 10 * S)]);
    handle(&m, &[site("CD-JS-01", "chengdong", Some(IV), Some(III), 22.0, T0 + 15 * S)]);
    m.tick(T0 + 29 * S).unwrap();
    assert_eq!(cap.take(), Vec::<String>::new(), "the group waits the first intent's 30 s");
    m.tick(T0 + 30 * S).unwrap();
    let sent = cap.take();
    let team1: Vec<&String> = sent.iter().filter(|n| n.starts_with("team1@")).collect();
    assert_eq!(team1.len(), 1, "{sent:?}");
    assert_eq!(team1[0].matches("CD-JS-01").count(), 1, "one line for the alert: {sent:?}");
    assert!(team1[0].contains("firing CD-JS-01 III"), "a first notice, at its latest level: {sent:?}");
    // The timeline still has every change.
    let a = &m.alerts(true, 10).unwrap()[0];
    let levels: Vec<&str> =
        a.timeline.iter().filter(|e| e.level.is_some()).map(|e| e.event.as_str()).collect();
    assert!(levels.starts_with(&["firing", "escalated", "deescalated", "escalated"]), "{levels:?}");
}

#[test]
fn a_notice_waiting_in_its_group_across_a_restart_goes_out_as_without_one() {
    let flips = [
        site("CD-JS-01", "chengdong", None, Some(IV), 11.0, T0),
        site("CD-JS-01", "chengdong", Some(IV), Some(III), 21.0, T0 + 5 * S),
    ];
    let told = |cap: &Capture| -> Vec<Intent> {
        let sent = std::mem::take(&mut *cap.0.lock().unwrap());
        sent.into_iter().filter(|n| n.team == "team1").flat_map(|n| n.intents).collect()
    };
    // Straight through.
    let (m, cap) = manager();
    handle(&m, &flips);
    m.tick(T0 + 30 * S).unwrap();
    let straight = told(&cap);
    assert_eq!(straight.len(), 1, "{straight:?}");
    // Stopped while the notice waits in its group, then started again.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let cap = Arc::new(Capture::default());
    {
        let m = manager_on(Store::open(&path).unwrap(), cap.clone());
        handle(&m, &flips);
        m.tick(T0 + 10 * S).unwrap();
        assert!(told(&cap).is_empty(), "waiting in the group");
    }
    let body: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT body FROM pending_intents WHERE team = 'team1'", [], |r| r.get(0))
        .unwrap();
    assert!(body.contains("CD-JS-01") && !body.contains("site_name"), "the alert by reference: {body}");
    let m = manager_on(Store::open(&path).unwrap(), cap.clone());
    m.tick(T0 + 30 * S).unwrap();
    let restarted = told(&cap);
    assert_eq!(restarted, straight, "the same notice, its alert filled from the record");
    assert_eq!(restarted[0].alert.site_name, "CD-JS-01名");
    assert_eq!(restarted[0].alert.level, Some(III));
}

#[test]
fn silences_mute_and_when_they_end_the_alert_is_told() {
    let (m, cap) = manager();
    let s = m
        .add_silence(
            Silence {
                id: 0,
                matchers: Matchers { site: Some("BH-BZ-01".into()), ..Matchers::default() },
                starts_at: T0,
                ends_at: T0 + 60 * MIN,
                created_by: "泵站所".into(),
                comment: "检修".into(),
                from_config: false,
            },
            T0,
        )
        .unwrap();
    handle(&m, &[site("BH-BZ-01", "binhe", None, Some(II), 2.4, T0 + MIN)]);
    m.tick(T0 + 30 * MIN).unwrap();
    assert_eq!(cap.take(), Vec::<String>::new());
    let id = m.alerts(true, 10).unwrap()[0].id;
    let a = m.alert(id).unwrap().unwrap();
    assert_eq!(a.state, AlertState::Pending);
    assert!(timeline(&a).contains(&format!("60s silenced II (silence #{})", s.id)), "{:?}", timeline(&a));
    // The window ends on time: told at the next tick after it.
    m.tick(T0 + 60 * MIN - S).unwrap();
    assert_eq!(cap.take(), Vec::<String>::new());
    m.tick(T0 + 60 * MIN).unwrap();
    assert_eq!(cap.take().len(), 2, "team2 and hq, at once (Ⅱ)");
    // Ending a silence early through the API works the same way.
    assert!(matches!(m.expire_silence(s.id + 100, T0), Err(OpError::NoSilence(_))));
    assert!(matches!(m.expire_silence(-1, T0), Err(OpError::Conflict(_))));
}

#[test]
fn an_offline_site_inhibits_its_alerts_and_raises_its_own() {
    let (m, cap) = manager();
    handle(
        &m,
        &[Transition {
            at: T0,
            change: Change::Offline {
                site: "XC-JS-01".into(),
                last_seen: None,
                reason: crate::engine::OfflineReason::Stale,
            },
        }],
    );
    handle(&m, &[site("XC-JS-01", "xincheng", None, Some(I), 45.0, T0 + S)]);
    m.tick(T0 + 31 * S).unwrap();
    let sent = cap.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.iter().all(|s| s.contains("firing XC-JS-01 IV") && !s.contains(" I →")),
        "only the offline alert: {sent:?}"
    );
    let alerts = m.alerts(true, 10).unwrap();
    let offline = alerts.iter().find(|a| a.rule == OFFLINE_RULE).unwrap();
    assert_eq!(offline.rule_name, "设备离线");
    assert_eq!(offline.site_name, "高铁站北广场地下通道");
    // Back online: the offline alert resolves and the held-back one is told.
    handle(&m, &[Transition { at: T0 + 2 * MIN, change: Change::Online { site: "XC-JS-01".into() } }]);
    m.tick(T0 + 2 * MIN + 30 * S).unwrap();
    let sent = cap.take();
    assert!(sent.iter().any(|s| s.contains("firing XC-JS-01 I")), "{sent:?}");
    assert!(sent.iter().any(|s| s.contains("resolved XC-JS-01")), "{sent:?}");
}

#[test]
fn a_suspected_sensor_fault_goes_to_maintenance_never_to_the_rescue_teams() {
    let (m, cap) = manager();
    let fault = |open: bool, at: i64| Transition {
        at,
        change: Change::SensorFault(crate::engine::qc::SensorFault {
            site: "CD-JS-01".into(),
            site_name: "人民路铁路桥下穿".into(),
            street: "chengdong".into(),
            kind: Kind::Waterlogging,
            metric: "water_depth_cm".into(),
            unit: "cm".into(),
            test: crate::engine::qc::QcTest::Flatline,
            open,
            value: Some(0.0),
        }),
    };
    handle(&m, &[fault(true, T0)]);
    m.tick(T0 + 31 * S).unwrap();
    assert_eq!(cap.take(), ["iot@31s: firing CD-JS-01 IV → 运维值班工程师 何工"]);
    let a = m.alerts(true, 10).unwrap().into_iter().find(|a| a.rule == "qc.water_depth_cm").unwrap();
    assert_eq!(a.kind, Some(AlertKind::Maintenance));
    assert_eq!(a.rule_name, "疑似传感器故障（water_depth_cm 数值长时间不变）");
    // Unacked: repeated to maintenance, never escalated up the flood chain.
    m.tick(T0 + 3 * 3600 * S).unwrap();
    let sent = cap.take();
    assert!(sent.iter().all(|s| s.starts_with("iot@") && !s.contains("escalation")), "{sent:?}");
    handle(&m, &[fault(false, T0 + 4 * 3600 * S)]);
    m.tick(T0 + 4 * 3600 * S + 31 * S).unwrap();
    assert_eq!(
        cap.take(),
        ["iot@14400s: resolved CD-JS-01 - → 运维值班工程师 何工"],
        "a resolve goes at once"
    );
    // A flood level at the same site still goes to the rescue teams only.
    handle(&m, &[site("CD-JS-01", "chengdong", None, Some(IV), 12.0, T0 + 5 * 3600 * S)]);
    m.tick(T0 + 5 * 3600 * S + 31 * S).unwrap();
    let sent = cap.take();
    assert!(!sent.is_empty() && sent.iter().all(|s| !s.starts_with("iot@")), "{sent:?}");
}

#[test]
fn a_gateway_down_is_one_alert_its_sites_offline_are_none_and_their_levels_are_held() {
    let (m, cap) = manager();
    let sites = ["XC-JS-01", "XC-JS-02", "XC-JC-01"];
    let link = |down: bool, at: i64| Transition {
        at,
        change: Change::Upstream(crate::engine::upstream::UpstreamChange {
            id: "DTU-07".into(),
            kind: crate::plan::UpstreamKind::Gateway,
            down,
            sites: sites.iter().map(|s| Arc::from(*s)).collect(),
            site_names: vec!["高铁站北广场地下通道".into(), "x".into(), "y".into()],
            street: Some("xincheng".into()),
        }),
    };
    let mut batch = vec![link(true, T0)];
    for s in sites {
        batch.push(Transition {
            at: T0,
            change: Change::Offline {
                site: s.into(),
                last_seen: None,
                reason: crate::engine::OfflineReason::Upstream,
            },
        });
    }
    handle(&m, &batch);
    m.tick(T0 + 31 * S).unwrap();
    let sent = cap.take();
    assert_eq!(
        sent,
        [
            "hq@31s: firing DTU-07 IV → 区值班员",
            "iot@31s: firing DTU-07 IV → 运维值班工程师 何工",
            "team3@31s: firing DTU-07 IV → 周队长",
        ],
        "one alert, to the rescue teams (duty officer) and maintenance"
    );
    let active = m.alerts(true, 10).unwrap();
    assert_eq!(active.len(), 1, "no offline alert per site: {active:?}");
    let a = &active[0];
    assert_eq!((a.kind, a.rule.as_str(), a.street.as_str()), (Some(AlertKind::Gateway), "link", "xincheng"));
    assert!(a.rule_name.starts_with("采集链路中断：3 个站点无数据（高铁站北广场地下通道"), "{}", a.rule_name);
    assert!(a.timeline.iter().any(|e| e.event == "sites"), "{:?}", a.timeline);
    // A covered site's level is held back like any offline site's.
    handle(&m, &[site("XC-JS-01", "xincheng", None, Some(II), 30.0, T0 + MIN)]);
    m.tick(T0 + 2 * MIN).unwrap();
    assert!(cap.take().is_empty());
    handle(&m, &[link(false, T0 + 10 * MIN)]);
    m.tick(T0 + 10 * MIN + 31 * S).unwrap();
    let sent = cap.take();
    assert_eq!(sent.iter().filter(|s| s.contains("resolved DTU-07")).count(), 3, "{sent:?}");
}

#[test]
fn a_street_alert_folds_its_sites() {
    let cap = Arc::new(Capture::default());
    let c = sample();
    let mut teams = c.teams.clone();
    teams.alerting.fold_sites_into_street = true;
    let m = AlertManager::new(
        Store::memory().unwrap(),
        teams,
        Places::from_plan(&c.plan),
        cap.clone(),
        None,
        None,
    )
    .unwrap();
    handle(
        &m,
        &[Transition {
            at: T0,
            change: Change::Street {
                street: "chengdong".into(),
                name: "城东街道".into(),
                from: None,
                to: Some(II),
            },
        }],
    );
    handle(&m, &[site("CD-JS-01", "chengdong", None, Some(III), 21.0, T0 + S)]);
    m.tick(T0 + 31 * S).unwrap();
    let sent = cap.take();
    assert!(sent.iter().all(|s| s.contains("firing chengdong II")), "{sent:?}");
    assert!(!sent.iter().any(|s| s.contains("CD-JS-01")), "folded: {sent:?}");
    let alerts = m.alerts(true, 10).unwrap();
    let street = alerts.iter().find(|a| a.kind == Some(AlertKind::Street)).unwrap();
    assert_eq!(street.site_name, "城东街道");
}

#[test]
fn a_restart_resumes_without_repeating_and_a_missed_escalation_fires_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let cap = Arc::new(Capture::default());
    {
        let m = manager_on(Store::open(&path).unwrap(), cap.clone());
        handle(&m, &[site("BH-JS-01", "binhe", None, Some(II), 28.0, T0)]);
        assert_eq!(cap.take().len(), 2);
        // "Killed" here: nothing else written.
    }
    let m = manager_on(Store::open(&path).unwrap(), cap.clone());
    let (levels, offline) = m.seed();
    assert_eq!(levels, [("BH-JS-01".to_string(), "depth".to_string(), II)]);
    assert!(offline.is_empty());
    // The engine, seeded, says nothing new; a replayed raise changes nothing.
    handle(&m, &[site("BH-JS-01", "binhe", None, Some(II), 28.0, T0 + 20 * MIN)]);
    // Down from T0+1 min to T0+20 min: the escalation due at 15 min fires once.
    m.tick(T0 + 20 * MIN).unwrap();
    m.tick(T0 + 20 * MIN + 30 * S).unwrap();
    assert_eq!(cap.take(), ["team2@1230s: escalation[street_director] BH-JS-01 II → 滨河街道 孙主任"]);
    m.tick(T0 + 21 * MIN).unwrap();
    m.tick(T0 + 34 * MIN).unwrap();
    assert_eq!(cap.take(), Vec::<String>::new());
    // The next step on time: 15 min after the last.
    m.tick(T0 + 35 * MIN).unwrap();
    m.tick(T0 + 35 * MIN + 30 * S).unwrap();
    let sent = cap.take();
    assert!(sent.iter().any(|s| s.contains("escalation[district_hq]")), "{sent:?}");
}

#[test]
fn a_street_alert_tells_only_what_its_sites_do_not() {
    let (m, cap) = manager();
    // One site at Ⅲ makes the street Ⅲ: the site's notice says it all.
    handle(
        &m,
        &[
            site("CD-JS-01", "chengdong", None, Some(III), 21.0, T0),
            Transition {
                at: T0,
                change: Change::Street {
                    street: "chengdong".into(),
                    name: "城东街道".into(),
                    from: None,
                    to: Some(III),
                },
            },
        ],
    );
    m.tick(T0 + 30 * S).unwrap();
    let sent = cap.take();
    assert!(sent.iter().all(|s| s.contains("CD-JS-01") && !s.contains("chengdong")), "{sent:?}");
    // Three at Ⅲ make it Ⅱ: that is news, with the sites listed.
    handle(
        &m,
        &[
            site("CD-JS-02", "chengdong", None, Some(III), 26.0, T0 + MIN),
            site("CD-JS-03", "chengdong", None, Some(III), 21.0, T0 + MIN),
            Transition {
                at: T0 + MIN,
                change: Change::Street {
                    street: "chengdong".into(),
                    name: "城东街道".into(),
                    from: Some(III),
                    to: Some(II),
                },
            },
        ],
    );
    m.tick(T0 + MIN + 30 * S).unwrap();
    let sent = cap.take();
    assert!(sent.iter().any(|s| s.contains("escalated chengdong II")), "{sent:?}");
    let n = m.notifications(10).unwrap();
    let street = n.iter().flat_map(|n| &n.intents).find(|i| i.alert.site == "chengdong").unwrap();
    assert_eq!(street.alert.members, ["CD-JS-01名 Ⅲ", "CD-JS-02名 Ⅲ", "CD-JS-03名 Ⅲ"]);
}

#[test]
fn the_engine_mark_and_the_points_are_committed_with_the_transitions_and_kept_until_spooled() {
    use crate::engine::Progress;
    let dir = tempfile::tempdir().unwrap();
    let (appender, mut reader) = crate::spool::open(&dir.path().join("spool"), 1 << 20).unwrap();
    let parts = crate::outlet::Outlet::wire(
        appender,
        false,
        crate::stage::Probe::new("outlet"),
        Arc::new(crate::metrics::Metrics::new()),
    );
    let points = PointsOut { outlet: parts.handle.clone(), spooled: parts.spooled_points.clone() };
    let c = sample();
    let path = dir.path().join("state.db");
    let m = AlertManager::new(
        Store::open(&path).unwrap(),
        c.teams.clone(),
        Places::from_plan(&c.plan),
        Arc::new(LogNotifier),
        Some(points.clone()),
        None,
    )
    .unwrap();
    let street = Transition {
        at: T0,
        change: Change::Street {
            street: "chengdong".into(),
            name: "城东街道".into(),
            from: None,
            to: Some(IV),
        },
    };
    let mark = Progress { segment: 1, offset: 4096 };
    m.handle(&[site("CD-JS-01", "chengdong", None, Some(IV), 11.0, T0), street], Some(mark)).unwrap();
    assert_eq!(m.engine_cursor().unwrap(), Some(mark));
    // Not spooled yet (the outlet is not running): the row waits, and a
    // manager made after a crash hands it over again.
    let store = Store::open(&path).unwrap();
    let pending = store.pending_points().unwrap();
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0].1.contains("alert_event,event=firing,level=IV,rule=depth,site=CD-JS-01"),
        "{}",
        pending[0].1
    );
    assert!(pending[0].1.contains("area_level,street=chengdong level=1i"), "{}", pending[0].1);
    let stop = tokio_util::sync::CancellationToken::new();
    let outlet = std::thread::spawn({
        let stop = stop.clone();
        move || parts.outlet.run(stop)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while points.spooled.load(std::sync::atomic::Ordering::Relaxed) < 1 {
        assert!(std::time::Instant::now() < deadline, "the outlet spools the points");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The next transaction forgets what the spool has.
    m.handle(&[], Some(Progress { segment: 1, offset: 8192 })).unwrap();
    assert!(store.pending_points().unwrap().is_empty());
    assert_eq!(m.engine_cursor().unwrap(), Some(Progress { segment: 1, offset: 8192 }));
    let again = AlertManager::new(
        store,
        c.teams.clone(),
        Places::from_plan(&c.plan),
        Arc::new(LogNotifier),
        Some(points),
        None,
    )
    .unwrap();
    assert_eq!(again.resend_points().unwrap(), 0);
    drop((m, again, parts.handle));
    stop.cancel();
    outlet.join().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let batch = rt.block_on(reader.next_batch(100, std::time::Duration::from_millis(10), &stop)).unwrap();
    let text = String::from_utf8(batch.body).unwrap();
    assert_eq!(
        text.matches("alert_event,event=firing,level=IV,rule=depth,site=CD-JS-01").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("area_level,street=chengdong").count(), 1, "{text}");
}

#[test]
fn an_unacked_i_calls_the_on_duty_leader_then_the_chain_and_an_ack_stops_the_calls() {
    // Sample policy: Ⅰ calls after 5 min; escalation at Ⅰ after 10 min; the
    // chain is leader → street director → district HQ.
    let (m, cap) = manager();
    handle(&m, &[site("CD-JS-01", "chengdong", None, Some(I), 45.0, T0)]);
    cap.take();
    let id = m.alerts(true, 10).unwrap()[0].id;
    m.tick(T0 + 4 * MIN).unwrap();
    assert!(cap.take().iter().all(|n| !n.contains("call")), "not before voice_after");
    m.tick(T0 + 5 * MIN).unwrap();
    assert_eq!(
        cap.take(),
        ["team1@300s: call[leader] CD-JS-01 I → 张队长"],
        "one call, to the on-duty leader"
    );
    m.tick(T0 + 5 * MIN + 30 * S).unwrap();
    assert!(cap.take().is_empty(), "not again within voice_after");
    m.tick(T0 + 10 * MIN).unwrap();
    let told = cap.take();
    assert!(
        told.contains(&"team1@600s: call[street_director] CD-JS-01 I → 城东街道 王主任".to_string()),
        "{told:?}"
    );
    let a = m.alert(id).unwrap().unwrap();
    assert_eq!((a.voice_step, a.voice_level), (2, Some(I)));
    assert!(timeline(&a).iter().any(|e| e == "300s call I (队长：张队长)"), "{:?}", timeline(&a));
    m.ack(id, "张队长", None, T0 + 12 * MIN).unwrap();
    m.tick(T0 + 30 * MIN).unwrap();
    assert!(cap.take().iter().all(|n| !n.contains("call")), "acked: no more calls");
}

#[test]
fn a_call_is_placed_once_per_level_and_acked_before_means_no_call() {
    let (m, cap) = manager();
    handle(&m, &[site("CD-JS-02", "chengdong", None, Some(I), 55.0, T0)]);
    let id = m.alerts(true, 10).unwrap()[0].id;
    m.ack(id, "张队长", None, T0 + MIN).unwrap();
    cap.take();
    m.tick(T0 + 6 * MIN).unwrap();
    assert!(cap.take().iter().all(|n| !n.contains("call")), "acked before voice_after: no call");
    // A Ⅱ alert rising to Ⅰ calls; falling and rising again does not call twice.
    handle(&m, &[site("CD-JS-01", "chengdong", None, Some(II), 30.0, T0)]);
    m.tick(T0 + 6 * MIN).unwrap();
    assert!(cap.take().iter().all(|n| !n.contains("call")), "Ⅱ does not call");
    handle(&m, &[site("CD-JS-01", "chengdong", Some(II), Some(I), 45.0, T0 + 7 * MIN)]);
    m.tick(T0 + 12 * MIN).unwrap();
    assert_eq!(cap.take().iter().filter(|n| n.contains("call")).count(), 1);
    handle(&m, &[site("CD-JS-01", "chengdong", Some(I), Some(II), 35.0, T0 + 13 * MIN)]);
    handle(&m, &[site("CD-JS-01", "chengdong", Some(II), Some(I), 45.0, T0 + 14 * MIN)]);
    m.tick(T0 + 14 * MIN + 30 * S).unwrap();
    assert!(cap.take().iter().all(|n| !n.contains("call[leader]")), "the leader is not called twice about Ⅰ");
}
