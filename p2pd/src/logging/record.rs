//! One log event as p2pd writes it, whatever the output: level, target, source location,
//! message and fields, every value bounded, so a 1 MB topic name or multiaddr from a client or a
//! peer never reaches the journal (or stderr) in full.

use serde_json::Value;
use std::fmt::Write as _;
use tracing::field::{Field, Visit};

/// Longest value written for one field (bytes); longer ones are cut at a character boundary and
/// say how much was left out.
pub const MAX_VALUE: usize = 1024;

/// Most fields written for one event; the rest are counted, not written.
pub const MAX_FIELDS: usize = 32;

/// Fields that `log` records carry through tracing-log; the metadata already says them.
const LOG_FIELDS: [&str; 4] = ["log.target", "log.module_path", "log.file", "log.line"];

pub struct Record {
    pub level: tracing::Level,
    pub target: String,
    /// Source file without the build machine's directories (`libp2p-kad-0.49.0/src/behaviour.rs`).
    pub file: Option<String>,
    pub line: Option<u32>,
    pub message: String,
    /// Strings, or numbers and booleans (kept as such in JSON).
    pub fields: Vec<(&'static str, Value)>,
    pub dropped: usize,
}

impl Record {
    pub fn new(event: &tracing::Event<'_>) -> Record {
        use tracing_log::NormalizeEvent;
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut r = Record {
            level: *meta.level(),
            target: bounded(meta.target().to_string()),
            file: meta.file().map(short_path),
            line: meta.line(),
            message: String::new(),
            fields: Vec::new(),
            dropped: 0,
        };
        event.record(&mut r);
        r
    }

    /// The message followed by `key=value` for every field but `event`, as on a terminal: what
    /// journald's short view and `journalctl -p warning` show.
    pub fn line(&self) -> String {
        let mut out = self.message.clone();
        // `event` names the message for machines (EVENT=ban); people read the message.
        for (k, v) in self.fields.iter().filter(|(k, _)| *k != "event") {
            let sep = if out.is_empty() { "" } else { " " };
            let v = text(v);
            if v.is_empty() || v.contains(char::is_whitespace) || v.contains('"') {
                let _ = write!(out, "{sep}{k}={v:?}");
            } else {
                let _ = write!(out, "{sep}{k}={v}");
            }
        }
        if self.dropped > 0 {
            let _ = write!(out, " (+{} fields)", self.dropped);
        }
        out
    }

    fn push(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = text(&value).into_owned();
        } else if LOG_FIELDS.contains(&name) {
        } else if self.fields.len() < MAX_FIELDS {
            self.fields.push((name, value));
        } else {
            self.dropped += 1;
        }
    }
}

impl Visit for Record {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        // Writes at most a little past the bound: a huge Debug value is never built in full.
        let _ = write!(Limited(&mut s), "{value:?}");
        self.push(field, Value::String(bounded(s)));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let mut s = clip(value).to_string();
        if s.len() < value.len() {
            s.push_str(&format!("…[{} bytes]", value.len()));
        }
        self.push(field, Value::String(s));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }
}

/// A field's value as text.
pub fn text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}

/// A writer that stops taking text once it holds more than [`MAX_VALUE`] bytes.
struct Limited<'a>(&'a mut String);

impl std::fmt::Write for Limited<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len() > MAX_VALUE {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

fn clip(s: &str) -> &str {
    if s.len() <= MAX_VALUE {
        return s;
    }
    let mut end = MAX_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to [`MAX_VALUE`] bytes, saying so when it was longer.
pub fn bounded(s: String) -> String {
    if s.len() <= MAX_VALUE {
        return s;
    }
    clip(&s).to_string() + "…[truncated]"
}

/// A source path without the directories of the machine it was built on: dependencies' paths
/// start at their crate directory (`libp2p-kad-0.49.0/src/behaviour.rs`), ours are already
/// relative (`p2pd/src/node/mod.rs`).
pub fn short_path(file: &str) -> String {
    if !file.starts_with('/') {
        return file.to_string();
    }
    match file.rfind("/src/") {
        Some(i) => {
            let crate_start = file[..i].rfind('/').map_or(0, |j| j + 1);
            file[crate_start..].to_string()
        }
        None => file.rsplit('/').next().unwrap_or(file).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_paths_are_cut_to_the_crate() {
        assert_eq!(
            short_path("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/libp2p-kad-0.49.0/src/behaviour.rs"),
            "libp2p-kad-0.49.0/src/behaviour.rs"
        );
        assert_eq!(short_path("p2pd/src/node/mod.rs"), "p2pd/src/node/mod.rs");
        assert_eq!(
            short_path("/usr/src/rustc-1.90/library/std/src/io/mod.rs"),
            "std/src/io/mod.rs"
        );
        assert_eq!(short_path("/tmp/x.rs"), "x.rs");
    }

    #[test]
    fn long_values_are_bounded_at_a_char_boundary() {
        let long = "é".repeat(MAX_VALUE);
        let b = bounded(long.clone());
        assert!(b.len() < MAX_VALUE + 32, "{}", b.len());
        assert!(b.ends_with("…[truncated]"), "{b}");
        assert_eq!(bounded("short".into()), "short");
    }
}
