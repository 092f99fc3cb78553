//! Configuration errors: every one names the file (or environment variable),
//! the line where the file has one, the key path, and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File {
        path: PathBuf,
        line: Option<usize>,
    },
    /// An environment override, e.g. `FLOODGUARD__MQTT__URL`.
    Env(String),
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    /// Dotted key path with array indices: `sites[3].location.lat`.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn in_file(path: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            origin: Origin::File { path: path.to_path_buf(), line: None },
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, line: Some(line) } => write!(f, "{}:{line}", path.display())?,
            Origin::File { path, line: None } => write!(f, "{}", path.display())?,
            Origin::Env(var) => write!(f, "environment {var}")?,
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": {}: {}", self.key, self.reason)
        }
    }
}

/// Every problem found in one load of the configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} configuration error{}:", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Finds the 1-based line of `key` (a path like `sites[3].kind`) in TOML text.
///
/// Falls back to the nearest enclosing key that exists, so an error about a
/// missing field points at the table that lacks it.
pub fn locate(text: &str, key: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut best = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for seg in parse_key_path(key) {
        match seg {
            Segment::Key(name) => {
                let t = match (table, value) {
                    (Some(t), None) => t,
                    (_, Some(DeValue::Table(t))) => t,
                    _ => break,
                };
                let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
                    break;
                };
                best = Some(k.span().start);
                table = None;
                value = Some(v.get_ref());
            }
            Segment::Index(i) => {
                let Some(DeValue::Array(items)) = value else {
                    break;
                };
                let Some(item) = items.get(i) else {
                    break;
                };
                best = Some(item.span().start);
                value = Some(item.get_ref());
            }
        }
    }
    best.map(|offset| line_of(text, offset))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn parse_key_path(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                out.push(Segment::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# sites
[[streets]]
id = "chengdong"

[[sites]]
id = "A"
kind = "river"

[[sites]]
id = "B"
kind = "pump"
location = { lat = 91.0, lon = 120.0 }
"#;

    #[test]
    fn locates_keys_in_arrays_of_tables() {
        assert_eq!(locate(TEXT, "streets[0].id"), Some(3));
        assert_eq!(locate(TEXT, "sites[1].kind"), Some(11));
        assert_eq!(locate(TEXT, "sites[1].location.lat"), Some(12));
    }

    #[test]
    fn falls_back_to_the_enclosing_table() {
        assert_eq!(locate(TEXT, "sites[1].street"), Some(9));
        assert_eq!(locate(TEXT, "nothing.here"), None);
    }

    #[test]
    fn display_names_file_line_key_and_reason() {
        let e = ConfigError {
            origin: Origin::File { path: "config/sites.toml".into(), line: Some(11) },
            key: "sites[1].kind".into(),
            reason: "unknown kind \"pump\"".into(),
        };
        assert_eq!(e.to_string(), "config/sites.toml:11: sites[1].kind: unknown kind \"pump\"");
        let e = ConfigError {
            origin: Origin::Env("FLOODGUARD__MQTT__URL".into()),
            key: "mqtt.url".into(),
            reason: "bad".into(),
        };
        assert_eq!(e.to_string(), "environment FLOODGUARD__MQTT__URL: mqtt.url: bad");
    }
}
