//! A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) storing each mail
//! in a Maildir — plain, STARTTLS or implicit TLS, with optional AUTH — and
//! the mails read back with Python's `email` package (an implementation
//! independent of lettre).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, tempdir, Proc};

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/support/smtp_server.py");
/// Debian's Python, which has aiosmtpd (`python3` on PATH may be another).
const PYTHON: &str = "/usr/bin/python3";

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    Plain,
    StartTls,
    Smtps,
}

pub struct Smtp {
    pub port: u16,
    pub mode: Mode,
    pub dir: tempfile::TempDir,
    maildir: PathBuf,
    _proc: Proc,
}

/// One mail as a reader sees it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    /// The Message-ID header (floodguard's: `<idempotency key@floodguard>`).
    pub message_id: String,
    /// When the server stored it (the file's modification time).
    pub stored_at: std::time::SystemTime,
    /// The text/plain part, line endings as `\n`.
    pub text: String,
    pub html: String,
}

impl Smtp {
    pub fn start() -> Smtp {
        Smtp::start_with(Mode::Plain, None, None)
    }

    /// `tls`: (certificate, key) PEM files; `auth`: (user, password).
    pub fn start_with(mode: Mode, tls: Option<(&Path, &Path)>, auth: Option<(&str, &str)>) -> Smtp {
        let dir = tempdir("smtp-");
        let maildir = dir.path().join("maildir");
        let port = free_port();
        let mut cmd = Command::new(PYTHON);
        cmd.arg(SERVER).arg("--port").arg(port.to_string()).arg("--maildir").arg(&maildir);
        cmd.arg("--mode").arg(match mode {
            Mode::Plain => "plain",
            Mode::StartTls => "starttls",
            Mode::Smtps => "smtps",
        });
        if let Some((cert, key)) = tls {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((u, p)) = auth {
            cmd.args(["--user", u, "--password", p]);
        }
        let log = dir.path().join("smtp.log");
        let proc = Proc::spawn("aiosmtpd", &mut cmd, &log);
        let start = Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("ready") {
            if start.elapsed() > Duration::from_secs(10) {
                panic!("aiosmtpd did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        Smtp { port, mode, dir, maildir, _proc: proc }
    }

    /// The `smtp_url` floodguard takes for this server.
    pub fn url(&self) -> String {
        match self.mode {
            Mode::Plain => format!("smtp://127.0.0.1:{}", self.port),
            Mode::StartTls => format!("smtp://127.0.0.1:{}?tls=required", self.port),
            Mode::Smtps => format!("smtps://127.0.0.1:{}", self.port),
        }
    }

    /// Every mail received so far, decoded.
    pub fn mails(&self) -> Vec<Mail> {
        let new = self.maildir.join("new");
        if !new.is_dir() {
            return vec![];
        }
        let out = Command::new(PYTHON).arg("-c").arg(DECODE).arg(&new).output().expect("python3");
        assert!(out.status.success(), "decoding mails: {}", String::from_utf8_lossy(&out.stderr));
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json from the decoder");
        v.iter()
            .map(|m| Mail {
                from: m["from"].as_str().unwrap_or_default().into(),
                to: m["to"].as_str().unwrap_or_default().into(),
                subject: m["subject"].as_str().unwrap_or_default().into(),
                message_id: m["message_id"].as_str().unwrap_or_default().into(),
                stored_at: std::time::UNIX_EPOCH
                    + Duration::from_secs_f64(m["stored_at"].as_f64().unwrap_or_default()),
                text: m["text"].as_str().unwrap_or_default().into(),
                html: m["html"].as_str().unwrap_or_default().into(),
            })
            .collect()
    }
}

/// Reads a Maildir's `new/` with `email.policy.default` and prints JSON.
const DECODE: &str = r#"
import json, os, sys
from email import policy
from email.parser import BytesParser
out = []
d = sys.argv[1]
def raw_id(m):
    # As sent: the parsed header mangles an id with ':' and two '@'.
    return next(("".join(v.split()) for k, v in m.raw_items() if k.lower() == "message-id"), "")
for name in sorted(os.listdir(d)):
    with open(os.path.join(d, name), "rb") as f:
        m = BytesParser(policy=policy.default).parse(f)
    def part(kind):
        p = m.get_body(preferencelist=(kind,))
        return p.get_content().replace("\r\n", "\n") if p is not None else ""
    out.append({"from": str(m["From"]), "to": str(m["To"]), "subject": str(m["Subject"]), "message_id": raw_id(m),
                "stored_at": os.stat(os.path.join(d, name)).st_mtime,
                "text": part("plain"), "html": part("html")})
print(json.dumps(out, ensure_ascii=False))
"#;
