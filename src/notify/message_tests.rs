use super::*;
use crate::alerts::model::Recipient;
use crate::plan::Card;

fn card() -> Card {
    Card {
        kind: Kind::Waterlogging,
        level: Level::III,
        unit: "辖区抢险队、交警中队".into(),
        duties: vec!["抢险队到场排水，交警现场疏导交通".into()],
        measures: vec!["启动移动泵车强排".into(), "下穿通道入口显示屏发布“积水慢行”".into()],
        arrive_within_s: 1800,
        materials: Default::default(),
    }
}

fn intent(kind: IntentKind, site: &str, name: &str, level: Option<Level>, value: f64) -> Intent {
    Intent {
        kind,
        team: "team1".into(),
        recipients: vec![Recipient {
            team: "team1".into(),
            name: "张队长".into(),
            role: "leader".into(),
            phone: Some("13800000101".into()),
            email: None,
        }],
        alert: AlertSnapshot {
            id: 7,
            kind: "site".into(),
            site: site.into(),
            site_name: name.into(),
            street: "chengdong".into(),
            rule: "depth".into(),
            rule_name: "积水深度".into(),
            level,
            value: Some(value),
            threshold: Some(20.0),
            unit: "cm".into(),
            trend_per_hour: Some(60.0),
            eta_level: Some(Level::II),
            eta_seconds: Some(720.0),
            card: Some(card()),
            started_at: 0,
            members: vec![],
            suspect: None,
            supply: vec![],
        },
        escalation_role: None,
        created_at: 0,
        partial: false,
    }
}

fn streets() -> BTreeMap<String, String> {
    BTreeMap::from([("chengdong".to_string(), "城东街道".to_string())])
}

fn ctx<'a>(
    streets: &'a BTreeMap<String, String>,
    link: &'a dyn Fn(i64) -> Option<String>,
    language: Language,
) -> Context<'a> {
    Context {
        district: "某区",
        language,
        streets,
        ack_link: link,
        ack_all: &|ids: &[i64]| Some(format!("http://hq/ack/ALL{}", ids.len())),
        drill: false,
    }
}

fn one(kind: IntentKind) -> Notification {
    Notification {
        id: 1,
        team: "team1".into(),
        intents: vec![intent(kind, "CD-JS-01", "人民路铁路桥下穿", Some(Level::III), 21.0)],
        created_at: 0,
    }
}

#[test]
fn an_sms_says_what_where_how_much_which_way_and_what_to_do() {
    let s = streets();
    let link = |id: i64| Some(format!("http://hq/ack/T{id}"));
    let r = render(&ctx(&s, &link, Language::ZhCn), &one(IntentKind::Firing));
    assert_eq!(
        r.sms,
        "【某区防汛】Ⅲ级黄色预警 城东街道 人民路铁路桥下穿，积水深度 21 cm（阈值 20 cm），上涨 60 cm/h，预计 12 分钟后达到Ⅱ级。辖区抢险队、交警中队 30 分钟内到场：启动移动泵车强排。确认收到：http://hq/ack/T7"
    );
    assert!(r.sms.chars().count() <= SMS_MAX_CHARS);
    assert_eq!(r.subject, "【某区防汛】Ⅲ级黄色预警 城东街道 人民路铁路桥下穿 21 cm");
    for part in [
        "责任单位：辖区抢险队、交警中队",
        "措施：启动移动泵车强排；下穿通道入口显示屏发布“积水慢行”",
        "到岗时限：30 分钟",
        "确认收到：http://hq/ack/T7",
    ] {
        assert!(r.text.contains(part), "{part} in\n{}", r.text);
    }
    assert!(r.html.contains("<a href=\"http://hq/ack/T7\">确认收到</a>"));
    assert!(r.markdown.starts_with("### <font color=\"info\">【某区防汛】Ⅲ级黄色预警"), "{}", r.markdown);
    assert_eq!(r.params["level"], "Ⅲ级黄色");
    assert_eq!(r.params["site"], "人民路铁路桥下穿");
}

