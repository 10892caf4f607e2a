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

/// A library's events written per source line at most this many in a row...
const FLOOD_BURST: f64 = 10.0;
/// ...and then one per this many seconds, the next one written saying how many were left out.
const FLOOD_EVERY_SECS: f64 = 1.0;

/// What each source line of a library has left to write (see [`FloodGuard`]).
struct Bucket {
    tokens: f64,
    last: std::time::Instant,
    left_out: u64,
}

/// Keeps libraries' events from flooding the log: some fire once per message or per
/// connection attempt (Gossipsub warned "Send Queue full" 46,578 times in one publish burst,
/// formatting each message it could not send), so a busy or hostile peer could fill the
/// journal and spend the CPU on it. p2pd's own events are never held back: they are written
/// with their rates in mind, and audit events must all be there.
#[derive(Default)]
struct FloodGuard {
    buckets: std::sync::Mutex<std::collections::HashMap<String, Bucket>>,
}

impl FloodGuard {
    /// `None`: leave this event out; `Some(n)`: write it, saying `n` like it were left out.
    fn admit(&self, event: &tracing::Event<'_>) -> Option<u64> {
        use tracing_log::NormalizeEvent;
        let meta = event.metadata();
        if meta.target().starts_with("p2pd") {
            return Some(0);
        }
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or(meta);
        if meta.target().starts_with("p2pd") {
            return Some(0);
        }
        let key = format!(
            "{}:{}:{}",
            meta.target(),
            meta.file().unwrap_or(""),
            meta.line().unwrap_or(0)
        );
        self.admit_at(key, std::time::Instant::now())
    }

    fn admit_at(&self, key: String, now: std::time::Instant) -> Option<u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: FLOOD_BURST,
            last: now,
            left_out: 0,
        });
        let refill = now.duration_since(b.last).as_secs_f64() / FLOOD_EVERY_SECS;
        b.tokens = (b.tokens + refill).min(FLOOD_BURST);
        b.last = now;
        if b.tokens < 1.0 {
            b.left_out += 1;
            return None;
        }
        b.tokens -= 1.0;
        Some(std::mem::take(&mut b.left_out))
    }
}

/// The layer that writes events: held back by the flood guard, then written to the output.
struct Writer {
    output: Output,
    guard: FloodGuard,
}

impl<S: tracing::Subscriber> Layer<S> for Writer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let Some(left_out) = self.guard.admit(event) else {
            return;
        };
        let mut r = Record::new(event);
        if NOT_NEWS
            .iter()
            .any(|(t, m)| r.target == *t && r.message.starts_with(m))
        {
            return;
        }
        if left_out > 0 {
            r.fields.push(("left_out_like_this", left_out.into()));
        }
        self.output.write(&r);
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
        .with(Writer {
            output,
            guard: FloodGuard::default(),
        })
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
mod flood_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_library_line_writes_a_burst_then_one_a_second_and_says_how_many_it_left_out() {
        let g = FloodGuard::default();
        let t0 = Instant::now();
        let admitted = (0..1000)
            .filter(|_| g.admit_at("libp2p_gossipsub:b.rs:1".into(), t0).is_some())
            .count();
        assert_eq!(admitted, FLOOD_BURST as usize);
        // Another line has its own burst.
        assert_eq!(g.admit_at("libp2p_kad:k.rs:2".into(), t0), Some(0));
        // A second later one more is written, with the count of those left out.
        assert_eq!(g.admit_at("libp2p_gossipsub:b.rs:1".into(), t0), None);
        let t1 = t0 + Duration::from_secs_f64(FLOOD_EVERY_SECS);
        assert_eq!(
            g.admit_at("libp2p_gossipsub:b.rs:1".into(), t1),
            Some(1000 - FLOOD_BURST as u64 + 1)
        );
        assert_eq!(g.admit_at("libp2p_gossipsub:b.rs:1".into(), t1), None);
    }

    /// Captures which events the guard lets through.
    struct Probe(std::sync::Arc<std::sync::Mutex<Vec<String>>>, FloodGuard);

    impl<S: tracing::Subscriber> Layer<S> for Probe {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if self.1.admit(event).is_some() {
                self.0
                    .lock()
                    .unwrap()
                    .push(event.metadata().target().into());
            }
        }
    }

    #[test]
    fn p2pds_own_events_are_never_held_back() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let subscriber =
            tracing_subscriber::registry().with(Probe(seen.clone(), FloodGuard::default()));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..100 {
                tracing::warn!(target: "libp2p_gossipsub::behaviour", "Send Queue full");
                tracing::info!(target: "p2pd::control", "control request");
            }
        });
        let seen = seen.lock().unwrap();
        let ours = seen.iter().filter(|t| t.starts_with("p2pd")).count();
        assert_eq!(ours, 100);
        assert_eq!(seen.len() - ours, FLOOD_BURST as usize);
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
