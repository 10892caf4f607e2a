//! Log output: native journald entries (structured fields, and a MESSAGE that carries them)
//! when stderr is the journal, JSON lines with `--log-format json`, readable text on a terminal.
//! All three are written from one [`record::Record`], so every value is bounded the same way
//! and no build machine path is ever written. The filter (`log.filter` / `RUST_LOG`) can be
//! replaced at runtime (`p2pctl log-level`, reload).

mod journal;
mod record;

use crate::config::LogFormat;
use record::Record;
use std::io::Write as _;
use std::sync::OnceLock;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// True when stderr is the journal: `$JOURNAL_STREAM` names the device and inode of stderr.
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(st) => dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino),
        Err(_) => false,
    }
}

enum Output {
    Journal(journal::Journal),
    Json,
    Text,
}

impl Output {
    fn journal() -> Output {
        match journal::Journal::connect() {
            Ok(j) => Output::Journal(j),
            Err(e) => {
                eprintln!(
                    "p2pd: journald is not reachable at {} ({e}); logging to stderr",
                    journal::SOCKET
                );
                Output::Text
            }
        }
    }

    fn write(&self, r: &Record) {
        let line = match self {
            Output::Journal(j) => return j.send(r),
            Output::Json => json_line(r),
            Output::Text => text_line(r),
        };
        // One write per line, so lines from different threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn timestamp() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

fn text_line(r: &Record) -> String {
    format!(
        "{} {:>5} {}: {}\n",
        timestamp(),
        r.level,
        r.target,
        r.line()
    )
}

fn json_line(r: &Record) -> String {
    let mut m = serde_json::Map::new();
    m.insert("timestamp".into(), timestamp().into());
    m.insert("level".into(), r.level.as_str().into());
    m.insert("target".into(), r.target.clone().into());
    m.insert("message".into(), r.message.clone().into());
    for (k, v) in &r.fields {
        // A field named like one of the above keeps its value under a prefixed key.
        let key = if m.contains_key(*k) {
            format!("field_{k}")
        } else {
            (*k).to_string()
        };
        m.insert(key, v.clone());
    }
    let mut line = serde_json::Value::Object(m).to_string();
    line.push('\n');
    line
}

/// Messages of libraries that are not news on a p2pd node, as (target, message prefix):
/// libp2p-kad warns "Failed to trigger bootstrap: No known peers." whenever a listen address
/// appears while no peer is connected, i.e. on every start of a standalone node (its automatic
/// bootstrap cannot be turned off). p2pd bootstraps itself when it knows a peer, logs a skipped
/// bootstrap at debug, and `p2pctl diag` reports an empty routing table with the fix.
const NOT_NEWS: [(&str, &str); 1] = [(
    "libp2p_kad::behaviour",
    "Failed to trigger bootstrap: No known peers",
)];

impl<S: tracing::Subscriber> Layer<S> for Output {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let r = Record::new(event);
        if NOT_NEWS
            .iter()
            .any(|(t, m)| r.target == *t && r.message.starts_with(m))
        {
            return;
        }
        self.write(&r);
    }
}

/// Parses a log filter. Only ASCII is accepted: targets, levels and span names are ASCII, and
/// tracing-subscriber's parser panics on some multi-byte text (found by the `config` fuzz
/// target: a non-ASCII `RUST_LOG` stopped the daemon with a panic instead of a config error).
pub fn parse_filter(filter: &str) -> Result<EnvFilter, String> {
    if let Some(c) = filter.chars().find(|c| !c.is_ascii()) {
        return Err(format!("it contains {c:?}; a filter is ASCII"));
    }
    EnvFilter::try_new(filter).map_err(|e| e.to_string())
}

pub fn init(format: LogFormat, filter: &str) {
    let filter = parse_filter(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let output = match format {
        LogFormat::Json => Output::Json,
        LogFormat::Text => Output::Text,
        LogFormat::Journald => Output::journal(),
        LogFormat::Auto if stderr_is_journal() => Output::journal(),
        LogFormat::Auto => Output::Text,
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Replaces the log filter; the text is validated first.
pub fn set_filter(filter: &str) -> Result<(), String> {
    let f = parse_filter(filter).map_err(|e| {
        format!(
            "\"{filter}\" is not a valid filter ({e}); e.g. \"info\" or \"info,libp2p_kad=debug\""
        )
    })?;
    match FILTER.get() {
        Some(h) => h
            .reload(f)
            .map_err(|e| format!("cannot change the log filter: {e}")),
        None => Err("logging is not initialised".into()),
    }
}

#[cfg(test)]
mod filter_tests {
    use super::parse_filter;

    #[test]
    fn a_non_ascii_filter_is_refused_not_a_panic() {
        // What the `config` fuzz target found as RUST_LOG: tracing-subscriber's parser panics
        // on it ("end byte index 87 is not a char boundary").
        let found = "infct a\u{fffd}\u{fffd}a bootstrap node: DHT server, no outbound bootst\u{1}\0\0\0\0\0\0\0e\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}[network]";
        let e = parse_filter(found).unwrap_err();
        assert!(e.contains("a filter is ASCII"), "{e}");
        assert!(parse_filter("info,libp2p_kad=debug").is_ok());
        assert!(parse_filter("info,[").is_err());
    }
}
