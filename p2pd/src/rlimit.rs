//! Open-files limit: raised to the hard limit at start, checked against the connection limits.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// File descriptors the daemon needs besides connections (sockets, state files, logs).
const OVERHEAD: u64 = 128;

/// Raises RLIMIT_NOFILE's soft limit to the hard limit and returns the limit in effect.
pub fn raise_nofile() -> u64 {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE");
            return 0;
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "open files limit");
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(before = soft, after = hard, "raised the open files limit");
            hard
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open files limit");
            soft
        }
    }
}

/// Warns when the limit cannot hold the configured connections (TCP: 1 fd each; QUIC shares
/// its UDP socket) plus overhead.
pub fn check(limit: u64, max_connections: u32, max_pending_inbound: u32) {
    let need = u64::from(max_connections) + u64::from(max_pending_inbound) + OVERHEAD;
    if limit > 0 && limit < need {
        tracing::warn!(
            limit,
            need,
            "the open files limit cannot hold limits.max_connections + limits.max_pending_inbound + overhead; raise LimitNOFILE (systemd) or ulimit -n, or lower the limits"
        );
    }
}
