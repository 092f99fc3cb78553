//! Tests of the semantic checks of `floodguard.toml`, by section.

use super::*;

mod basics {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = |url: &str| MqttSection { url: url.into(), ..Default::default() }.broker();
        assert_eq!(
            b("mqtt://127.0.0.1:1883").unwrap(),
            BrokerAddr { host: "127.0.0.1".into(), port: 1883, tls: false }
        );
        assert_eq!(
            b("mqtts://broker.example").unwrap(),
            BrokerAddr { host: "broker.example".into(), port: 8883, tls: true }
        );
        assert_eq!(
            b("mqtt://[::1]:1884").unwrap(),
            BrokerAddr { host: "::1".into(), port: 1884, tls: false }
        );
        assert!(b("http://x:1").unwrap_err().contains("scheme"));
        assert!(b("mqtt://u:p@x:1").unwrap_err().contains("credentials"));
        assert!(b("127.0.0.1:1883").is_err());
        assert!(b("mqtt://x:port").unwrap_err().contains("port"));
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&DaemonConfig::default()), Vec::<(String, String)>::new());
    }

    #[test]
    fn every_mistake_is_reported() {
        let mut c = DaemonConfig::default();
        c.daemon.timezone = "Mars/Olympus".into();
        c.mqtt.url = "mqtt://x:99999".into();
        c.mqtt.mappings.push(MappingConfig {
            filter: "a/#/b".into(),
            site_segment: 0,
            payload: PayloadFormat::Number,
            metric: None,
            scale: Some(0.0),
            fields: vec![],
            ts_path: None,
        });
        c.influxdb.api = InfluxApi::V1;
        c.influxdb.database.clear();
        c.http.listen = "localhost".into();
        let keys: Vec<String> = validate(&c).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "daemon.timezone",
                "mqtt.url",
                "mqtt.mappings[0].filter",
                "mqtt.mappings[0].metric",
                "mqtt.mappings[0].scale",
                "influxdb.database",
                "http.listen"
            ]
        );
    }
}

mod hardening_tests {
    use super::*;
    use crate::config::{HumanDuration, Secret};

    fn keys(c: &DaemonConfig) -> Vec<String> {
        validate(c).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn tokens_must_be_long_and_not_an_example() {
        let mut c = DaemonConfig::default();
        c.http.api_token = Secret::new("change-me-long-random");
        c.http.read_token = Secret::new("short");
        c.http.ingest_token = Secret::new("x".repeat(40));
        c.channels.ack.secret = Secret::new("change-me-64-hex-chars");
        let errs = validate(&c);
        let text = format!("{errs:?}");
        assert_eq!(keys(&c), ["http.api_token", "http.read_token", "channels.ack.secret"], "{text}");
        assert!(!text.contains("change-me"), "the errors never repeat a secret: {text}");
    }

    #[test]
    fn ack_links_need_a_secret_and_a_bounded_ttl() {
        let mut c = DaemonConfig::default();
        assert_eq!(keys(&c), Vec::<String>::new(), "no base_url: no links, no secret needed");
        c.channels.ack.base_url = "https://flood.example.gov.cn".into();
        assert_eq!(keys(&c), ["channels.ack.secret"]);
        c.channels.ack.secret = Secret::new(crate::config::generate_secret());
        assert_eq!(keys(&c), Vec::<String>::new());
        c.channels.ack.ttl = HumanDuration::secs(u64::MAX / 4);
        assert_eq!(keys(&c), ["channels.ack.ttl"], "a huge ttl would overflow the expiry");
        c.channels.ack.ttl = HumanDuration::secs(0);
        assert_eq!(keys(&c), ["channels.ack.ttl"]);
        c.channels.ack.ttl = HumanDuration::secs(3600);
        c.channels.ack.base_url = "flood.example.gov.cn".into();
        assert_eq!(keys(&c), ["channels.ack.base_url"]);
    }

    #[test]
    fn smtp_credentials_only_over_tls_unless_allowed() {
        let mut c = DaemonConfig::default();
        let email = |url: &str, pw: bool, allow: bool| EmailChannel {
            smtp_url: url.into(),
            from: "x <flood@example.gov.cn>".into(),
            username: pw.then(|| "flood".to_string()),
            password: pw.then(|| Secret::new("pw")),
            ca_file: None,
            allow_insecure_auth: allow,
        };
        for (url, pw, allow, bad) in [
            ("smtp://127.0.0.1:25", false, false, false),
            ("smtp://mail:25", true, false, true),
            ("smtp://mail:587?tls=opportunistic", true, false, true),
            ("smtp://mail:587?tls=required", true, false, false),
            ("smtps://mail:465", true, false, false),
            ("smtp://127.0.0.1:25", true, true, false),
            ("smtp://user:pw@mail:25", false, false, true),
        ] {
            c.channels.email = Some(email(url, pw, allow));
            assert_eq!(keys(&c).contains(&"channels.email.smtp_url".to_string()), bad, "{url} {pw} {allow}");
        }
    }

    #[test]
    fn http_limits_and_hosts_are_checked() {
        let mut c = DaemonConfig::default();
        c.http.hosts = vec!["flood.example.gov.cn".into(), "bad host".into()];
        c.http.header_read_timeout = HumanDuration::secs(0);
        c.http.max_sse_clients = 0;
        c.http.rate_burst = 0;
        c.state.retention = HumanDuration::secs(3600);
        c.spool.max_bytes = Some(1000);
        assert_eq!(
            keys(&c),
            [
                "http.hosts[1]",
                "http.header_read_timeout",
                "http.max_sse_clients",
                "http.rate_burst",
                "state.retention",
                "spool.max_bytes"
            ]
        );
    }
}

mod modbus_tests {
    use super::*;
    use crate::config::HumanDuration;

