//! Semantic checks of `floodguard.toml`, after its sections deserialized:
//! what serde cannot see (URLs, filters, files that must exist, keys that go
//! together).

use super::daemon::*;

fn valid_metric(name: &str) -> bool {
    crate::reading::is_valid_metric(name)
}

/// Semantic checks of `floodguard.toml`; each problem as `(key path, reason)`.
pub fn validate(c: &DaemonConfig) -> Vec<(String, String)> {
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut err = |k: &str, r: String| errs.push((k.to_string(), r));

    if c.daemon.timezone.parse::<chrono_tz::Tz>().is_err() {
        err("daemon.timezone", format!("unknown time zone {:?} (e.g. \"Asia/Shanghai\")", c.daemon.timezone));
    }
    if c.daemon.data_dir.as_os_str().is_empty() {
        err("daemon.data_dir", "must not be empty".into());
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.log.level) {
        err("log.level", format!("invalid filter {:?}: {e}", c.log.level));
    }

    let m = &c.mqtt;
    let broker = m.broker();
    if let Err(e) = &broker {
        err("mqtt.url", e.clone());
    }
    if m.client_id.trim().is_empty() {
        err("mqtt.client_id", "must not be empty: the persistent session lives under it".into());
    }
    for (key, path) in [
        ("mqtt.ca_file", &m.ca_file),
        ("mqtt.client_cert", &m.client_cert),
        ("mqtt.client_key", &m.client_key),
    ] {
        if let Some(p) = path {
            if !p.is_file() {
                err(key, format!("no such file {}", p.display()));
            }
        }
    }
    if m.client_cert.is_some() != m.client_key.is_some() {
        err("mqtt.client_cert", "give both client_cert and client_key, or neither".into());
    }
    if let Ok(b) = &broker {
        if !b.tls && (m.ca_file.is_some() || m.client_cert.is_some()) {
            err("mqtt.url", "certificates are given but the URL is not mqtts://".into());
        }
    }
    if m.password.is_some() && m.username.is_none() {
        err("mqtt.password", "a password needs mqtt.username".into());
    }
    if m.max_payload == 0 || m.max_payload >= m.max_packet_size {
        err(
            "mqtt.max_payload",
            format!("must be above 0 and below mqtt.max_packet_size ({})", m.max_packet_size),
        );
    }
    if m.reconnect_min > m.reconnect_max || m.reconnect_min.get().is_zero() {
        err("mqtt.reconnect_min", "must be above 0 and at most mqtt.reconnect_max".into());
    }
    if m.receive_maximum == 0 {
        err("mqtt.receive_maximum", "must be at least 1 (1000 lets messages come in large groups)".into());
    }
    if m.keep_alive.get().as_secs() < 5 {
        err("mqtt.keep_alive", "must be at least 5s".into());
    }
    if !m.default_topics && m.mappings.is_empty() {
        err(
            "mqtt.default_topics",
            "with default topics off, at least one [[mqtt.mappings]] is needed".into(),
        );
    }
    for (i, map) in m.mappings.iter().enumerate() {
        let at = |k: &str| format!("mqtt.mappings[{i}].{k}");
        if !rumqttc::valid_filter(&map.filter) {
            err(&at("filter"), format!("{:?} is not a valid MQTT topic filter", map.filter));
        } else {
            let segs: Vec<&str> = map.filter.split('/').collect();
            let hash = segs.iter().position(|s| *s == "#");
            if map.site_segment >= segs.len() && hash.is_none() {
                err(&at("site_segment"), format!("the filter has only {} segments (0-based)", segs.len()));
            } else if hash.is_some_and(|h| map.site_segment > h) {
                err(&at("site_segment"), "the site segment lies past the # wildcard".into());
            }
        }
        match map.payload {
            PayloadFormat::Number => {
                match &map.metric {
                    Some(name) if valid_metric(name) => {}
                    Some(name) => err(&at("metric"), format!("invalid metric name {name:?}")),
                    None => err(&at("metric"), "a number payload needs the metric it is".into()),
                }
                if !map.fields.is_empty() || map.ts_path.is_some() {
                    err(&at("fields"), "fields and ts_path are for payload = \"json\"".into());
                }
                if let Some(s) = map.scale {
                    if !s.is_finite() || s == 0.0 {
                        err(&at("scale"), "must be a finite number other than 0".into());
                    }
                }
            }
            PayloadFormat::Telemetry | PayloadFormat::Status => {
                if map.metric.is_some()
                    || map.scale.is_some()
                    || !map.fields.is_empty()
                    || map.ts_path.is_some()
                {
                    err(
                        &at("payload"),
                        format!(
                            "payload = \"{}\" reads floodguard's own format: metric, scale, fields and \
                             ts_path do not apply",
                            map.payload.as_str()
                        ),
                    );
                }
            }
            PayloadFormat::Json => {
                if map.fields.is_empty() {
                    err(&at("fields"), "a JSON payload needs at least one { path, metric }".into());
                }
                if map.metric.is_some() || map.scale.is_some() {
                    err(&at("metric"), "metric and scale are for payload = \"number\"; use fields".into());
                }
                for (j, f) in map.fields.iter().enumerate() {
                    if f.path.is_empty() {
                        err(&format!("mqtt.mappings[{i}].fields[{j}].path"), "must not be empty".into());
                    }
                    if !valid_metric(&f.metric) {
                        err(
                            &format!("mqtt.mappings[{i}].fields[{j}].metric"),
                            format!("invalid metric name {:?}", f.metric),
                        );
                    }
                    if !f.scale.is_finite() || f.scale == 0.0 {
                        err(
                            &format!("mqtt.mappings[{i}].fields[{j}].scale"),
                            "must be a finite number other than 0".into(),
                        );
                    }
                }
            }
        }
    }

    let x = &c.influxdb;
    if !x.url.is_empty() {
        match reqwest::Url::parse(&x.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => err("influxdb.url", format!("scheme {:?} is not http or https", u.scheme())),
            Err(e) => err("influxdb.url", format!("{:?} is not a URL: {e}", x.url)),
        }
        match x.api {
            InfluxApi::V2 => {
                if x.org.is_empty() {
                    err("influxdb.org", "api = \"v2\" needs an org".into());
                }
                if x.bucket.is_empty() {
                    err("influxdb.bucket", "api = \"v2\" needs a bucket".into());
                }
            }
            InfluxApi::V1 => {
                if x.database.is_empty() {
                    err("influxdb.database", "api = \"v1\" needs a database".into());
                }
            }
        }
    }
    if x.batch_size == 0 {
        err("influxdb.batch_size", "must be at least 1".into());
    }
    if x.retry_min > x.retry_max || x.retry_min.get().is_zero() {
        err("influxdb.retry_min", "must be above 0 and at most influxdb.retry_max".into());
    }
    if x.timeout.get().is_zero() {
        err("influxdb.timeout", "must be above 0".into());
    }
    if c.spool.segment_size < 64 * 1024 {
        err("spool.segment_size", "must be at least 65536 bytes".into());
    }
    let sl = &c.sl651;
    if !sl.listen.trim().is_empty() && sl.listen.parse::<std::net::SocketAddr>().is_err() {
        err("sl651.listen", format!("{:?} is not an address like 0.0.0.0:5001 (empty: off)", sl.listen));
    }
    if !sl.udp_listen.trim().is_empty() && sl.udp_listen.parse::<std::net::SocketAddr>().is_err() {
        err(
            "sl651.udp_listen",
            format!("{:?} is not an address like 0.0.0.0:5001 (empty: off)", sl.udp_listen),
        );
    }
    if sl.idle_timeout.get().is_zero() {
        err("sl651.idle_timeout", "must be more than 0 (RTUs send keep-alives every few minutes)".into());
    }
    if sl.max_connections == 0 {
        err("sl651.max_connections", "must be at least 1".into());
    }
    modbus(&c.modbus, &mut err);
    if c.http.listen.parse::<std::net::SocketAddr>().is_err() {
        err("http.listen", format!("{:?} is not an address like 127.0.0.1:8080", c.http.listen));
    }
    http(&c.http, &mut err);
    // Tokens and signing secrets: off while empty, but never short or a
    // shipped example (whoever reads the examples would know them).
    let ack = &c.channels.ack;
    for (key, secret) in [
        ("http.api_token", &c.http.api_token),
        ("http.read_token", &c.http.read_token),
        ("http.metrics_token", &c.http.metrics_token),
        ("http.ingest_token", &c.http.ingest_token),
        ("channels.ack.secret", &ack.secret),
    ] {
        if !secret.is_empty() {
            if let Some(p) = super::values::secret_problem(secret) {
                err(key, p);
            }
        }
    }
    if !ack.base_url.trim().is_empty() {
        match reqwest::Url::parse(&ack.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => err(
                "channels.ack.base_url",
                format!(
                    "{:?} is not a URL like https://flood.example.gov.cn (empty: no ack links)",
                    ack.base_url
                ),
            ),
        }
        if ack.secret.is_empty() {
            err(
                "channels.ack.secret",
                "ack links (channels.ack.base_url) need a signing secret: set \
                 FLOODGUARD__CHANNELS__ACK__SECRET (`floodguard gen-secret` makes one)"
                    .into(),
            );
        }
    }
    if ack.ttl.get().is_zero() || ack.ttl > MAX_ACK_TTL {
        err("channels.ack.ttl", format!("must be above 0 and at most {MAX_ACK_TTL}"));
    }
    if c.state.retention.get() < std::time::Duration::from_secs(24 * 3600) {
        err("state.retention", "must be at least 1d (the report needs the season's alerts)".into());
    }
    for (key, reason) in state_and_cluster(&c.state, &c.cluster) {
        err(&key, reason);
    }
    if c.spool.max_bytes.is_some_and(|m| m != 0 && m < 4 * c.spool.segment_size) {
        err(
            "spool.max_bytes",
            format!("must be at least 4 × spool.segment_size ({}), or unset", 4 * c.spool.segment_size),
        );
    }
    if let Some(sms) = &c.channels.sms {
        match sms.provider {
            SmsProvider::Http => {
                if sms.url.is_none() {
                    err("channels.sms.url", "provider = \"http\" needs a url".into());
                }
                if sms.fields.is_empty() {
                    err("channels.sms.fields", "provider = \"http\" needs body fields, e.g. { mobile = \"{phone}\", content = \"{text}\" }".into());
                }
            }
            SmsProvider::Log => {}
            SmsProvider::Aliyun | SmsProvider::Tencent => {
                for (key, present) in [
                    ("key_id", sms.key_id.is_some()),
                    ("key_secret", sms.key_secret.is_some()),
                    ("sign_name", sms.sign_name.is_some()),
                    ("template", sms.template.is_some()),
                ] {
                    if !present {
                        err(
                            &format!("channels.sms.{key}"),
                            format!("provider = \"{}\" needs {key}", sms.provider),
                        );
                    }
                }
                if sms.provider == SmsProvider::Tencent && sms.app_id.is_none() {
                    err("channels.sms.app_id", "provider = \"tencent\" needs app_id (SmsSdkAppId)".into());
                }
                for (i, k) in sms.template_params.iter().enumerate() {
                    if !["street", "site", "level", "value", "action"].contains(&k.as_str()) {
                        err(
                            &format!("channels.sms.template_params[{i}]"),
                            format!("unknown parameter {k:?}: use street, site, level, value, action"),
                        );
                    }
                }
            }
        }
    }
    if let Some(e) = &c.channels.email {
        if !(e.smtp_url.starts_with("smtp://") || e.smtp_url.starts_with("smtps://")) {
            err("channels.email.smtp_url", format!("{:?} is not smtp:// or smtps://", e.smtp_url));
        }
        if let Some(p) = &e.ca_file {
            if !p.is_file() {
                err("channels.email.ca_file", format!("no such file {}", p.display()));
            }
        }
        let url = reqwest::Url::parse(&e.smtp_url).ok();
        let tls_mode =
            url.as_ref().and_then(|u| u.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.to_string()));
        let encrypted = e.smtp_url.starts_with("smtps://") || tls_mode.as_deref() == Some("required");
        let credentials = e.password.is_some()
            || e.username.is_some()
            || url.as_ref().is_some_and(|u| !u.username().is_empty() || u.password().is_some());
        if credentials && !encrypted && !e.allow_insecure_auth {
            err(
                "channels.email.smtp_url",
                "credentials would cross the network unencrypted: use smtps:// or ?tls=required, \
                 or set allow_insecure_auth = true for a relay on this host"
                    .into(),
            );
        }
        if !e.from.contains('@') {
            err(
                "channels.email.from",
                format!("{:?} is not an address like 某区防汛指挥部 <flood@example.gov.cn>", e.from),
            );
        }
    }
    if c.channels.retry.min > c.channels.retry.max {
        err("channels.retry.min", "must be at most channels.retry.max".into());
    }
    super::channels_check::channels(&c.channels, &mut err);
    errs
}

