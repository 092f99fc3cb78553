//! `[[modbus.devices]]` in `floodguard.toml`: pump-station PLCs polled over
//! Modbus TCP, each with its register map (which register or bit is which
//! metric of which site). The checks are in `daemon_check` (one file) and
//! in `config::load` (the site must be one of sites.toml).

use serde::Deserialize;

use super::values::HumanDuration;

/// `[modbus]`: no devices, no polling.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ModbusSection {
    pub devices: Vec<ModbusDevice>,
}

/// One PLC (or one unit behind a gateway), polled every `interval`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModbusDevice {
    /// Names the device in metrics and logs (`BH-BZ-01-plc`).
    pub id: String,
    /// `host:port` of its Modbus TCP server (port 502 as a rule).
    pub address: String,
    /// Unit identifier (slave id): 1 for a PLC reached directly, the serial
    /// address for a device behind a gateway.
    #[serde(default = "default_unit")]
    pub unit: u8,
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Bounds the connect and each request; past it the poll counts as
    /// failed and the connection is opened anew.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// The site of sites.toml whose readings these are.
    pub site: String,
    /// Unmapped addresses at most this far apart are read in the same
    /// request (fewer round trips); 0 reads only adjacent ones, for devices
    /// that refuse a read across addresses they lack.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    #[serde(default)]
    pub registers: Vec<ModbusRegister>,
}

fn default_unit() -> u8 {
    1
}
fn default_interval() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::secs(3)
}
fn default_max_gap() -> u16 {
    16
}

string_enum! {
    /// The four Modbus data tables.
    pub enum RegisterTable ("register table") {
        /// Read/write 16-bit registers (function 3).
        Holding = "holding",
        /// Read-only 16-bit registers (function 4).
        Input = "input",
        /// Read/write bits (function 1).
        Coil = "coil",
        /// Read-only bits (function 2).
        Discrete = "discrete",
    }
}

impl RegisterTable {
    /// Coils and discrete inputs hold bits, the others 16-bit words.
    pub fn is_bits(self) -> bool {
        matches!(self, RegisterTable::Coil | RegisterTable::Discrete)
    }
}

string_enum! {
    /// How one value sits in 16-bit registers.
    #[derive(Default)]
    pub enum RegisterType ("register type") {
        #[default]
        U16 = "u16",
        I16 = "i16",
        /// Two registers.
        U32 = "u32",
        I32 = "i32",
        /// IEEE 754 single precision, two registers.
        F32 = "f32",
    }
}

impl RegisterType {
    /// Registers one value takes.
    pub fn width(self) -> u16 {
        match self {
            RegisterType::U16 | RegisterType::I16 => 1,
            RegisterType::U32 | RegisterType::I32 | RegisterType::F32 => 2,
        }
    }
}

string_enum! {
    /// Order of the two registers of a 32-bit value (bytes in each are
    /// big-endian, as Modbus sends them).
    #[derive(Default)]
    pub enum WordOrder ("word order") {
        /// High word first, at the lower address (Modbus's own order).
        #[default]
        Abcd = "ABCD",
        /// Low word first ("word swapped"), as many PLCs store floats.
        Cdab = "CDAB",
    }
}

/// One metric read from a register, two registers, a bit of a register, a
/// coil or a discrete input. Numbers become `raw × scale + offset`; coils,
/// discrete inputs and bits become flags (`true`/`false`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModbusRegister {
    pub metric: String,
    pub table: RegisterTable,
    /// The 0-based address in its table (as sent on the wire: holding
    /// register "40001" is address 0).
    pub address: u16,
    /// Registers only; `u16` when not given.
    #[serde(rename = "type")]
    pub kind: Option<RegisterType>,
    /// 32-bit types only; `ABCD` when not given.
    pub word_order: Option<WordOrder>,
    /// Numbers only; 1 when not given.
    pub scale: Option<f64>,
    /// Numbers only; 0 when not given.
    pub offset: Option<f64>,
    /// 0–15: this bit of a 16-bit register, as a flag (a status word).
    pub bit: Option<u8>,
}

impl ModbusRegister {
    /// A register of `table` at `address` with every option at its default.
    pub fn plain(metric: &str, table: RegisterTable, address: u16) -> ModbusRegister {
        ModbusRegister {
            metric: metric.into(),
            table,
            address,
            kind: None,
            word_order: None,
            scale: None,
            offset: None,
            bit: None,
        }
    }
}