    fn reg(metric: &str, table: RegisterTable, address: u16) -> ModbusRegister {
        ModbusRegister::plain(metric, table, address)
    }

    fn device(id: &str, registers: Vec<ModbusRegister>) -> ModbusDevice {
        ModbusDevice {
            id: id.into(),
            address: "127.0.0.1:502".into(),
            unit: 1,
            interval: HumanDuration::secs(10),
            timeout: HumanDuration::secs(3),
            site: "BH-BZ-01".into(),
            max_gap: 16,
            registers,
        }
    }

    fn check(devices: Vec<ModbusDevice>) -> Vec<(String, String)> {
        let c = DaemonConfig { modbus: ModbusSection { devices }, ..Default::default() };
        validate(&c)
    }

    #[test]
    fn a_good_map_passes() {
        use RegisterTable::*;
        let regs = vec![
            ModbusRegister { scale: Some(0.01), ..reg("forebay_level_m", Holding, 0) },
            ModbusRegister {
                kind: Some(RegisterType::F32),
                word_order: Some(WordOrder::Cdab),
                ..reg("flow_m3s", Input, 0)
            },
            ModbusRegister { kind: Some(RegisterType::I32), offset: Some(-5.0), ..reg("x", Input, 65534) },
            ModbusRegister { bit: Some(15), ..reg("pump3_running", Holding, 10) },
            reg("pump1_running", Coil, 0),
            reg("pump1_fault", Discrete, 8),
        ];
        let mut other = device("XC-BZ-01-plc", vec![reg("pump1_running", Coil, 0)]);
        other.address = "plc-xc.local:1502".into();
        assert_eq!(check(vec![device("BH-BZ-01-plc", regs), other]), vec![]);
    }

