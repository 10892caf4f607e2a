//! Log output: JSON lines, or human-readable text; the filter comes from `log.filter`/RUST_LOG.

use crate::config::LogFormat;
use tracing_subscriber::{fmt, EnvFilter};

pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text | LogFormat::Auto | LogFormat::Journald => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init()
        }
    };
}
