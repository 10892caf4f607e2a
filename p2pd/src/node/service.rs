//! The node's side of the service manager contract: READY once every listener is bound and the
//! control socket accepts, a STATUS line kept current, WATCHDOG pings from the event loop itself
//! (so a stalled loop stops them), and a bounded drain at shutdown.

use super::Node;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use std::time::Duration;
use tokio::time::Interval;

/// Waits for the next watchdog tick, or forever when there is no watchdog.
pub(super) async fn watchdog_tick(watchdog: &mut Option<Interval>) {
    match watchdog {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

impl Node {
    /// One line for `systemctl status`: peers, connections, listen addresses.
    fn status_line(&self) -> String {
        let (inbound, outbound) = self.peers.directions();
        let addrs: Vec<String> = self.swarm.listeners().map(|a| a.to_string()).collect();
        let n = self.peers.len();
        format!(
            "{n} {} ({inbound} in, {outbound} out); listening on {}",
            if n == 1 { "peer" } else { "peers" },
            if addrs.is_empty() {
                "nothing".into()
            } else {
                addrs.join(", ")
            }
        )
    }

    /// Sends READY=1 the first time every listener is bound and the control socket is up.
    pub(super) fn maybe_ready(&mut self) {
        if self.service.ready_sent || !self.service.unbound.is_empty() || !self.health.serving() {
            return;
        }
        self.service.ready_sent = true;
        let status = self.status_line();
        tracing::info!(event = "ready", status = %status, "ready");
        self.service.notifier.ready(&status);
        self.service.last_status = status;
    }

    /// Refreshes STATUS= when it changed (called every second).
    pub(super) fn refresh_status(&mut self) {
        if !self.service.ready_sent {
            return;
        }
        let status = self.status_line();
        if status != self.service.last_status {
            self.service.notifier.status(&status);
            self.service.last_status = status;
        }
    }

    /// Debug builds only: while the file named by `P2PD_DEBUG_STALL_FILE` exists, the event loop
    /// blocks, so tests can watch the watchdog pings stop. Release builds have no such hook.
    #[cfg(debug_assertions)]
    pub(super) fn debug_stall(&self) {
        if let Some(path) = std::env::var_os("P2PD_DEBUG_STALL_FILE") {
            while std::path::Path::new(&path).exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// STOPPING=1, stop listening, close connections and let them finish for at most the
    /// shutdown timeout.
    pub(super) async fn drain(&mut self) {
        let timeout = self.config.shutdown.timeout.0 .0;
        self.service.notifier.stopping();
        // Ask for a little more than our own bound, so systemd never kills a clean shutdown.
        self.service
            .notifier
            .extend_timeout(timeout + Duration::from_secs(5));
        for id in self.listeners.drain() {
            self.swarm.remove_listener(id);
        }
        let peers: Vec<_> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while self.swarm.network_info().num_peers() > 0 {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(SwarmEvent::ConnectionClosed {
                    peer_id,
                    connection_id,
                    ..
                }) => {
                    self.peers.disconnected(&peer_id, connection_id);
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(timeout = ?timeout, remaining = self.swarm.network_info().num_peers(), "shutdown timeout reached with connections still open");
                    break;
                }
            }
        }
    }
}