#[test]
fn every_kind_of_intent_has_its_headline() {
    let s = streets();
    let link = |_: i64| None;
    let c = ctx(&s, &link, Language::ZhCn);
    let head = |k| render(&c, &one(k)).sms;
    assert!(head(IntentKind::Escalated).contains("升级为Ⅲ级黄色 城东街道"));
    assert!(head(IntentKind::Deescalated).contains("降为Ⅲ级黄色"));
    assert!(head(IntentKind::Repeat).contains("未确认，再次提醒"));
    let mut e = one(IntentKind::Escalation);
    e.intents[0].escalation_role = Some("street_director".into());
    assert!(render(&c, &e).sms.contains("逐级上报街道主任"));
    let mut r = one(IntentKind::Resolved);
    r.intents[0].alert.level = None;
    let r = render(&c, &r);
    assert!(r.sms.contains("已解除 城东街道 人民路铁路桥下穿"), "{}", r.sms);
    assert!(!r.sms.contains("到场"), "no card once it is over");
}

#[test]
fn a_storm_is_summarised_and_stays_one_sms() {
    let s = streets();
    let link = |id: i64| Some(format!("http://hq/ack/{id}"));
    let intents: Vec<Intent> = (0..50)
        .map(|k| {
            let mut i = intent(
                IntentKind::Firing,
                &format!("CD-JS-{k:02}"),
                &format!("积水点{k}"),
                Some(Level::III),
                21.0 + k as f64,
            );
            i.alert.id = 100 + k;
            i
        })
        .collect();
    let n = Notification { id: 2, team: "team1".into(), intents, created_at: 0 };
    let r = render(&ctx(&s, &link, Language::ZhCn), &n);
    assert!(
        r.sms.starts_with("【某区防汛】城东街道 50 处积水点处于Ⅲ级：积水点0 21 cm、积水点1 22 cm"),
        "{}",
        r.sms
    );
    assert!(r.sms.chars().count() <= SMS_MAX_CHARS, "{}", r.sms.chars().count());
    assert!(
        r.sms.ends_with("确认全部：http://hq/ack/ALL50"),
        "one link for all fifty survives the cut (its page lists them all): {}",
        r.sms
    );
    assert!(r.markdown.ends_with("[全部确认收到](http://hq/ack/ALL50)"), "{}", r.markdown);
    assert!(r.text.contains("确认收到：http://hq/ack/149"), "the e-mail keeps a link per alert");
    assert!(
        r.sms.contains("…。辖区抢险队、交警中队 30 分钟内到场：启动移动泵车强排。确认全部"),
        "the list gives way to what to do: {}",
        r.sms
    );
    assert_eq!(r.subject, "【某区防汛】汛情汇总：50 处预警，最高Ⅲ级黄色");
    assert!(r.markdown.len() <= MARKDOWN_MAX_BYTES);
    for k in [0, 25, 49] {
        assert!(r.markdown.contains(&format!("积水点{k} ")), "robots name every point (in parts if need be)");
    }
    assert_eq!(r.text.matches("■ ").count(), 50, "e-mail lists them all");
    assert!(r.voice.starts_with("某区防汛指挥部紧急通知：城东街道 "), "{}", r.voice);
    assert!(r.voice.contains("另有 49 处预警"), "{}", r.voice);
}

#[test]
fn english_when_asked() {
    let s = streets();
    let link = |_: i64| Some("http://hq/ack/x".to_string());
    let r = render(&ctx(&s, &link, Language::En), &one(IntentKind::Firing));
    assert!(r.sms.starts_with("[某区 flood control] level III (yellow): 城东街道 人民路铁路桥下穿, 积水深度 21 cm (threshold 20 cm), rising 60 cm/h, level II expected in 12 min."), "{}", r.sms);
    assert!(r.sms.ends_with("Acknowledge: http://hq/ack/x"));
}

#[test]
fn long_markdown_is_cut_on_a_character_boundary() {
    let long = "积".repeat(3000);
    let cut = cut_bytes(&long, ROBOT_MAX_BYTES);
    assert!(cut.len() <= ROBOT_MAX_BYTES && cut.ends_with('…'));
}

