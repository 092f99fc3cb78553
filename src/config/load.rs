//! Reading the four config files with the `config` crate and turning every
//! problem — syntax, unknown key, wrong type, failed check — into a
//! [`ConfigError`] with file, line, key path and reason.
//!
//! Sections and array elements are deserialized one by one, so a mistake in
//! one site does not hide a mistake in the next: the engineer sees them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat, Value, ValueKind};
use serde::de::DeserializeOwned;

use super::error::{locate, ConfigError, ConfigErrors, Origin};

/// The environment-variable prefix of overrides: `FLOODGUARD__MQTT__URL`.
pub const ENV_PREFIX: &str = "FLOODGUARD";

/// One parsed config file, and the errors found in it so far.
pub(super) struct Source<'e> {
    pub path: PathBuf,
    text: String,
    root: Value,
    errors: &'e mut ConfigErrors,
}

/// Files smaller than this are parsed whole.
const PIECE: usize = 256 * 1024;

/// Parses a big TOML file as pieces cut before top-level `[[name]]`
/// headers, joining the arrays they add to. The TOML parser lexes a whole
/// document into tokens before building it: for a sites.toml of 10,000
/// sites that was 35 MB at start, more than the daemon then needs to run.
/// `None` — parse it whole — for a small file or whenever the pieces do not
/// simply join (a piece that does not parse, a table defined in two
/// pieces), so the whole document's parser gives its own verdict.
fn parse_in_pieces(text: &str) -> Option<Value> {
    if text.len() < PIECE {
        return None;
    }
    let mut cuts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset - cuts[cuts.len() - 1] >= PIECE && top_level_array_header(line) {
            cuts.push(offset);
        }
        offset += line.len();
    }
    cuts.push(text.len());
    let mut root: config::Map<String, Value> = config::Map::new();
    for w in cuts.windows(2) {
        let piece = config::Config::builder()
            .add_source(File::from_str(&text[w[0]..w[1]], FileFormat::Toml))
            .build()
            .ok()?;
        let ValueKind::Table(table) = piece.cache.kind else {
            return None;
        };
        for (k, v) in table {
            match (root.get_mut(&k).map(|e: &mut Value| &mut e.kind), v.kind) {
                (None, kind) => {
                    root.insert(k, Value::new(None, kind));
                }
                (Some(ValueKind::Array(into)), ValueKind::Array(more)) if w[0] > 0 => into.extend(more),
                _ => return None,
            }
        }
    }
    Some(Value::new(None, ValueKind::Table(root)))
}

