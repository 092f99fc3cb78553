//! A real Modbus TCP server (pymodbus 3.x from PyPI, under the venv that
//! scripts/test.sh makes at `target/pyenv`), an implementation independent
//! of tokio-modbus; stopped when dropped, startable again on the same port
//! with the values it held. The test changes coils and holding registers
//! while it runs by writing them over Modbus (tokio-modbus as the client).

use std::process::Command;
use std::time::{Duration, Instant};

use tokio_modbus::client::{tcp, Writer};

use super::{free_port, tempdir, Proc};

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/support/modbus_server.py");
/// The venv's Python, which has pymodbus.
pub const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python");

/// Initial values of the server's four tables: `(address, value)`.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub holding: Vec<(u16, u16)>,
    pub input: Vec<(u16, u16)>,
    pub coils: Vec<(u16, bool)>,
    pub discrete: Vec<(u16, bool)>,
}

pub struct ModbusServer {
    pub port: u16,
    tables: Tables,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    starts: u32,
}

fn spec<T: Copy>(v: &[(u16, T)], f: impl Fn(T) -> u16) -> String {
    v.iter().map(|(a, x)| format!("{a}={}", f(*x))).collect::<Vec<_>>().join(",")
}

impl ModbusServer {
    /// Each table 100 addresses long; a read past them gets an exception.
    pub fn start(tables: Tables) -> ModbusServer {
        assert!(
            std::path::Path::new(PYTHON).exists(),
            "{PYTHON} missing: scripts/test.sh makes the venv with pymodbus"
        );
        let mut s =
            ModbusServer { port: free_port(), tables, dir: tempdir("modbus-"), proc: None, starts: 0 };
        s.run();
        s
    }

    fn run(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("modbus-{}.log", self.starts));
        let t = &self.tables;
        let mut cmd = Command::new(PYTHON);
        cmd.arg(SERVER).arg("--port").arg(self.port.to_string());
        cmd.arg("--holding").arg(spec(&t.holding, |v| v));
        cmd.arg("--input").arg(spec(&t.input, |v| v));
        cmd.arg("--coils").arg(spec(&t.coils, u16::from));
        cmd.arg("--discrete").arg(spec(&t.discrete, u16::from));
        let proc = Proc::spawn("pymodbus", &mut cmd, &log);
        let start = Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("ready") {
            if start.elapsed() > Duration::from_secs(15) {
                panic!(
                    "the pymodbus server did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        self.proc = Some(proc);
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL: a PLC losing power). Its values are kept for
    /// [`start_again`](Self::start_again), with the writes made through
    /// [`write_coil`](Self::write_coil) and [`write_registers`](Self::write_registers).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn start_again(&mut self) {
        self.run();
    }

    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("modbus-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    async fn client(&self) -> tokio_modbus::client::Context {
        tcp::connect(self.address().parse().unwrap()).await.expect("connect to the Modbus server")
    }

    /// Writes a coil over Modbus (function 5).
    pub async fn write_coil(&mut self, address: u16, on: bool) {
        let mut c = self.client().await;
        c.write_single_coil(address, on).await.expect("transport").expect("no exception");
        self.tables.coils.retain(|(a, _)| *a != address);
        self.tables.coils.push((address, on));
    }

    /// Writes holding registers from `address` over Modbus (function 16).
    pub async fn write_registers(&mut self, address: u16, words: &[u16]) {
        let mut c = self.client().await;
        c.write_multiple_registers(address, words).await.expect("transport").expect("no exception");
        for (k, w) in words.iter().enumerate() {
            let a = address + k as u16;
            self.tables.holding.retain(|(x, _)| *x != a);
            self.tables.holding.push((a, *w));
        }
    }
}
