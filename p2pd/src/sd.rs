//! The service manager's notification protocol (sd_notify): `READY=1`, `STATUS=`, `WATCHDOG=1`,
//! `RELOADING=1`, `STOPPING=1`, `EXTEND_TIMEOUT_USEC=`, sent with the `sd-notify` crate to
//! `$NOTIFY_SOCKET`. The crate connects by path only; an abstract socket (`@name`, which some
//! service managers and containers use) gets the same datagram from a small fallback here — the
//! failing case is shown by `tests/abstract_notify_socket.rs`. Without `NOTIFY_SOCKET` every call
//! is a no-op, so the same code runs under systemd and in a terminal.

use sd_notify::NotifyState;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Target,
}

enum Target {
    Off,
    /// A socket path: `sd_notify::notify`.
    Path,
    /// An abstract socket, which `sd_notify` cannot reach (or, in tests, any address).
    Datagram(UnixDatagram, SocketAddr),
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`; a broken value is logged and notifications are off.
    pub fn from_env() -> Self {
        let Some(raw) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier {
                target: Target::Off,
            };
        };
        let raw = raw.to_string_lossy().into_owned();
        let Some(name) = raw.strip_prefix('@') else {
            return Notifier {
                target: Target::Path,
            };
        };
        let abstract_target = || -> std::io::Result<Target> {
            use std::os::linux::net::SocketAddrExt;
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
            Ok(Target::Datagram(UnixDatagram::unbound()?, addr))
        };
        match abstract_target() {
            Ok(target) => Notifier { target },
            Err(e) => {
                tracing::warn!(notify_socket = %raw, error = %e, "cannot use NOTIFY_SOCKET; no service manager notifications");
                Notifier {
                    target: Target::Off,
                }
            }
        }
    }

    /// Notifications to the datagram socket at `path`, whatever the environment says (tests).
    pub fn to_path(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Notifier {
            target: Target::Datagram(UnixDatagram::unbound()?, SocketAddr::from_pathname(path)?),
        })
    }

    /// No notifications (tests, or no service manager).
    pub fn off() -> Self {
        Notifier {
            target: Target::Off,
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.target, Target::Off)
    }

    /// Sends one notification. Failures are logged, never fatal.
    fn send(&self, states: &[NotifyState]) {
        let sent = match &self.target {
            Target::Off => return,
            Target::Path => sd_notify::notify(states),
            Target::Datagram(sock, addr) => {
                let message: String = states.iter().map(|s| format!("{s}\n")).collect();
                sock.send_to_addr(message.as_bytes(), addr).map(drop)
            }
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(&one_line(status))]);
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` that systemd 253 and later require beside it.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    pub fn extend_timeout(&self, by: Duration) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the watchdog is meant for this
/// process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
