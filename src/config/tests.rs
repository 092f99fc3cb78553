//! Loading the shipped sample configuration and broken variants of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Copies the sample config to a temp dir, applying `(file, from, to)` edits.
fn broken(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["floodguard.toml", SITES_FILE, PLAN_FILE, TEAMS_FILE, MATERIALS_FILE] {
        let mut text = std::fs::read_to_string(sample_dir().join(f)).unwrap();
        for (file, from, to) in edits {
            if *file == f {
                assert!(text.contains(from), "{f} lacks {from:?}");
                text = text.replacen(from, to, 1);
            }
        }
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    dir
}

#[test]
fn the_sample_district_loads() {
    let c = load_with_env(&sample_dir().join("floodguard.toml"), &HashMap::new()).unwrap();
    assert_eq!(c.sites.streets.len(), 3);
    assert_eq!(c.sites.sites.len(), 15);
    for id in [
        "CD-JS-01", "CD-JS-02", "CD-YL-01", "CD-JC-01", "BH-SW-01", "BH-BZ-01", "BH-JS-01", "BH-YL-01",
        "XC-JS-01", "XC-BZ-01", "XC-SW-01", "XC-JC-01",
    ] {
        assert!(c.site(id).is_some(), "{id} missing");
    }
    let cats: Vec<Category> = c.sites.sites.iter().map(|s| s.category).collect();
    for needed in [Category::Community, Category::Mall, Category::School] {
        assert!(cats.contains(&needed), "{needed:?} missing");
    }
    assert_eq!(c.teams.teams.len(), 4, "three rescue teams and the district HQ");
    assert_eq!(c.timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(c.daemon.mqtt.mappings.len(), 2);
    assert_eq!(c.daemon.influxdb.flush_interval.get(), std::time::Duration::from_secs(1));
}

#[test]
fn the_sample_materials_hq_and_works_load() {
    let c = load_with_env(&sample_dir().join("floodguard.toml"), &HashMap::new()).unwrap();
    assert_eq!(c.materials.items.len(), 8);
    assert_eq!(c.materials.depots.len(), 3);
    let cd = c.materials.depot("depot-cd").unwrap();
    assert_eq!((cd.keeper.as_str(), cd.phone.as_str()), ("王保管", "13800000501"));
    assert_eq!(cd.items["sandbag"], 3000.0);
    assert_eq!(c.materials.item("pump_truck").unwrap().unit, "台");
    let card = c.plan.card(Kind::Waterlogging, crate::level::Level::II).unwrap();
    assert_eq!(card.materials["sandbag"], 200.0);
    assert_eq!(card.materials["pump_truck"], 1.0);
    let hq = c.teams.hq.as_ref().unwrap();
    assert_eq!(hq.units.len(), 12);
    assert_eq!(hq.team.as_deref(), Some("hq"));
    let rescue: Vec<&str> = readiness::rescue_teams(&c.teams).iter().map(|t| t.id.as_str()).collect();
    assert_eq!(rescue, ["team1", "team2", "team3"]);
    assert_eq!(c.sites.pump_works.len(), 4);
    assert_eq!(c.sites.renovations.len(), 3);
}

#[test]
fn materials_hq_and_works_mistakes_are_named_by_file_line_and_key() {
    let dir = broken(&[
        (PLAN_FILE, "materials = { sandbag = 1000 }", "materials = { sandbags = 1000 }"),
        (MATERIALS_FILE, "keeper = \"赵保管\"", "keeper = \" \""),
        (MATERIALS_FILE, "street = \"xincheng\"", "street = \"xinchen\""),
        (MATERIALS_FILE, "unit = \"块\"", "unit = \"块\"\nweight = 1"),
        (SITES_FILE, "actual_percent = 65", "actual_percent = 165"),
        (
            SITES_FILE,
            "site = \"XC-BZ-01\"\ndate = \"2026-04-02\"",
            "site = \"XC-JS-01\"\ndate = \"2026-04-32\"",
        ),
        (TEAMS_FILE, "team = \"hq\"", "team = \"hqq\""),
        (TEAMS_FILE, "duties = \"负责暴雨预报预警信息发布\"", "duties = \"\""),
    ]);
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let text = errs.to_string();
    for want in [
        "sites.toml:234: renovations[1].actual_percent: 165 is not a percentage (0–100)",
        "sites.toml:195: pump_works[1].site: \"XC-JS-01\" is a waterlogging site, not a pump station",
        "sites.toml:196: pump_works[1].date: \"2026-04-32\" is not a date (2026-04-10)",
        "teams.toml:180: hq.team: no team \"hqq\" in [[teams]]",
        "teams.toml:208: hq.units[6].duties: say what the unit answers for (职责)",
        "materials.toml:57: items.warning_sign.weight: unknown key",
        "materials.toml:76: depots[1].keeper: who opens the depot (仓库管理员) must be given",
        "materials.toml:84: depots[2].street: unknown street \"xinchen\"",
        "plan.toml:216: cards[5].materials.sandbags: unknown item \"sandbags\" (items of materials.toml: sandbag,",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(errs.iter().count(), 9, "{text}");
}

#[test]
fn environment_overrides_keys_of_the_main_file() {
    let env = HashMap::from([
        ("FLOODGUARD__MQTT__URL".to_string(), "mqtts://broker.example:8884".to_string()),
        ("FLOODGUARD__INFLUXDB__BATCH_SIZE".to_string(), "77".to_string()),
        ("FLOODGUARD__HTTP__API_TOKEN".to_string(), "t0ken-0123456789abcdef0123456789abcdef".to_string()),
        ("FLOODGUARD__SPOOL__FSYNC_INTERVAL".to_string(), "1s".to_string()),
    ]);
    let c = load_with_env(&sample_dir().join("floodguard.toml"), &env).unwrap();
    assert_eq!(c.daemon.mqtt.url, "mqtts://broker.example:8884");
    assert_eq!(c.daemon.influxdb.batch_size, 77);
    assert_eq!(c.daemon.http.api_token.expose(), "t0ken-0123456789abcdef0123456789abcdef");
    assert_eq!(c.daemon.spool.fsync_interval.get(), std::time::Duration::from_secs(1));
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let env = HashMap::from([
        ("FLOODGUARD__INFLUXDB__BATCH_SIZE".to_string(), "lots".to_string()),
        ("FLOODGUARD__MQTT__COLOUR".to_string(), "blue".to_string()),
    ]);
    let errs = load_with_env(&sample_dir().join("floodguard.toml"), &env).unwrap_err();
    let text = errs.to_string();
    assert!(text.contains("environment FLOODGUARD__MQTT__COLOUR: mqtt.colour: unknown key"), "{text}");
    assert!(text.contains("environment FLOODGUARD__INFLUXDB__BATCH_SIZE: influxdb.batch_size"), "{text}");
}

#[test]
fn every_mistake_is_listed_with_file_line_and_key() {
    let dir = broken(&[
        ("floodguard.toml", "timezone = \"Asia/Shanghai\"", "timezone = \"Asia/Shanghia\""),
        ("floodguard.toml", "keep_alive = \"30s\"", "keep_alive = \"30 seconds-ish\""),
        ("floodguard.toml", "gzip = true", "gzip = true\ncompression = \"zstd\""),
        ("sites.toml", "kind = \"rain_gauge\"", "kind = \"rain_bucket\""),
        ("sites.toml", "street = \"binhe\"", "street = \"binhe-south\""),
        (
            "sites.toml",
            "params = { warning_level_m = 3.20, guarantee_level_m = 3.80 }",
            "params = { warning_level_m = 3.20 }",
        ),
        ("sites.toml", "id = \"XC-JS-02\"", "id = \"XC-JS-01\""),
        (
            "sites.toml",
            "location = { lat = 30.6281, lon = 114.2744 }",
            "location = { lat = 130.6281, lon = 114.2744 }\nheight = 3",
        ),
        ("teams.toml", "streets = [\"xincheng\"]", "streets = [\"xinchen\"]"),
        ("teams.toml", "phone = \"13800000302\"", "phone = \"call the office\""),
    ]);
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let lines: Vec<String> = errs
        .iter()
        .map(|e| {
            // Strip the temp dir so the expectation reads well.
            e.to_string().replace(&format!("{}/", dir.path().display()), "")
        })
        .collect();
    let expected = [
        "floodguard.toml:26: mqtt.keep_alive: invalid duration \"30 seconds-ish\"",
        "floodguard.toml:69: influxdb.compression: unknown key",
        "floodguard.toml:12: daemon.timezone: unknown time zone \"Asia/Shanghia\"",
        "sites.toml:54: sites[2].kind: unknown kind \"rain_bucket\" (expected one of: waterlogging, rain_gauge,",
        "sites.toml:170: sites[13].height: unknown key",
        "sites.toml:87: sites[5].street: unknown street \"binhe-south\"",
        "sites.toml:160: sites[12].params: a river site needs guarantee_level_m",
        "sites.toml:169: sites[13].location.lat: 130.6281 is not a latitude",
        "sites.toml:174: sites[14].id: duplicate site id \"XC-JS-01\"",
        "teams.toml:91: teams[2].streets[0]: unknown street \"xinchen\"",
        "teams.toml:104: teams[2].members[1].phone: \"call the office\" is not a phone number",
        // The missing 保证水位 also leaves a threshold of the plan without a value.
        "plan.toml:74: rules[1].thresholds.II: \"guarantee_level_m - 0.20\" at site XC-SW-01: unknown name",
    ];
    for want in expected {
        assert!(lines.iter().any(|l| l.starts_with(want)), "missing {want:?} in\n{}", lines.join("\n"));
    }
    assert_eq!(lines.len(), expected.len(), "{}", lines.join("\n"));
}

#[test]
fn a_missing_file_and_a_syntax_error_are_named() {
    let dir = broken(&[("sites.toml", "[[sites]]\nid = \"CD-JS-01\"", "[[sites]\nid = \"CD-JS-01\"")]);
    std::fs::remove_file(dir.path().join(TEAMS_FILE)).unwrap();
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let text = errs.to_string();
    assert!(text.contains("sites.toml: TOML parse error at line"), "{text}");
    assert!(text.contains("teams.toml: cannot read"), "{text}");
}

#[test]
fn plan_mistakes_are_listed_with_file_line_and_key() {
    let dir = broken(&[
        // An unknown metric in a condition.
        (
            "plan.toml",
            "when = \"forebay_level_m >= flood_control_level_m - 0.80 && pumps_faulted >= 1\"",
            "when = \"forebay_levl_m >= 1.8 && pumps_faulted >= 1\"",
        ),
        // Thresholds not rising with the level.
        (
            "plan.toml",
            "thresholds = { IV = 15, III = 25, II = 35, I = 50 }",
            "thresholds = { IV = 15, III = 25, II = 22, I = 50 }",
        ),
        // A card missing for a level a rule can reach.
        ("plan.toml", "kinds = [\"manhole\"]\nlevel = \"I\"", "kinds = [\"manhole\"]\nlevel = \"II\""),
        // An unknown metric for a kind, and a parameter that is not there.
        ("plan.toml", "metric = \"distance_m\"", "metric = \"distance_cm\""),
        ("plan.toml", "IV = \"pump_start_level_m + 0.20\"", "IV = \"pump_start_m + 0.20\""),
        ("plan.toml", "[area.street]", "[area.street]\nmode = \"max\""),
    ]);
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let lines: Vec<String> =
        errs.iter().map(|e| e.to_string().replace(&format!("{}/", dir.path().display()), "")).collect();
    let text = lines.join("\n");
    for want in [
        "plan.toml:65: rules[0].overrides[0].thresholds: thresholds at CD-JS-02 must rise with the level: III is 25 but II is 22",
        "plan.toml:96: rules[3].thresholds.IV: \"pump_start_m + 0.20\" at site BH-BZ-01: unknown name \"pump_start_m\"",
        "plan.toml:104: rules[4].when: unknown metric \"forebay_levl_m\" in the condition for pump_station sites",
        "plan.toml:122: rules[6].metric: unknown metric \"distance_cm\" for manhole sites",
        "plan.toml:156: area.street.mode: unknown key",
        "plan.toml:296: cards[15]: a second card for manhole at level II",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(lines.len(), 7, "one line per mistake (and per site where the site matters):\n{text}");
}

#[test]
fn a_condition_of_the_wrong_type_is_refused_at_load() {
    // `pump1_running: 1` from a gateway is a flag; a condition comparing a
    // flag with a number would never be true.
    for (when, want) in [
        ("sensor_fault == 1", "compares a flag (true/false) with a number: it would never be true"),
        ("sensor_fault > 0", "`>` needs a number but `sensor_fault` is a flag"),
        ("battery_v", "gives a number, not true/false"),
    ] {
        let dir = broken(&[("plan.toml", "when = \"sensor_fault\"", &format!("when = \"{when}\""))]);
        let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
        let text = errs.to_string();
        assert!(text.contains("rules[8].when: "), "{text}");
        assert!(text.contains(want), "{when}: {text}");
        assert_eq!(errs.iter().count(), 1, "the same mistake at every kind is one: {text}");
    }
}

#[test]
fn a_card_missing_for_a_reachable_level_is_an_error() {
    let dir = broken(&[(
        "plan.toml",
        "[[cards]]\nkinds = [\"rain_gauge\"]\nlevel = \"I\"",
        "[[cards]]\nkinds = [\"park\"]\nlevel = \"I\"",
    )]);
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let text = errs.to_string();
    assert!(text.contains("unknown kind \"park\""), "{text}");
    let dir = broken(&[(
        "plan.toml",
        "[[cards]]\nkinds = [\"rain_gauge\"]\nlevel = \"I\"",
        "[[cards]]\nkinds = [\"rain_gauge\"]\nlevel = \"IV\"",
    )]);
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let text = errs.to_string();
    assert!(
        text.contains("rule \"rainstorm\" can raise rain_gauge sites to level I, but no [[cards]] covers rain_gauge at I"),
        "{text}"
    );
}

#[test]
fn a_district_of_thousands_of_sites_loads_and_names_the_line_of_a_mistake() {
    let dir = broken(&[]);
    let path = dir.path().join(SITES_FILE);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for i in 0..5_000 {
        let kind = if i == 4_321 { "stream" } else { "waterlogging" };
        text.push_str(&format!(
            "\n[[sites]]\nid = \"GEN-{i:04}\"\nname = \"积水点{i}\"\nkind = \"{kind}\"\ncategory = \"road\"\n\
             street = \"chengdong\"\nlocation = {{ lat = 30.6, lon = 114.3 }}\n"
        ));
    }
    std::fs::write(&path, &text).unwrap();
    let mistake_line = 1 + text.lines().position(|l| l == "kind = \"stream\"").unwrap();
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let want = format!("sites.toml:{mistake_line}: sites[{}].kind: unknown kind \"stream\"", 15 + 4_321);
    assert!(lines[0].contains(&want), "{want:?} in {lines:?}");

    std::fs::write(&path, text.replace("kind = \"stream\"", "kind = \"waterlogging\"")).unwrap();
    let c = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap();
    assert_eq!(c.sites.sites.len(), 15 + 5_000);
    assert_eq!(c.sites.sites.last().unwrap().id, "GEN-4999");
}

/// floodguard.toml with the sample's commented `[[modbus.devices]]` block
/// uncommented.
fn with_modbus_sample(text: &str) -> String {
    let start = text.find("# [[modbus.devices]]").expect("the sample Modbus device");
    let end = start + text[start..].find("# ]\n").expect("its end") + 4;
    let block: String =
        text[start..end].lines().map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l))).collect();
    format!("{}{block}{}", &text[..start], &text[end..])
}

fn modbus_config(edits: &[(&str, &str)]) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = broken(&[]);
    let path = dir.path().join("floodguard.toml");
    let mut text = with_modbus_sample(&std::fs::read_to_string(&path).unwrap());
    for (from, to) in edits {
        assert!(text.contains(from), "the sample lacks {from:?}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(&path, text).unwrap();
    let r = load_with_env(&path, &HashMap::new());
    (dir, r)
}

fn error_lines(dir: &tempfile::TempDir, errs: &ConfigErrors) -> Vec<String> {
    errs.iter().map(|e| e.to_string().replace(&format!("{}/", dir.path().display()), "")).collect()
}

#[test]
fn the_sample_modbus_device_loads() {
    let (_dir, c) = modbus_config(&[]);
    let c = c.unwrap();
    let d = &c.daemon.modbus.devices[0];
    assert_eq!(
        (d.id.as_str(), d.address.as_str(), d.unit, d.site.as_str()),
        ("BH-BZ-01-plc", "192.168.10.21:502", 1, "BH-BZ-01")
    );
    assert_eq!((d.interval.get().as_secs(), d.timeout.get().as_secs(), d.max_gap), (10, 3, 16));
    assert_eq!(d.registers.len(), 12);
    let flow = &d.registers[1];
    assert_eq!(
        (flow.table, flow.kind, flow.word_order),
        (RegisterTable::Input, Some(RegisterType::F32), Some(WordOrder::Cdab))
    );
    let status = &d.registers[8];
    assert_eq!(
        (status.metric.as_str(), status.table, status.bit),
        ("pump3_running", RegisterTable::Holding, Some(2))
    );
    // Defaults: unit 1, every 10 s, a 3 s timeout.
    let (_dir, c) =
        modbus_config(&[("unit = 1\n", ""), ("interval = \"10s\"\n", ""), ("timeout = \"3s\"\n", "")]);
    let d = &c.unwrap().daemon.modbus.devices[0];
    assert_eq!((d.unit, d.interval.get().as_secs(), d.timeout.get().as_secs()), (1, 10, 3));
}

/// The plan's upstreams: (id, site ids) of the gateways and intakes.
fn upstreams(c: &Config) -> Vec<(String, Vec<String>)> {
    let id = |i: usize| c.sites.sites[i].id.clone();
    c.plan.upstreams.iter().map(|u| (u.id.to_string(), u.sites.iter().map(|&i| id(i)).collect())).collect()
}

#[test]
fn modbus_sites_are_not_mqtt_ones_and_share_a_gateway_by_address() {
    // One PLC of its own: no gateway (its offline alert says it all), and
    // not behind the MQTT intake — a broker down says nothing about it.
    let (_dir, c) = modbus_config(&[]);
    let c = c.unwrap();
    let ups = upstreams(&c);
    assert!(ups.iter().all(|(id, _)| !id.starts_with("modbus:")), "{ups:?}");
    let (_, mqtt) = ups.iter().find(|(id, _)| id == "mqtt").expect("the MQTT intake");
    assert!(!mqtt.contains(&"BH-BZ-01".to_string()) && mqtt.contains(&"XC-BZ-01".to_string()), "{mqtt:?}");

    // A second unit behind the same address (a serial gateway): one
    // gateway standing for both sites.
    let end = "  { metric = \"pump3_fault\", table = \"discrete\", address = 10 },\n]\n";
    let second = format!(
        "{end}\n[[modbus.devices]]\nid = \"XC-BZ-01-plc\"\naddress = \"192.168.10.21:502\"\nunit = 2\n\
         site = \"XC-BZ-01\"\nregisters = [{{ metric = \"forebay_level_m\", table = \"holding\", address = 0 }}]\n"
    );
    let (_dir, c) = modbus_config(&[(end, &second)]);
    let ups = upstreams(&c.unwrap());
    let gateway = ups.iter().find(|(id, _)| id == "modbus:192.168.10.21:502").expect("the gateway");
    assert_eq!(gateway.1, ["BH-BZ-01", "XC-BZ-01"]);
    let (_, mqtt) = ups.iter().find(|(id, _)| id == "mqtt").unwrap();
    assert!(!mqtt.iter().any(|s| s == "BH-BZ-01" || s == "XC-BZ-01"), "{mqtt:?}");
}

#[test]
fn a_modbus_device_of_an_unknown_site_is_named_with_its_line() {
    let (dir, r) = modbus_config(&[("site = \"BH-BZ-01\"", "site = \"BH-BZ-09\"")]);
    let errs = r.unwrap_err();
    let lines = error_lines(&dir, &errs);
    let text = std::fs::read_to_string(dir.path().join("floodguard.toml")).unwrap();
    let line = 1 + text.lines().position(|l| l == "site = \"BH-BZ-09\"").unwrap();
    assert_eq!(
        lines,
        [format!("floodguard.toml:{line}: modbus.devices[0].site: no site \"BH-BZ-09\" in sites.toml")]
    );
}

#[test]
fn modbus_keys_and_values_serde_refuses_are_named() {
    let (dir, r) = modbus_config(&[
        ("table = \"coil\", address = 0 }", "table = \"coils\", address = 0 }"),
        ("unit = 1\n", "unit = 1\nslave = 3\n"),
        ("type = \"f32\"", "type = \"float\""),
    ]);
    let lines = error_lines(&dir, &r.unwrap_err());
    let text = lines.join("\n");
    for want in [
        "modbus.devices[0].slave: unknown key",
        "modbus.devices[0].registers[6].table: unknown register table \"coils\" (expected one of: holding, input, coil, discrete)",
        "modbus.devices[0].registers[1].type: unknown register type \"float\" (expected one of: u16, i16, u32, i32, f32)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn a_silence_in_teams_toml_that_names_no_kind_or_street_is_an_error() {
    let dir = broken(&[(
        "teams.toml",
        "site = \"XC-BZ-01\"\nstarts_at",
        "kind = \"pumpstation\"\nstreet = \"xinchen\"\nstarts_at",
    )]);
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    let text = errs.to_string();
    assert!(text.contains("silences[0].kind: \"pumpstation\" is not a site kind"), "{text}");
    assert!(text.contains("silences[0].street: no street \"xinchen\""), "{text}");
}

#[test]
fn a_site_of_an_unknown_street_is_an_error_not_a_panic() {
    // Found by tests/fuzz.rs: the plan's assembly indexed the street.
    let dir = broken(&[("sites.toml", "street = \"chengdong\"", "street = \"chengdung\"")]);
    let errs = load_with_env(&dir.path().join("floodguard.toml"), &HashMap::new()).unwrap_err();
    assert!(errs.to_string().contains("chengdung"), "{errs}");
}