/// `[[sites]]` (a new element of a top-level array of tables), not
/// `[[sites.pumps]]` (which belongs to the element before it).
fn top_level_array_header(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix("[[") else {
        return false;
    };
    let Some((name, _)) = rest.split_once("]]") else {
        return false;
    };
    let name = name.trim();
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl<'e> Source<'e> {
    /// Reads `path` (TOML); for the main file, `env` adds the
    /// `FLOODGUARD__SECTION__KEY` overrides. `None` when the file cannot be
    /// read or parsed (the error is recorded).
    pub fn read(
        path: &Path,
        env: Option<&HashMap<String, String>>,
        errors: &'e mut ConfigErrors,
    ) -> Option<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError::in_file(path, "", format!("cannot read: {e}")));
                return None;
            }
        };
        // Only the main file takes overrides; a big one without them (a
        // district's sites.toml) is parsed in pieces.
        if env.is_none() {
            if let Some(root) = parse_in_pieces(&text) {
                return Some(Source { path: path.to_path_buf(), text, root, errors });
            }
        }
        let mut builder = config::Config::builder().add_source(File::from_str(&text, FileFormat::Toml));
        if let Some(env) = env {
            builder = builder.add_source(
                Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(env.clone().into_iter().collect())),
            );
        }
        match builder.build() {
            Ok(c) => Some(Source { path: path.to_path_buf(), text, root: c.cache, errors }),
            Err(e) => {
                // TOML syntax errors carry their own line and column.
                let reason =
                    e.to_string().replace('\n', " ").split_whitespace().collect::<Vec<_>>().join(" ");
                errors.push(ConfigError::in_file(path, "", reason));
                None
            }
        }
    }

    /// Records an error at `key`, locating its origin and line.
    pub fn error(&mut self, key: &str, reason: impl Into<String>) {
        let origin = if self.set_by_env(key) {
            Origin::Env(env_var_for(key))
        } else {
            Origin::File { path: self.path.clone(), line: locate(&self.text, key) }
        };
        self.errors.push(ConfigError { origin, key: key.to_string(), reason: reason.into() });
    }

    fn set_by_env(&self, key: &str) -> bool {
        lookup(&self.root, key).and_then(|v| v.origin()).is_some_and(|o| o == "the environment")
    }

    /// The top-level keys present in the file.
    pub fn keys(&self) -> Vec<String> {
        match &self.root.kind {
            ValueKind::Table(t) => t.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        match &self.root.kind {
            ValueKind::Table(t) => t.get(key).cloned(),
            _ => None,
        }
    }

    /// Deserializes the value at `key` (a section or one array element) into
    /// `T`, recording every unknown key and every wrongly typed key in it.
    pub fn section<T: DeserializeOwned>(&mut self, key: &str, value: Value) -> Option<T> {
        let whole = attempt::<T>(value.clone());
        if let Some(v) = whole.value {
            // Unknown keys only: report them, and let the checks that follow
            // look at the rest.
            for (inner, reason) in whole.problems {
                self.error(&join(key, &inner), reason);
            }
            return Some(v);
        }
        // Serde stops at the first error: try each key alone to find the
        // others (errors about fields the lone key lacks are not its own).
        let mut problems = Vec::new();
        if let ValueKind::Table(table) = &value.kind {
            for (k, v) in table {
                let mut one = config::Map::new();
                one.insert(k.clone(), v.clone());
                let alone = attempt::<T>(Value::new(None, ValueKind::Table(one)));
                problems.extend(alone.problems.into_iter().filter(|(_, r)| !r.starts_with("missing ")));
            }
        }
        for p in whole.problems {
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
        for (inner, reason) in problems {
            let full = if inner.is_empty() { key.to_string() } else { join(key, &inner) };
            self.error(&full, reason);
        }
        None
    }

    /// Deserializes `[[key]]`: each element alone, so every bad element is
    /// reported; the good ones are returned with their index.
    pub fn array<T: DeserializeOwned>(&mut self, key: &str) -> Vec<(usize, T)> {
        // One element copied at a time: a copy of the whole array of a
        // 10,000-site district was 14 MB.
        let item = |root: &Value, i: usize| match &root.kind {
            ValueKind::Table(t) => match t.get(key).map(|v| &v.kind) {
                Some(ValueKind::Array(items)) => items.get(i).cloned(),
                _ => None,
            },
            _ => None,
        };
        let len = match &self.root.kind {
            ValueKind::Table(t) => match t.get(key).map(|v| &v.kind) {
                None => return Vec::new(),
                Some(ValueKind::Array(items)) => items.len(),
                Some(_) => {
                    self.error(key, format!("expected an array of tables ([[{key}]])"));
                    return Vec::new();
                }
            },
            _ => return Vec::new(),
        };
        (0..len)
            .filter_map(|i| {
                let v = item(&self.root, i)?;
                self.section(&format!("{key}[{i}]"), v).map(|t| (i, t))
            })
            .collect()
    }

    /// Reports every top-level key not in `known`.
    pub fn reject_unknown_top_level(&mut self, known: &[&str]) {
        for k in self.keys() {
            if !known.contains(&k.as_str()) {
                self.error(&k, format!("unknown key (expected one of: {})", known.join(", ")));
            }
        }
    }
}

/// What one deserialization attempt gave: the value, or the problems with
/// their key paths relative to the value.
struct Attempt<T> {
    value: Option<T>,
    problems: Vec<(String, String)>,
}

fn attempt<T: DeserializeOwned>(value: Value) -> Attempt<T> {
    let mut problems = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let de = serde_path_to_error::Deserializer::new(value, &mut track);
        serde_ignored::deserialize(de, |path| problems.push((ignored_path(&path), "unknown key".to_string())))
    };
    match result {
        Ok(v) => Attempt { value: Some(v), problems },
        Err(e) => {
            let inner = track.path().to_string();
            let inner = if inner == "." { String::new() } else { inner };
            problems.push((inner, describe(&e)));
            Attempt { value: None, problems }
        }
    }
}

/// The environment variable that sets `key`: `mqtt.url` → `FLOODGUARD__MQTT__URL`.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

fn join(base: &str, inner: &str) -> String {
    if base.is_empty() {
        inner.to_string()
    } else if inner.starts_with('[') {
        format!("{base}{inner}")
    } else {
        format!("{base}.{inner}")
    }
}

/// serde_ignored writes `mappings.0.filter`; we write `mappings[0].filter`.
fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// The reason of a deserialization error, without the `config` crate's own
/// location suffixes (we add file and key ourselves).
fn describe(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::Type { unexpected, expected, .. } => {
            format!("invalid type: {unexpected}, expected {expected}")
        }
        config::ConfigError::At { error, .. } => describe_boxed(error),
        config::ConfigError::NotFound(k) => format!("missing key {k:?}"),
        other => other.to_string(),
    }
}

fn describe_boxed(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    match e.downcast_ref::<config::ConfigError>() {
        Some(inner) => describe(inner),
        None => e.to_string(),
    }
}

