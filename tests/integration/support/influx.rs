//! InfluxDB 1.6.7 (Debian's `influxdb`) on free ports; can be stopped and
//! started again on the same data.

use std::process::Command;
use std::time::Duration;

use super::{free_port, http_status, tempdir, Proc};

pub struct Influx {
    pub port: u16,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    starts: u32,
}

impl Influx {
    pub fn start() -> Influx {
        let dir = tempdir("influxdb-");
        let port = free_port();
        let rpc = free_port();
        let d = dir.path().display();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n"
        );
        std::fs::write(dir.path().join("influxdb.conf"), conf).unwrap();
        let mut i = Influx { port, dir, proc: None, starts: 0 };
        i.run();
        i
    }

    fn run(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("influxd-{}.log", self.starts));
        let conf = self.dir.path().join("influxdb.conf");
        self.proc = Some(Proc::spawn("influxd", Command::new("influxd").arg("-config").arg(&conf), &log));
        let url = format!("{}/ping", self.url());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http_status(&url) {
                if r == 204 {
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "influxd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id (for CPU figures).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("TERM");
            if p.wait_exit(Duration::from_secs(10)).is_none() {
                p.kill();
            }
        }
    }

    pub fn start_again(&mut self) {
        self.run();
    }

    /// Runs an InfluxQL query; the JSON answer.
    pub async fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/query", self.url()))
            .form(&[("db", db), ("q", q)])
            .send()
            .await
            .unwrap();
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    /// `SELECT count(field)` as a number (0 when there is no data).
    pub async fn count(&self, db: &str, q: &str) -> i64 {
        let v = self.query(db, q).await;
        v["results"][0]["series"][0]["values"][0][1].as_i64().unwrap_or(0)
    }
}
