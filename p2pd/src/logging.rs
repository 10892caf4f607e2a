//! Log output: native journald entries (structured fields) when stderr is the journal, JSON
//! lines with `--log-format json`, readable text on a terminal. The filter (`log.filter` /
//! `RUST_LOG`) can be replaced at runtime (`p2pctl log-level`, reload).

use crate::config::LogFormat;
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

type Filtered = tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

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

fn journald() -> Option<Output> {
    match tracing_journald::layer() {
        Ok(l) => Some(
            l.with_syslog_identifier("p2pd".into())
                // Event fields become PEER_ID, EVENT, REMOTE_ADDR, ... (no F_ prefix).
                .with_field_prefix(None)
                .boxed(),
        ),
        Err(e) => {
            eprintln!("p2pd: journald is not reachable ({e}); logging to stderr");
            None
        }
    }
}

fn text() -> Output {
    use std::io::IsTerminal;
    fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .boxed()
}

fn json() -> Output {
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .boxed()
}

pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let output = match format {
        LogFormat::Json => json(),
        LogFormat::Text => text(),
        LogFormat::Journald => journald().unwrap_or_else(text),
        LogFormat::Auto if stderr_is_journal() => journald().unwrap_or_else(text),
        LogFormat::Auto => text(),
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
    let f = EnvFilter::try_new(filter).map_err(|e| {
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