#[test]
fn a_street_level_leads_a_grouped_message() {
    let s = streets();
    let link = |_: i64| None;
    let mut street = intent(IntentKind::Firing, "chengdong", "城东街道", Some(Level::II), 0.0);
    street.alert.kind = "street".into();
    street.alert.value = None;
    street.alert.members = vec!["人民路铁路桥下穿 Ⅲ".into(), "积水点1 Ⅲ".into(), "积水点2 Ⅲ".into()];
    let mut n = one(IntentKind::Firing);
    n.intents.push(intent(IntentKind::Firing, "CD-JS-02", "积水点1", Some(Level::III), 22.0));
    n.intents.push(street);
    let r = render(&ctx(&s, &link, Language::ZhCn), &n);
    assert!(
        r.sms.starts_with("【某区防汛】Ⅱ级橙色预警 城东街道；城东街道 2 处积水点处于Ⅲ级：人民路铁路桥下穿 21 cm、积水点1 22 cm。"),
        "{}",
        r.sms
    );
    assert!(r.text.contains("■ Ⅱ级橙色预警 城东街道\n"), "the street is not named twice:\n{}", r.text);
    assert!(r.markdown.contains("> Ⅱ级橙色预警 城东街道\n"), "{}", r.markdown);
}

#[test]
fn a_level_resting_on_a_confirmed_suspect_value_says_so() {
    let s = streets();
    let link = |_: i64| None;
    let mut n = one(IntentKind::Firing);
    n.intents[0].alert.suspect = Some("突变".into());
    let r = render(&ctx(&s, &link, Language::ZhCn), &n);
    assert!(
        r.sms.contains("积水深度 21 cm（阈值 20 cm）（数据曾被质控判为可疑：突变，已由后续读数确认）"),
        "{}",
        r.sms
    );
    let r = render(&ctx(&s, &link, Language::En), &n);
    assert!(r.sms.contains("quality control found the value suspect: 突变"), "{}", r.sms);
}

#[test]
fn a_sensor_fault_and_a_broken_link_say_what_they_are_not_a_flood_level() {
    let s = streets();
    let link = |_: i64| None;
    let c = ctx(&s, &link, Language::ZhCn);
    let mut n = one(IntentKind::Firing);
    let a = &mut n.intents[0].alert;
    a.kind = "maintenance".into();
    a.rule_name = "疑似传感器故障（water_depth_cm 数值长时间不变）".into();
    a.level = Some(Level::IV);
    a.value = Some(0.0);
    a.threshold = None;
    a.card = None;
    a.trend_per_hour = None;
    a.eta_level = None;
    let r = render(&c, &n);
    assert!(
        r.sms.starts_with(
            "【某区防汛】疑似传感器故障（water_depth_cm 数值长时间不变） 城东街道 人民路铁路桥下穿"
        ),
        "{}",
        r.sms
    );
    assert!(!r.sms.contains("预警"), "not a flood warning: {}", r.sms);
    n.intents[0].kind = IntentKind::Resolved;
    assert!(render(&c, &n).sms.contains("已恢复 城东街道 人民路铁路桥下穿"), "{}", render(&c, &n).sms);
}

#[test]
fn an_alert_names_the_nearest_depot_and_its_keeper_and_the_link_stays_whole() {
    let s = streets();
    let link = |id: i64| Some(format!("http://hq/ack/T{id}"));
    let mut n = one(IntentKind::Escalated);
    n.intents[0].alert.level = Some(Level::II);
    n.intents[0].alert.supply = vec![crate::materials::Supply {
        depot: "depot-cd".into(),
        name: "城东防汛物资仓库".into(),
        keeper: "王保管".into(),
        phone: "13800000501".into(),
        distance_km: 0.14,
        items: vec![crate::materials::Supplied {
            item: "sandbag".into(),
            name: "编织袋（沙袋）".into(),
            unit: "条".into(),
            quantity: 200.0,
            on_hand: 3000.0,
        }],
    }];
    let r = render(&ctx(&s, &link, Language::ZhCn), &n);
    assert!(
        r.sms.contains("。物资：城东防汛物资仓库（王保管 13800000501）。确认收到：http://hq/ack/T7"),
        "{}",
        r.sms
    );
    assert!(r.sms.chars().count() <= SMS_MAX_CHARS);
    assert!(
        r.text.contains("物资：城东防汛物资仓库（王保管 13800000501，0.14 km）：编织袋（沙袋） 200 条"),
        "{}",
        r.text
    );
    assert!(r.markdown.contains("**物资**：城东防汛物资仓库（王保管 13800000501"), "{}", r.markdown);
    // Once it is over, no depot.
    let r = render(&ctx(&s, &link, Language::ZhCn), &one(IntentKind::Resolved));
    assert!(!r.sms.contains("物资"));
}
