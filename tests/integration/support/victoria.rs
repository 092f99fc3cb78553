//! VictoriaMetrics: a real server for the InfluxDB v2 write path.

use std::process::Command;
use std::time::Duration;

use super::{free_port, http_status, tempdir, Proc};

pub struct Victoria {
    pub port: u16,
    _dir: tempfile::TempDir,
    _proc: Proc,
}

impl Victoria {
    pub fn start() -> Victoria {
        let dir = tempdir("victoria-");
        let port = free_port();
        let proc = Proc::spawn(
            "victoria-metrics",
            Command::new("victoria-metrics")
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg(format!("-storageDataPath={}", dir.path().join("data").display()))
                .arg("-retentionPeriod=100y")
                .arg("-search.latencyOffset=0s"),
            &dir.path().join("vm.log"),
        );
        let url = format!("http://127.0.0.1:{port}/health");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while http_status(&url).ok() != Some(200) {
            assert!(std::time::Instant::now() < deadline, "victoria-metrics did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Victoria { port, _dir: dir, _proc: proc }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Samples stored per series name (`telemetry_water_depth_cm{site=…}`),
    /// read back through the export API.
    pub async fn export(&self, match_: &str) -> Vec<serde_json::Value> {
        let c = reqwest::Client::new();
        let _ = c.get(format!("{}/internal/force_flush", self.url())).send().await;
        let text = c
            .get(format!("{}/api/v1/export", self.url()))
            .query(&[("match[]", match_)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}
