//! Hardening for a government network, on the real daemon: no key or phone
//! number in a log line, `/metrics`, `/api/v1/outbox` or `check-config`
//! output of a run whose providers fail; reads that need the read token;
//! slow and idle connections that do not stop `/healthz`; a full disk that
//! delays and loses nothing (on a small tmpfs made by the test, as root).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use serde_json::Value;

use crate::support::floodguard::{sample_config_dir, Floodguard, Options, BIN};
use crate::support::influx::Influx;
use crate::support::mosquitto::Mosquitto;
use crate::support::peer::Peer;
use crate::support::publish::{base_ms, Publisher};
use crate::support::{tempdir, wait_for};

const API: &str = "hardening-api-token-0123456789abcdef0123";
const READ: &str = "hardening-read-token-0123456789abcdef012";
const METRICS: &str = "hardening-metrics-token-0123456789abcdef";
const INGEST: &str = "hardening-ingest-token-0123456789abcdef0";
const ACK: &str = "hardening-ack-secret-0123456789abcdef01234";
const GATEWAY_KEY: &str = "gw-apikey-5f1c9a7e3d";
const GATEWAY_PASS: &str = "gw-pass-8b2d4e6f";
const HEADER_KEY: &str = "sms-header-key-7c3a9e1b5d";
const WECOM_KEY: &str = "wecom-key-693b2f1c-4d8e-4a7b-9c0d-2e5f8a1b3c7d";
const DINGTALK_TOKEN: &str = "dingtalk-token-a1b2c3d4e5f60718293a4b5c";
const DINGTALK_SIGN: &str = "SECdingtalk-sign-0f1e2d3c4b5a69788796a5b4";
const SMTP_PASS: &str = "smtp-pass-4e5d6c7b8a";
const INFLUX_PASS: &str = "influx-pass-1a2b3c4d5e";

async fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    match req.send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// A provider that fails and quotes the request back in its error, as some
/// gateways do ("invalid mobile 1380000…"): what floodguard stores of it
/// must still hold no key and no phone number.
async fn quoting_provider() -> std::net::SocketAddr {
    async fn answer(uri: Uri, body: Bytes) -> (StatusCode, String) {
        (StatusCode::SERVICE_UNAVAILABLE, format!("refused {uri}: {}", String::from_utf8_lossy(&body)))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(answer);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Every phone number of the sample teams.
fn phones() -> Vec<String> {
    let text = std::fs::read_to_string(sample_config_dir().join("teams.toml")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("phone = \""))
        .map(|p| p.trim_end_matches('"').to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_phone_number_leaves_through_logs_metrics_the_outbox_or_check_config() {
    let broker = Mosquitto::start();
    let provider = quoting_provider().await;
    let closed = crate::support::free_port(); // nobody listens: connection refused, with the URL
    let sms_url = format!("http://gwuser:{GATEWAY_PASS}@{provider}/sms?apikey={GATEWAY_KEY}");
    let channels = format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{sms_url}\"\nformat = \"json\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\" }}\nheaders = {{ X-Api-Key = \"{HEADER_KEY}\" }}\n\
         min_interval = \"0s\"\n\n\
         [channels.email]\nsmtp_url = \"smtps://127.0.0.1:{closed}\"\nfrom = \"某区防汛指挥部 <flood@example.gov.cn>\"\n\
         username = \"flood\"\npassword = \"{SMTP_PASS}\"\n\n\
         [channels.ack]\nbase_url = \"https://flood.example.gov.cn\"\nsecret = \"{ACK}\"\n\n\
         [channels.retry]\nmin = \"300ms\"\nmax = \"1s\"\ngive_up_after = \"10m\"\n"
    );
    let teams = std::fs::read_to_string(sample_config_dir().join("teams.toml")).unwrap();
    let team2 = teams.find("[[teams]]\nid = \"team2\"").unwrap();
    let robots = format!(
        "[[teams.robots]]\nkind = \"wecom\"\nurl = \"http://127.0.0.1:{closed}/cgi-bin/webhook/send?key={WECOM_KEY}\"\n\n\
         [[teams.robots]]\nkind = \"dingtalk\"\nurl = \"http://{provider}/robot/send?access_token={DINGTALK_TOKEN}\"\n\
         secret = \"{DINGTALK_SIGN}\"\n\n"
    );
    let teams = format!("{}{robots}{}", &teams[..team2], &teams[team2..]);
    let mut o = Options::new(broker.url());
    o.channels = channels;
    o.teams_toml = Some(teams);
    o.http_extra = format!(
        "api_token = \"{API}\"\nread_token = \"{READ}\"\nmetrics_token = \"{METRICS}\"\ningest_token = \"{INGEST}\"\n"
    );
    o.influx_extra = format!("username = \"flood\"\npassword = \"{INFLUX_PASS}\"\n");
    let mut fg = Floodguard::start(o);
    wait_for("the daemon answering", Duration::from_secs(30), || async {
        (get(&fg.url("/metrics"), Some(METRICS)).await.0 == 200).then_some(())
    })
    .await;

    // A crossing at CD-JS-01: team1 (and the district duty officer) are told
    // by SMS, e-mail and robots — every one of which fails.
    let p = Publisher::connect(&broker.url(), "pub-hardening");
    for _ in 0..2 {
        p.send("flood/CD-JS-01/telemetry", br#"{"water_depth_cm":22}"#.to_vec()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sample teams hold a Ⅲ notice for its 30 s group window first, so
    // the first attempts come after about 31 s: room for a loaded machine.
    let outbox = wait_for("failed attempts on every channel", Duration::from_secs(90), || async {
        let (code, body) = get(&fg.url("/api/v1/outbox?limit=200"), Some(API)).await;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let tried = |ch: &str| {
            v["messages"].as_array().unwrap().iter().any(|m| m["channel"] == ch && !m["error"].is_null())
        };
        ["sms", "email", "wecom", "dingtalk"].iter().all(|c| tried(c)).then_some(body)
    })
    .await;
    // A few more rounds of retries, and a reload, so the log has them.
    fg.signal("HUP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, metrics) = get(&fg.url("/metrics"), Some(METRICS)).await;
    assert_eq!(code, 200);
    let (_, outbox_again) = get(&fg.url("/api/v1/outbox?limit=200"), Some(API)).await;
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
    let log = fg.log();

    // check-config of the same files, with a secret from the environment
    // and a broken URL carrying a password.
    let check = |env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .args(["check-config", "-c"])
            .arg(fg.config_path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let check_ok = check(&[]);
    assert!(check_ok.contains("CD-JS-01"), "check-config describes the plan:\n{check_ok}");
    let check_bad =
        check(&[("FLOODGUARD__INFLUXDB__URL", &format!("http://flood:{INFLUX_PASS}@influx local:8086"))]);
    assert!(check_bad.contains("influxdb.url"), "{check_bad}");

    // The errors are there, only redacted.
    assert!(outbox.contains("refused"), "the provider's error is kept: {outbox}");
    assert!(log.contains("delivery delayed"), "retries are logged");
    let places = [
        ("the log", &log),
        ("/metrics", &metrics),
        ("/api/v1/outbox", &outbox),
        ("/api/v1/outbox later", &outbox_again),
        ("check-config", &check_ok),
        ("check-config with an error", &check_bad),
    ];
    let mut secrets = vec![
        API,
        READ,
        METRICS,
        INGEST,
        ACK,
        GATEWAY_KEY,
        GATEWAY_PASS,
        HEADER_KEY,
        WECOM_KEY,
        DINGTALK_TOKEN,
        DINGTALK_SIGN,
        SMTP_PASS,
        INFLUX_PASS,
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    let phones = phones();
    assert!(phones.len() >= 10, "{phones:?}");
    secrets.extend(phones.iter().cloned());
    let mut found = Vec::new();
    for (where_, text) in places {
        for s in &secrets {
            if text.contains(s.as_str()) {
                let at = text.find(s.as_str()).unwrap();
                let line = text[..at].rsplit('\n').next().unwrap_or("").to_string()
                    + &text[at..].lines().next().unwrap_or("")[..s.len()];
                found.push(format!("{s} in {where_}: …{}", &line[line.len().saturating_sub(160)..]));
            }
        }
    }
    assert!(found.is_empty(), "leaked:\n{}", found.join("\n"));
    // Masked phone numbers do show where a person needs them (the log of a send).
    assert!(outbox.contains("apikey=***"), "the gateway's key is masked where its error is stored: {outbox}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_sms_provider_masks_phone_numbers_and_ack_links() {
    let broker = Mosquitto::start();
    let mut o = Options::new(broker.url());
    o.channels = format!(
        "[channels.sms]\nprovider = \"log\"\nmin_interval = \"0s\"\n\n\
         [channels.ack]\nbase_url = \"https://flood.example.gov.cn\"\nsecret = \"{ACK}\"\n"
    );
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-logsms");
    for _ in 0..2 {
        // Ⅱ: told at once (the sample's group_wait for Ⅱ is 0 s).
        p.send("flood/CD-JS-01/telemetry", br#"{"water_depth_cm":30}"#.to_vec()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = wait_for("an SMS written to the log", Duration::from_secs(30), || async {
        fg.log().lines().find(|l| l.contains("provider \"log\"") && l.contains("0101")).map(str::to_string)
    })
    .await;
    assert!(line.contains("138****0101"), "{line}");
    assert!(line.contains("/ack/***"), "the link's token is not in the log: {line}");
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
    let log = fg.log();
    for phone in phones() {
        assert!(!log.contains(&phone), "{phone} in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_read_token_every_read_answers_401_without_it() {
    let broker = Mosquitto::start();
    let mut o = Options::new(broker.url());
    o.http_extra = format!("api_token = \"{API}\"\nread_token = \"{READ}\"\n");
    let mut fg = Floodguard::start(o);
    wait_for("the daemon answering", Duration::from_secs(30), || async {
        (get(&fg.url("/healthz"), None).await.0 == 200).then_some(())
    })
    .await;
    let reads = [
        "/api/v1/sites",
        "/api/v1/sites/CD-JS-01",
        "/api/v1/sites/CD-JS-01/series?metric=water_depth_cm",
        "/api/v1/alerts",
        "/api/v1/alerts?state=all",
        "/api/v1/alerts/1",
        "/api/v1/silences",
        "/api/v1/notifications",
        "/api/v1/outbox",
        "/api/v1/events",
        "/metrics",
    ];
    for path in reads {
        assert_eq!(get(&fg.url(path), None).await.0, 401, "{path} without a token");
        assert_eq!(get(&fg.url(path), Some("wrong-token")).await.0, 401, "{path} with a wrong one");
    }
    for path in ["/api/v1/sites", "/api/v1/alerts", "/metrics"] {
        assert_eq!(get(&fg.url(path), Some(READ)).await.0, 200, "{path} with the read token");
    }
    // The page's cookie, as the browser sends it (the event stream too).
    let r = reqwest::Client::new()
        .get(fg.url("/api/v1/sites"))
        .header("cookie", format!("fg_read={READ}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&fg.url("/healthz"), None).await.0, 200, "liveness stays open");
    let (code, _) = get(&fg.url("/readyz"), None).await;
    assert!(code == 200 || code == 503, "readiness stays open: {code}");
    let (code, page) = get(&fg.url("/"), None).await;
    assert_eq!(code, 200, "the page itself is open: it asks for the token");
    assert!(page.contains("read-dialog"));
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
}

/// A connection that sent part of a request's headers and then nothing.
fn slow_connection(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /api/v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
    s
}

/// `/healthz` over a fresh connection: the status line and how long it took.
fn healthz(port: u16) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (out.lines().next().unwrap_or("").to_string(), t.elapsed())
}

/// Whether the server closed `s` (EOF or reset, after whatever it said last).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..4 {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 before the close
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_or_slow_connections_do_not_stop_healthz() {
    let broker = Mosquitto::start();
    let mut o = Options::new(broker.url());
    o.http_extra = "header_read_timeout = \"3s\"\nmax_connections = 300\n".into();
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    let port = fg.http_port;
    // 100 idle (connected, nothing sent) and 100 slow (half a header).
    let mut held: Vec<TcpStream> =
        (0..100).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    held.extend((0..100).map(|_| slow_connection(port)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut times = Vec::new();
    for _ in 0..20 {
        let (status, took) = tokio::task::spawn_blocking(move || healthz(port)).await.unwrap();
        assert!(status.contains("200"), "{status}");
        times.push(took);
    }
    times.sort();
    let (median, worst) = (times[times.len() / 2], times[times.len() - 1]);
    println!("/healthz beside 200 idle or slow connections: median {median:?}, worst {worst:?} of 20");
    assert!(worst < Duration::from_millis(100), "/healthz took {worst:?} with 200 idle or slow connections");
    // After the header-read timeout the server has closed them all.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let closed = held.iter_mut().map(closed_by_server).filter(|c| *c).count();
    assert_eq!(closed, 200, "idle and slow connections are closed after http.header_read_timeout");
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_and_writes_are_rate_limited() {
    let broker = Mosquitto::start();
    let mut o = Options::new(broker.url());
    o.http_extra = format!(
        "api_token = \"{API}\"\nheader_read_timeout = \"10s\"\nmax_connections = 20\nrate_limit = 60\nrate_burst = 5\n"
    );
    let mut fg = Floodguard::start(o);
    fg.wait_connected().await;
    // wait_connected's last /metrics connection holds a slot until the
    // server has seen it close: then one of the 20 would be refused and
    // its slot go to the 21st.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = fg.http_port;
    let held: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The 21st is closed at once.
    let (status, _) = tokio::task::spawn_blocking(move || healthz(port)).await.unwrap();
    assert_eq!(status, "", "a connection past http.max_connections is closed unanswered");
    drop(held);
    wait_for("room again", Duration::from_secs(5), || async {
        let (status, _) = tokio::task::spawn_blocking(move || healthz(port)).await.unwrap();
        status.contains("200").then_some(())
    })
    .await;
    // Writes: the burst passes (here: 404 for an alert that does not exist), then 429.
    let client = reqwest::Client::new();
    let mut codes = Vec::new();
    for _ in 0..8 {
        let r = client
            .post(fg.url("/api/v1/alerts/999999/ack"))
            .bearer_auth(API)
            .json(&serde_json::json!({"by": "x"}))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [404, 404, 404, 404, 404, 429, 429, 429]);
    assert!(fg.metric("floodguard_http_rate_limited_total").await >= Some(3.0));
    assert!(fg.metric("floodguard_http_connections_refused_total").await >= Some(1.0));
    assert_eq!(get(&fg.url("/api/v1/sites"), None).await.0, 200, "reads are not rate limited");
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
}

/// A tmpfs of `mb` MiB mounted at `dir` (root), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mb: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "the full-disk tests mount a small tmpfs and need root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the filesystem to the last byte; the filler's path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn ready(fg: &Floodguard) -> (u16, Value) {
    fg.readyz().await.unwrap_or((0, Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acknowledging_names_the_disk_tells_the_operators_and_loses_nothing() {
    let broker = Mosquitto::start();
    let influx = Influx::start();
    let peer = Peer::start().await;
    let dir = tempdir("fulldisk-");
    let data = dir.path().join("var");
    let disk = Tmpfs::mount(&data, 32);
    let mut o = Options::new(broker.url()).influx(influx.url(), "v1");
    o.env.push(("FLOODGUARD__DAEMON__DATA_DIR".into(), data.display().to_string()));
    o.env.push(("FLOODGUARD__SPOOL__SEGMENT_SIZE".into(), "1048576".into()));
    o.channels = format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{}\"\nformat = \"json\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\" }}\nmin_interval = \"0s\"\n",
        peer.url("/sms")
    );
    let fg = Floodguard::start(o);
    fg.wait_connected().await;
    let p = Publisher::connect(&broker.url(), "pub-fulldisk");
    let base = base_ms();
    async fn send(p: &Publisher, base: i64, from: u64, n: u64) {
        for seq in from..from + n {
            let payload = format!(r#"{{"ts":{},"battery_v":3.6,"seq":{seq}}}"#, base + seq as i64);
            p.send("flood/CD-JS-01/telemetry", payload.into_bytes()).await;
        }
    }
    let count = || async { influx.count("flood", "SELECT count(seq) FROM telemetry").await };
    send(&p, base, 0, 100).await;
    wait_for("100 readings in InfluxDB", Duration::from_secs(30), || async {
        (count().await >= 100).then_some(())
    })
    .await;

    let filler = disk.fill();
    send(&p, base, 100, 1000).await;
    let (code, body) = wait_for("/readyz naming the full disk", Duration::from_secs(20), || async {
        let (code, body) = ready(&fg).await;
        (code == 503 && body["disk"].as_str().is_some_and(|d| d.contains("disk full")))
            .then_some((code, body))
    })
    .await;
    let named = body["disk"].as_str().unwrap();
    assert!(named.contains(&data.join("spool").display().to_string()), "the disk's path: {body}");
    assert!(body["problems"].to_string().contains("disk full"), "{body}");
    println!("/readyz {code} while full: {}", body["disk"]);
    // The operators are told, by the configured channels.
    let told = wait_for("the duty officer told", Duration::from_secs(20), || async {
        let told: Vec<_> =
            peer.accepted("/sms").into_iter().filter(|r| r.text.contains("磁盘已满")).collect();
        (!told.is_empty()).then_some(told)
    })
    .await;
    assert!(
        told.iter().any(|r| r.to == "13800000901"),
        "the district duty officer: {:?}",
        told.iter().map(|r| &r.to).collect::<Vec<_>>()
    );
    assert_eq!(fg.metric("floodguard_disk_full").await, Some(1.0));
    // Nothing new is acknowledged, so nothing new is stored meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ready(&fg).await.0, 503, "still not ready while full");
    let during = count().await;
    assert!(during < 1100, "readings are held back while the disk is full ({during} stored)");

    // Room again: every one of the 1,000 arrives, /readyz recovers.
    std::fs::remove_file(&filler).unwrap();
    wait_for("all 1,100 readings in InfluxDB", Duration::from_secs(60), || async {
        (count().await >= 1100).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count().await, 1100, "none lost, none twice");
    wait_for("/readyz 200 again", Duration::from_secs(20), || async {
        (ready(&fg).await.0 == 200).then_some(())
    })
    .await;
    wait_for("the all-clear", Duration::from_secs(20), || async {
        peer.accepted("/sms").iter().any(|r| r.text.contains("磁盘空间已恢复")).then_some(())
    })
    .await;
    assert_eq!(fg.metric("floodguard_disk_full").await, Some(0.0));
    let mut fg = fg;
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_state_db_holds_the_alerts_and_records_them_once_there_is_room() {
    let broker = Mosquitto::start();
    let peer = Peer::start().await;
    let dir = tempdir("fullstate-");
    let data = dir.path().join("var");
    // state.db on a small tmpfs; the spool on the ordinary disk (bind-mounted).
    let disk = Tmpfs::mount(&data, 8);
    let spool_home = dir.path().join("spool-home");
    std::fs::create_dir_all(&spool_home).unwrap();
    std::fs::create_dir_all(data.join("spool")).unwrap();
    let bind = Command::new("mount").arg("--bind").arg(&spool_home).arg(data.join("spool")).status().unwrap();
    assert!(bind.success());
    struct Unbind(PathBuf);
    impl Drop for Unbind {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let unbind = Unbind(data.join("spool"));
    let mut o = Options::new(broker.url());
    o.env.push(("FLOODGUARD__DAEMON__DATA_DIR".into(), data.display().to_string()));
    o.channels = format!(
        "[channels.sms]\nprovider = \"http\"\nurl = \"{}\"\nformat = \"json\"\n\
         fields = {{ mobile = \"{{phone}}\", content = \"{{text}}\" }}\nmin_interval = \"0s\"\n",
        peer.url("/sms")
    );
    let fg = Floodguard::start(o);
    fg.wait_connected().await;
    let filler = disk.fill();
    // Crossings at every waterlogging point, level by level: more alert
    // changes than the write-ahead log has room for on the full disk.
    let p = Publisher::connect(&broker.url(), "pub-fullstate");
    let points = ["CD-JS-01", "CD-JS-02", "CD-JS-03", "BH-JS-01", "BH-JS-02", "XC-JS-01", "XC-JS-02"];
    for cm in [12, 22, 30, 45] {
        for _ in 0..2 {
            for site in points {
                p.send(
                    &format!("flood/{site}/telemetry"),
                    format!(r#"{{"water_depth_cm":{cm}}}"#).into_bytes(),
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (_, body) = wait_for("/readyz naming state.db's full disk", Duration::from_secs(30), || async {
        let (code, body) = ready(&fg).await;
        (code == 503 && body["disk"].as_str().is_some_and(|d| d.contains("state.db"))).then_some((code, body))
    })
    .await;
    println!("/readyz while state.db's disk is full: {}", body["disk"]);
    wait_for("the duty officer told", Duration::from_secs(20), || async {
        peer.accepted("/sms")
            .iter()
            .any(|r| r.text.contains("磁盘已满") && r.text.contains("state.db"))
            .then_some(())
    })
    .await;
    std::fs::remove_file(&filler).unwrap();
    // The held alert is recorded and told once there is room.
    let alert = wait_for("the alert recorded", Duration::from_secs(30), || async {
        let (code, body) = get(&fg.url("/api/v1/alerts"), None).await;
        let v: Value = serde_json::from_str(&body).ok()?;
        (code == 200).then_some(())?;
        v["alerts"].as_array()?.iter().find(|a| a["site"] == "CD-JS-01").cloned()
    })
    .await;
    assert_eq!(alert["level"], "I", "every change held was recorded, to the last");
    wait_for("the crossing told", Duration::from_secs(30), || async {
        peer.accepted("/sms").iter().any(|r| r.to == "13800000101" && r.text.contains("人民路")).then_some(())
    })
    .await;
    wait_for("/readyz 200 again", Duration::from_secs(20), || async {
        (ready(&fg).await.0 == 200).then_some(())
    })
    .await;
    let mut fg = fg;
    assert_eq!(fg.terminate(Duration::from_secs(20)), Some(0));
    drop(unbind);
    drop(disk);
}
