//! Shared health facts, written by the node's event loop and read by the HTTP endpoints.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds since `started` at the event loop's last turn.
    heartbeat_ms: AtomicU64,
    listeners_bound: AtomicBool,
    control_up: AtomicBool,
    needs_peers: AtomicBool,
    connected_peers: AtomicU32,
    routing_table_size: AtomicU32,
}

impl Health {
    pub fn new(needs_peers: bool) -> Self {
        Health {
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            listeners_bound: AtomicBool::new(false),
            control_up: AtomicBool::new(false),
            needs_peers: AtomicBool::new(needs_peers),
            connected_peers: AtomicU32::new(0),
            routing_table_size: AtomicU32::new(0),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The event loop turned within `within`.
    pub fn alive(&self, within: Duration) -> bool {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last) <= within
    }

    pub fn set_listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::Relaxed);
    }

    pub fn set_control_up(&self) {
        self.control_up.store(true, Ordering::Relaxed);
    }

    pub fn set_counts(&self, peers: usize, routing_table: usize) {
        self.connected_peers.store(peers as u32, Ordering::Relaxed);
        self.routing_table_size
            .store(routing_table as u32, Ordering::Relaxed);
    }

    pub fn connected_peers(&self) -> u32 {
        self.connected_peers.load(Ordering::Relaxed)
    }

    pub fn routing_table_size(&self) -> u32 {
        self.routing_table_size.load(Ordering::Relaxed)
    }

    /// Listeners bound and the control socket up: what READY=1 means to the service manager.
    pub fn serving(&self) -> bool {
        self.listeners_bound.load(Ordering::Relaxed) && self.control_up.load(Ordering::Relaxed)
    }

    /// Listeners bound, control socket up, and — where bootstrap peers are configured — a
    /// non-empty routing table with at least one peer actually connected (configured entries
    /// alone prove nothing).
    pub fn ready(&self) -> bool {
        self.listeners_bound.load(Ordering::Relaxed)
            && self.control_up.load(Ordering::Relaxed)
            && (!self.needs_peers.load(Ordering::Relaxed)
                || (self.routing_table_size() > 0 && self.connected_peers() > 0))
    }
}
