//! The node's answers in its own terms. `control/` turns them into the control API's protobuf
//! messages; nothing in the node knows the wire format.

use libp2p::{Multiaddr, PeerId};
use std::time::{Duration, SystemTime};

/// `p2pctl status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub peer_id: PeerId,
    pub version: &'static str,
    pub uptime: Duration,
    pub listen_addrs: Vec<Multiaddr>,
    pub external_addrs: Vec<Multiaddr>,
    pub metrics_addr: String,
    pub connections_inbound: u32,
    pub connections_outbound: u32,
    pub connected_peers: u32,
    pub routing_table_size: u32,
    pub nat_status: &'static str,
    pub open_files_limit: u64,
    pub dht_mode: String,
    pub mode: &'static str,
    pub bootstrap_configured: u32,
    pub bootstrap_connected: u32,
    /// How `nat_status` was learnt.
    pub nat_source: String,
    /// The `/p2p-circuit` addresses of the relay reservations this node holds.
    pub relay_addrs: Vec<Multiaddr>,
    /// This node relays for others (it offers circuit relay v2 `hop`).
    pub relay_serving: bool,
    pub connections_relayed: u32,
    pub hole_punches: super::nat::Punches,
    /// AutoNAT v2's results by address.
    pub address_tests: Vec<(Multiaddr, super::nat::Tested)>,
    /// The smallest receive and send buffers (bytes of data) of QUIC's sockets, if any.
    pub udp_buffers: Option<(usize, usize)>,
}

/// One connection of a connected peer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionView {
    pub address: Multiaddr,
    pub inbound: bool,
    pub since: SystemTime,
}

/// A connected peer, as `p2pctl peers` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub peer: PeerId,
    /// Oldest first.
    pub connections: Vec<ConnectionView>,
    pub latency: Option<Duration>,
    pub agent: String,
    pub protocols: Vec<String>,
    pub listen_addrs: Vec<Multiaddr>,
    pub gossip_score: f64,
    pub policy_score: f64,
}

/// The answer to a dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub peer: PeerId,
    /// Where the connection is (which may not be the address asked for).
    pub address: Multiaddr,
    pub already_connected: bool,
}

/// The answer to a DHT query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtAnswer {
    /// A peer and the addresses found for it.
    Peer { peer: PeerId, addrs: Vec<Multiaddr> },
    /// A record, and who sent it when a peer did.
    Record {
        key: Vec<u8>,
        value: Vec<u8>,
        from: Option<PeerId>,
    },
    /// Stored or announced.
    Done,
    /// Providers, or the closest peers.
    Peers(Vec<PeerId>),
}

/// A trusted peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedView {
    pub peer: PeerId,
    pub addr: Option<Multiaddr>,
    pub connected: bool,
    /// "config" or "runtime".
    pub source: &'static str,
}

/// One limit with its value, where the value came from, and how much of it is used.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitView {
    pub name: &'static str,
    pub value: String,
    pub usage: Option<String>,
    pub percent: Option<f64>,
    /// "default", "config" or "runtime".
    pub source: String,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub message: String,
    /// Settings that changed but apply only after a restart.
    pub restart_needed: Vec<String>,
}
