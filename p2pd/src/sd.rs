//! The service manager's notification protocol (sd_notify): `READY=1`, `STATUS=`, `WATCHDOG=1`,
//! `RELOADING=1`, `STOPPING=1`, `EXTEND_TIMEOUT_USEC=`, sent as datagrams to `$NOTIFY_SOCKET`
//! (a path, or an abstract socket when it starts with `@`). Without `NOTIFY_SOCKET` every call
//! is a no-op, so the same code runs under systemd and in a terminal.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

fn address(raw: &str) -> std::io::Result<SocketAddr> {
    match raw.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(raw),
    }
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`; a broken value is logged and notifications are off.
    pub fn from_env() -> Self {
        let Some(raw) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        let raw = raw.to_string_lossy().into_owned();
        let target = address(&raw).and_then(|addr| Ok((UnixDatagram::unbound()?, addr)));
        match target {
            Ok(t) => Notifier { target: Some(t) },
            Err(e) => {
                tracing::warn!(notify_socket = %raw, error = %e, "cannot use NOTIFY_SOCKET; no service manager notifications");
                Notifier { target: None }
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (`KEY=VALUE` lines). Failures are logged, never fatal.
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!(error = %e, "sd_notify failed");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn extend_timeout(&self, by: Duration) {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// CLOCK_MONOTONIC in microseconds, as systemd expects with RELOADING=1.
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the watchdog is meant for this
/// process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
