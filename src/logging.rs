//! Logs: tracing to stderr, as text or JSON (`[log]`); `RUST_LOG` overrides
//! the configured filter. Secrets never reach a log: they are `Secret`s,
//! whose Debug and Display print `***`, and every line passes through
//! [`crate::redact`] on its way out (URL credentials and queries, the
//! configured secrets' values, phone numbers), whoever wrote it — a
//! provider's error, a dependency's own log.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection};

/// Installs the global subscriber. Safe to call twice (the second is ignored).
pub fn init(log: &LogSection) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Redacted);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Makes a [`Line`] per event.
#[derive(Clone, Copy)]
struct Redacted;

impl<'a> MakeWriter<'a> for Redacted {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line(Vec::with_capacity(256))
    }
}

/// One formatted event, written to stderr redacted when it is complete.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().lock().write_all(crate::redact::text(&text).as_bytes());
    }
}