/// `[http]` limits and host names.
fn http(h: &HttpSection, err: &mut impl FnMut(&str, String)) {
    for (i, host) in h.hosts.iter().enumerate() {
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !ok {
            err(
                &format!("http.hosts[{i}]"),
                format!("{host:?} is not a host name like flood.example.gov.cn"),
            );
        }
    }
    for (key, d) in
        [("http.header_read_timeout", h.header_read_timeout), ("http.request_timeout", h.request_timeout)]
    {
        if d.get().is_zero() {
            err(key, "must be above 0".into());
        }
    }
    for (key, n) in [("http.max_connections", h.max_connections), ("http.max_sse_clients", h.max_sse_clients)]
    {
        if n == 0 {
            err(key, "must be at least 1".into());
        }
    }
    if h.rate_limit > 0 && h.rate_burst == 0 {
        err("http.rate_burst", "must be at least 1 while http.rate_limit is on".into());
    }
}

/// Is `s` a `host:port` (a name, an IPv4 address or a bracketed IPv6 one)?
fn host_port(s: &str) -> bool {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok()
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
        None => false,
    }
}

/// `[[modbus.devices]]` and their register maps.
fn modbus(m: &ModbusSection, err: &mut impl FnMut(&str, String)) {
    let mut ids: Vec<&str> = Vec::new();
    for (i, d) in m.devices.iter().enumerate() {
        let at = |k: &str| format!("modbus.devices[{i}].{k}");
        if !super::sites::is_valid_id(&d.id) {
            err(&at("id"), format!("{:?}: use 1–64 letters, digits, '-', '_' or '.'", d.id));
        } else if ids.contains(&d.id.as_str()) {
            err(&at("id"), format!("{:?} names another device too", d.id));
        }
        ids.push(&d.id);
        if !host_port(&d.address) {
            err(&at("address"), format!("{:?} is not host:port like 192.168.10.21:502", d.address));
        }
        if d.interval.get().is_zero() {
            err(&at("interval"), "must be more than 0".into());
        }
        if d.timeout.get().is_zero() {
            err(&at("timeout"), "must be more than 0".into());
        }
        if d.registers.is_empty() {
            err(&at("registers"), "a device needs at least one { metric, table, address }".into());
        }
        for (j, r) in d.registers.iter().enumerate() {
            let at = |k: &str| format!("modbus.devices[{i}].registers[{j}].{k}");
            if !valid_metric(&r.metric) {
                err(&at("metric"), format!("invalid metric name {:?}", r.metric));
            } else if let Some(k) = d.registers[..j].iter().position(|o| o.metric == r.metric) {
                err(&at("metric"), format!("{:?} is read by registers[{k}] already", r.metric));
            }
            let flag = r.table.is_bits() || r.bit.is_some();
            if r.table.is_bits() {
                let what = "coils and discrete inputs are bits (flags)";
                if r.kind.is_some() {
                    err(&at("type"), format!("{what}: type is for holding and input registers"));
                }
                if r.bit.is_some() {
                    err(&at("bit"), format!("{what}: bit is for a bit of a register"));
                }
            }
            let kind = r.kind.unwrap_or_default();
            if r.word_order.is_some() && (r.table.is_bits() || kind.width() != 2) {
                err(&at("word_order"), "is for the 32-bit types (u32, i32, f32)".into());
            }
            if let Some(b) = r.bit {
                if b > 15 {
                    err(&at("bit"), format!("{b}: a register has bits 0–15"));
                } else if kind.width() != 1 {
                    err(&at("bit"), format!("a bit is of one 16-bit register, not of type = \"{kind}\""));
                }
            }
            if flag {
                for (key, given) in [("scale", r.scale.is_some()), ("offset", r.offset.is_some())] {
                    if given {
                        err(&at(key), "a flag (coil, discrete input, bit) has no scale or offset".into());
                    }
                }
            } else {
                if r.scale.is_some_and(|s| !s.is_finite() || s == 0.0) {
                    err(&at("scale"), "must be a finite number other than 0".into());
                }
                if r.offset.is_some_and(|o| !o.is_finite()) {
                    err(&at("offset"), "must be a finite number".into());
                }
            }
            let width = if r.table.is_bits() { 1 } else { kind.width() };
            if u32::from(r.address) + u32::from(width) > 65_536 {
                err(&at("address"), format!("{} + {width} registers runs past 65535", r.address));
            }
        }
    }
}

