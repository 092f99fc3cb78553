//! PostgreSQL 15 (Debian's) on a free loopback port: a cluster of the test's
//! own in a temporary directory, made and run as user `postgres` (the
//! server refuses root), killed with `pg_ctl -m immediate` when dropped.
//! Nothing of the machine's own cluster or service is used.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, tempdir};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
    c
}

impl Postgres {
    /// A fresh cluster with a database `flood`, trust authentication on
    /// 127.0.0.1 only.
    pub fn start() -> Postgres {
        assert!(
            Path::new(&format!("{BIN}/initdb")).exists(),
            "PostgreSQL 15 is not installed: run scripts/test.sh (package postgresql)"
        );
        let dir = tempdir("postgres-");
        let pg = Postgres { port: free_port(), dir, running: false };
        let ok = Command::new("install")
            .args(["-d", "-o", "postgres", "-m", "700"])
            .arg(pg.data())
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot make the data directory");
        let out = as_postgres("initdb")
            .args(["-D"])
            .arg(pg.data())
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = pg;
        pg.run();
        let out = as_postgres("createdb")
            .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "postgres", "flood"])
            .output()
            .unwrap();
        assert!(out.status.success(), "createdb: {}", String::from_utf8_lossy(&out.stderr));
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The state URL (no password: trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/flood", self.port)
    }

    /// The URL of a district's schema in the same database.
    pub fn url_in_schema(&self, schema: &str) -> String {
        format!("{}?options=-csearch_path%3D{schema}", self.url())
    }

    /// Starts the server (again, after [`Postgres::kill`]) on the same port.
    pub fn run(&mut self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.data().display()
        );
        let out = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &opts, "-l"])
            .arg(self.log())
            .args(["-w", "-t", "30", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
        self.running = true;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "PostgreSQL did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server at once (`pg_ctl -m immediate`): what a crash or a
    /// failover looks like to the clients.
    pub fn kill(&mut self) {
        if !self.running {
            return;
        }
        let _ =
            as_postgres("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).output();
        self.running = false;
    }

    /// Runs SQL with psql; its output (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let out = as_postgres("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "flood"])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}
