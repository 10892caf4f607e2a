//! The node's side of the service manager contract: READY once every listener is bound and the
//! control socket accepts, a STATUS line kept current, WATCHDOG pings from the event loop itself
//! (so a stalled loop stops them), and a bounded drain at shutdown.

use super::Node;
use crate::sd::Notifier;
use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::SwarmEvent;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Interval;

/// Where the node stands with the service manager: which listeners have an address yet,
/// whether READY was sent, and the STATUS line last sent.
pub struct ServiceState {
    notifier: Arc<Notifier>,
    unbound: HashSet<ListenerId>,
    ready_sent: bool,
    last_status: String,
}

impl ServiceState {
    pub fn new(notifier: Arc<Notifier>) -> Self {
        ServiceState {
            notifier,
            unbound: HashSet::new(),
            ready_sent: false,
            last_status: String::new(),
        }
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// A listener that has no address yet.
    pub fn listener_added(&mut self, id: ListenerId) {
        self.unbound.insert(id);
    }

    /// A listener reported its address; true when every listener has one.
    pub fn listener_bound(&mut self, id: ListenerId) -> bool {
        self.unbound.remove(&id);
        self.unbound.is_empty()
    }

    /// Sends READY=1 with `status` the first time every listener is bound and the control
    /// socket is `serving`; true when it did.
    pub fn maybe_ready(&mut self, serving: bool, status: impl FnOnce() -> String) -> bool {
        if self.ready_sent || !self.unbound.is_empty() || !serving {
            return false;
        }
        self.ready_sent = true;
        let status = status();
        tracing::info!(event = "ready", status = %status, "ready");
        self.notifier.ready(&status);
        self.last_status = status;
        true
    }

    /// Sends STATUS= when it changed since the last one (after READY only).
    pub fn refresh(&mut self, status: String) {
        if self.ready_sent && status != self.last_status {
            self.notifier.status(&status);
            self.last_status = status;
        }
    }

    /// Someone else set STATUS= (a reload): the next refresh sends the summary again.
    pub fn status_changed(&mut self) {
        self.last_status.clear();
    }
}

/// One line for `systemctl status`: peers, connections, listen addresses.
pub fn status_line(peers: usize, inbound: u32, outbound: u32, addrs: &[String]) -> String {
    format!(
        "{peers} {} ({inbound} in, {outbound} out); listening on {}",
        if peers == 1 { "peer" } else { "peers" },
        if addrs.is_empty() {
            "nothing".into()
        } else {
            addrs.join(", ")
        }
    )
}

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
    fn status_line(&self) -> String {
        let (inbound, outbound) = self.peers.directions();
        let addrs: Vec<String> = self.swarm.listeners().map(|a| a.to_string()).collect();
        status_line(self.peers.len(), inbound, outbound, &addrs)
    }

    /// Sends READY=1 the first time every listener is bound and the control socket is up.
    pub(super) fn maybe_ready(&mut self) {
        let serving = self.health.serving();
        let line = self.status_line();
        self.service.maybe_ready(serving, || line);
    }

    /// Refreshes STATUS= when it changed (called every second).
    pub(super) fn refresh_status(&mut self) {
        let line = self.status_line();
        self.service.refresh(line);
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
        let notifier = self.service.notifier();
        notifier.stopping();
        // Ask for a little more than our own bound, so systemd never kills a clean shutdown.
        notifier.extend_timeout(timeout + Duration::from_secs(5));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A service state whose notifications land on a socket the test reads.
    fn service() -> (ServiceState, UnixDatagram, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let manager = UnixDatagram::bind(&path).unwrap();
        manager.set_nonblocking(true).unwrap();
        let notifier = Arc::new(Notifier::to_path(&path).unwrap());
        (ServiceState::new(notifier), manager, dir)
    }

    fn received(manager: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = manager.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn ready_waits_for_every_listener_and_the_control_socket_and_comes_once() {
        let (mut s, manager, _dir) = service();
        let (a, b) = (ListenerId::next(), ListenerId::next());
        s.listener_added(a);
        s.listener_added(b);
        assert!(!s.listener_bound(a));
        assert!(!s.maybe_ready(true, || "x".into()), "a listener is unbound");
        assert!(s.listener_bound(b));
        assert!(
            !s.maybe_ready(false, || "x".into()),
            "control socket not up"
        );
        assert!(s.maybe_ready(true, || "0 peers".into()));
        assert!(!s.maybe_ready(true, || "again".into()));
        assert_eq!(received(&manager), ["READY=1\nSTATUS=0 peers\n"]);
    }

    #[test]
    fn status_is_sent_when_it_changes_and_again_after_a_reload() {
        let (mut s, manager, _dir) = service();
        s.refresh("before ready".into());
        assert!(received(&manager).is_empty(), "no STATUS before READY");
        s.maybe_ready(true, || "0 peers".into());
        s.refresh("0 peers".into());
        s.refresh("1 peer".into());
        s.refresh("1 peer".into());
        // A reload set its own STATUS=; the summary goes out again.
        s.status_changed();
        s.refresh("1 peer".into());
        assert_eq!(
            received(&manager),
            [
                "READY=1\nSTATUS=0 peers\n",
                "STATUS=1 peer\n",
                "STATUS=1 peer\n"
            ]
        );
    }

    #[test]
    fn the_status_line_counts_peers_and_lists_addresses() {
        assert_eq!(
            status_line(1, 1, 0, &[]),
            "1 peer (1 in, 0 out); listening on nothing"
        );
        assert_eq!(
            status_line(
                2,
                1,
                2,
                &["/ip4/127.0.0.1/tcp/1".into(), "/ip6/::1/tcp/1".into()]
            ),
            "2 peers (1 in, 2 out); listening on /ip4/127.0.0.1/tcp/1, /ip6/::1/tcp/1"
        );
    }
}