/// Walks `sites[3].location.lat` through a config value.
fn lookup<'v>(root: &'v Value, key: &str) -> Option<&'v Value> {
    let mut v = root;
    for part in key.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            match &v.kind {
                ValueKind::Table(t) => v = t.get(name)?,
                _ => return None,
            }
        }
        for idx in rest.split(['[', ']']).filter(|s| !s.is_empty()) {
            let i: usize = idx.parse().ok()?;
            match &v.kind {
                ValueKind::Array(a) => v = a.get(i)?,
                _ => return None,
            }
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> Result<Value, config::ConfigError> {
        config::Config::builder().add_source(File::from_str(text, FileFormat::Toml)).build().map(|c| c.cache)
    }

    /// A big district: a table, arrays of tables with sub-tables and
    /// nested arrays of tables, multi-line strings.
    fn district(sites: usize) -> String {
        let mut t = String::from("title = \"压测区\"\n[district]\nid = \"d\"\n\n");
        for i in 0..10 {
            t.push_str(&format!("[[streets]]\nid = \"s{i}\"\n\n"));
        }
        for i in 0..sites {
            t.push_str(&format!(
                "[[sites]]\nid = \"S-{i:05}\"\nstreet = \"s{}\"\nlocation = {{ lat = 30.6, lon = 114.3 }}\n\
                 note = \"\"\"\n第 {i} 处\n\"\"\"\n[sites.params]\ndepth_m = {}.5\n[[sites.pumps]]\nno = 1\n\n",
                i % 10,
                i % 7
            ));
        }
        t
    }

    #[test]
    fn a_big_file_parsed_in_pieces_is_the_file_parsed_whole() {
        let text = district(8_000);
        assert!(text.len() > 4 * PIECE, "{} bytes: several pieces", text.len());
        let pieces = parse_in_pieces(&text).expect("parsed in pieces");
        assert_eq!(pieces, whole(&text).unwrap());
        assert_eq!(parse_in_pieces(&district(10)), None, "a small file is parsed whole");
    }

    #[test]
    fn pieces_that_do_not_simply_join_leave_it_to_the_whole_parse() {
        // A table defined twice: the whole parse refuses it, so must we.
        let twice = district(4_000) + "[district]\nid = \"again\"\n";
        assert!(whole(&twice).is_err());
        assert_eq!(parse_in_pieces(&twice), None);
        // A `[[sites]]` line inside a multi-line string is text, not a header.
        let mut quoted = district(2_000);
        quoted.push_str("[[sites]]\nid = \"Q\"\nnote = \"\"\"\n");
        quoted.push_str(&"x\n".repeat(PIECE / 2));
        quoted.push_str("[[sites]]\nid = \"in the string\"\n\"\"\"\n");
        let w = whole(&quoted).unwrap();
        assert_eq!(parse_in_pieces(&quoted).unwrap_or_else(|| w.clone()), w);
        // A syntax error in a late piece: the whole parse reports it.
        let broken = district(4_000) + "[[sites]]\nid = \n";
        assert!(whole(&broken).is_err());
        assert_eq!(parse_in_pieces(&broken), None);
    }

    #[test]
    fn env_names() {
        assert_eq!(env_var_for("mqtt.url"), "FLOODGUARD__MQTT__URL");
        assert_eq!(env_var_for("http.api_token"), "FLOODGUARD__HTTP__API_TOKEN");
    }

    #[test]
    fn key_paths_join() {
        assert_eq!(join("sites[2]", "location.lat"), "sites[2].location.lat");
        assert_eq!(join("mqtt", "mappings[0].x"), "mqtt.mappings[0].x");
        assert_eq!(join("a", "[1]"), "a[1]");
        assert_eq!(join("", "mqtt.url"), "mqtt.url");
    }
}

/// Rewrites the index of `array[i]` at the start of `key` to the element's
/// index in the file, when elements that failed to parse were left out.
pub(super) fn remap_index(key: &str, array: &str, file_index: &[usize]) -> String {
    let prefix = format!("{array}[");
    let Some(rest) = key.strip_prefix(&prefix) else {
        return key.to_string();
    };
    let Some(end) = rest.find(']') else {
        return key.to_string();
    };
    match rest[..end].parse::<usize>().ok().and_then(|i| file_index.get(i)) {
        Some(orig) => format!("{array}[{orig}]{}", &rest[end + 1..]),
        None => key.to_string(),
    }
}

#[cfg(test)]
mod remap_tests {
    #[test]
    fn remaps_to_file_indices() {
        assert_eq!(super::remap_index("sites[1].id", "sites", &[0, 2]), "sites[2].id");
        assert_eq!(super::remap_index("streets[1].id", "sites", &[0, 2]), "streets[1].id");
    }
}