/// `[state]` and `[cluster]`: the backend's URL and the lease.
fn state_and_cluster(state: &StateSection, cluster: &ClusterSection) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let mut err = |k: &str, r: &str| errs.push((k.to_string(), r.to_string()));
    match state.backend {
        StateBackend::Sqlite => {
            if !state.url.trim().is_empty() {
                err("state.url", "is for backend = \"postgres\" (the SQLite state is data_dir/state.db)");
            }
        }
        StateBackend::Postgres => match state.url.trim() {
            "" => err(
                "state.url",
                "backend = \"postgres\" needs a url: postgres://user@host:5432/db (env FLOODGUARD__STATE__URL)",
            ),
            url if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
                err("state.url", "must start with postgres:// or postgresql://")
            }
            url => match url.parse::<tokio_postgres::Config>() {
                Err(e) => err("state.url", &format!("not a PostgreSQL URL: {e}")),
                Ok(p) if p.get_password().is_some() => err(
                    "state.url",
                    "put the password in state.password (FLOODGUARD__STATE__PASSWORD or { file = \"…\" }), not in the URL",
                ),
                Ok(p) if p.get_user().is_none() => err("state.url", "name the database user: postgres://user@host/db"),
                Ok(p) if p.get_dbname().is_none() => err("state.url", "name the database: postgres://user@host/db"),
                Ok(_) => {}
            },
        },
    }
    if state.backend == StateBackend::Sqlite && state.password.is_some() {
        err("state.password", "is for backend = \"postgres\"");
    }
    let id = cluster.node_id.trim();
    if id.len() > 63 || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')) {
        err("cluster.node_id", "at most 63 letters, digits, '-', '_' or '.' (empty: the host name)");
    }
    let lease = cluster.lease.get();
    if lease < std::time::Duration::from_secs(3) || lease > std::time::Duration::from_secs(300) {
        err(
            "cluster.lease",
            "must be from 3s to 5m (renewed every third of it; a standby takes over once it lapses)",
        );
    }
    errs
}

#[cfg(test)]
#[path = "daemon_check_tests.rs"]
mod tests;