    #[test]
    fn every_mistake_has_its_key_path() {
        use RegisterTable::*;
        let regs = vec![
            reg("_value", Holding, 0),
            ModbusRegister { kind: Some(RegisterType::U16), ..reg("a", Coil, 0) },
            ModbusRegister { kind: Some(RegisterType::F32), bit: Some(1), ..reg("b", Holding, 2) },
            ModbusRegister { word_order: Some(WordOrder::Cdab), ..reg("c", Input, 4) },
            ModbusRegister { bit: Some(16), ..reg("d", Holding, 5) },
            reg("d", Holding, 6),
            ModbusRegister { scale: Some(0.0), ..reg("e", Input, 7) },
            ModbusRegister { bit: Some(0), scale: Some(2.0), ..reg("f", Holding, 8) },
            ModbusRegister { kind: Some(RegisterType::U32), ..reg("g", Holding, 65535) },
            ModbusRegister { bit: Some(3), ..reg("h", Discrete, 1) },
            ModbusRegister { offset: Some(1.0), ..reg("i", Coil, 2) },
        ];
        let mut second = device("BH-BZ-01-plc", vec![]);
        second.address = "192.168.10.21".into();
        second.interval = HumanDuration::secs(0);
        second.timeout = HumanDuration::millis(0);
        let mut third = device("bad id", vec![reg("x", Coil, 0)]);
        third.address = "host:port".into();
        let keys: Vec<(String, String)> = check(vec![device("BH-BZ-01-plc", regs), second, third]);
        let text = keys.iter().map(|(k, r)| format!("{k}: {r}")).collect::<Vec<_>>().join("\n");
        let at = |d: usize, k: &str| format!("modbus.devices[{d}].{k}");
        let r = |j: usize, k: &str| format!("modbus.devices[0].registers[{j}].{k}");
        assert_eq!(
            keys.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            [
                r(0, "metric"),
                r(1, "type"),
                r(2, "bit"),
                r(3, "word_order"),
                r(4, "bit"),
                r(5, "metric"),
                r(6, "scale"),
                r(7, "scale"),
                r(8, "address"),
                r(9, "bit"),
                r(10, "offset"),
                at(1, "id"),
                at(1, "address"),
                at(1, "interval"),
                at(1, "timeout"),
                at(1, "registers"),
                at(2, "id"),
                at(2, "address"),
            ],
            "{text}"
        );
        for want in [
            "registers[2].bit: a bit is of one 16-bit register, not of type = \"f32\"",
            "registers[5].metric: \"d\" is read by registers[4] already",
            "registers[8].address: 65535 + 2 registers runs past 65535",
            "devices[1].id: \"BH-BZ-01-plc\" names another device too",
            "devices[1].address: \"192.168.10.21\" is not host:port",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}

mod cluster_tests {
    use super::*;
    use crate::config::{HumanDuration, Secret};

    fn keys(c: &DaemonConfig) -> Vec<String> {
        validate(c).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn postgres_needs_a_url_without_a_password_and_the_lease_is_bounded() {
        let mut c = DaemonConfig::default();
        assert_eq!(keys(&c), Vec::<String>::new(), "the SQLite default needs nothing");
        c.state.url = "postgres://flood@db/flood".into();
        assert_eq!(keys(&c), ["state.url"], "a url is for the postgres backend");
        c.state.backend = StateBackend::Postgres;
        assert_eq!(keys(&c), Vec::<String>::new());
        for (url, why) in [
            ("", "needs a url"),
            ("mysql://flood@db/flood", "postgres://"),
            ("postgres://flood:hunter2@db/flood", "state.password"),
            ("postgres://db/flood", "user"),
            ("postgres://flood@db", "database"),
            ("postgres://flood@db:notaport/flood", "not a PostgreSQL URL"),
        ] {
            c.state.url = url.into();
            let errs = validate(&c);
            assert_eq!(errs.len(), 1, "{url}: {errs:?}");
            assert_eq!(errs[0].0, "state.url");
            assert!(errs[0].1.contains(why), "{url}: {}", errs[0].1);
            assert!(!errs[0].1.contains("hunter2"), "the error never repeats a password");
        }
        c.state.url = "postgresql://flood@127.0.0.1:5432/flood".into();
        c.state.password = Some(Secret::new("pw"));
        assert_eq!(keys(&c), Vec::<String>::new());
        c.cluster.lease = HumanDuration::secs(1);
        c.cluster.node_id = "node a".into();
        assert_eq!(keys(&c), ["cluster.node_id", "cluster.lease"]);
        c.cluster.lease = HumanDuration::secs(10);
        c.cluster.node_id = "fg-a.district-1".into();
        assert_eq!(keys(&c), Vec::<String>::new());
        assert_eq!(c.cluster.node(), "fg-a.district-1");
        c.cluster.node_id = String::new();
        assert!(!c.cluster.node().is_empty(), "the host name by default");
    }
}
