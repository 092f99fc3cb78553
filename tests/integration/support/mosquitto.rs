//! Mosquitto 2.x on a free port: plain, or TLS with certificates the test
//! generates, optionally with a password file.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{free_port, tempdir, Proc};

pub struct Tls {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub require_client_cert: bool,
}

pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    conf: PathBuf,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Self::start_with(None, None)
    }

    /// `users`: (name, password) pairs; then anonymous access is refused.
    pub fn start_with(tls: Option<Tls>, users: Option<&[(&str, &str)]>) -> Mosquitto {
        let dir = tempdir("mosquitto-");
        let port = free_port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\npersistence false\n\
             # Tests measure loss: the default 1000 would drop QoS1 messages for a\n\
             # subscriber that is briefly away or behind.\nmax_queued_messages 1000000\n\
             user root\n"
        );
        match users {
            Some(users) => {
                let pw = dir.path().join("passwd");
                std::fs::write(&pw, "").unwrap();
                for (u, p) in users {
                    let ok =
                        Command::new("mosquitto_passwd").arg("-b").arg(&pw).arg(u).arg(p).status().unwrap();
                    assert!(ok.success(), "mosquitto_passwd failed");
                }
                conf.push_str(&format!("allow_anonymous false\npassword_file {}\n", pw.display()));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        if let Some(t) = tls {
            let w = |name: &str, text: &str| {
                let p = dir.path().join(name);
                std::fs::write(&p, text).unwrap();
                p
            };
            let ca = w("ca.pem", &t.ca_pem);
            let cert = w("server.pem", &t.server_cert_pem);
            let key = w("server.key", &t.server_key_pem);
            conf.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                ca.display(),
                cert.display(),
                key.display()
            ));
            if t.require_client_cert {
                conf.push_str("require_certificate true\n");
            }
        }
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut m = Mosquitto { port, dir, proc: None, conf: conf_path };
        m.run();
        m
    }

    fn run(&mut self) {
        let log = self.dir.path().join(format!("mosquitto-{}.log", std::process::id()));
        self.proc = Some(Proc::spawn("mosquitto", Command::new("mosquitto").arg("-c").arg(&self.conf), &log));
        // Ready when it accepts TCP connections.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "mosquitto did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id (for CPU figures).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Stops and starts again on the same port (sessions are lost: persistence is off).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }
}
