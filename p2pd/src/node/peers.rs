//! What the node knows about each connected peer, kept up to date from swarm events.

use libp2p::core::ConnectedPoint;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use p2pd_proto::control;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
struct Connection {
    address: Multiaddr,
    inbound: bool,
    since: SystemTime,
}

#[derive(Debug, Default, Clone)]
struct Peer {
    connections: HashMap<ConnectionId, Connection>,
    latency: Option<Duration>,
    agent: String,
    protocols: Vec<String>,
    listen_addrs: Vec<Multiaddr>,
}

#[derive(Debug, Default)]
pub struct PeerBook {
    peers: HashMap<PeerId, Peer>,
}

impl PeerBook {
    pub fn connected(&mut self, peer: PeerId, id: ConnectionId, endpoint: &ConnectedPoint) {
        let (address, inbound) = match endpoint {
            ConnectedPoint::Dialer { address, .. } => (address.clone(), false),
            ConnectedPoint::Listener { send_back_addr, .. } => (send_back_addr.clone(), true),
        };
        self.peers.entry(peer).or_default().connections.insert(
            id,
            Connection {
                address,
                inbound,
                since: SystemTime::now(),
            },
        );
    }

    pub fn disconnected(&mut self, peer: &PeerId, id: ConnectionId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.connections.remove(&id);
            if p.connections.is_empty() {
                self.peers.remove(peer);
            }
        }
    }

    pub fn identified(&mut self, peer: &PeerId, info: &libp2p::identify::Info) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.agent = info.agent_version.clone();
            p.protocols = info.protocols.iter().map(|s| s.to_string()).collect();
            p.protocols.sort();
            p.listen_addrs = info.listen_addrs.clone();
        }
    }

    pub fn pinged(&mut self, peer: &PeerId, rtt: Duration) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.latency = Some(rtt);
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// The address of one of the peer's connections (the oldest).
    pub fn address_of(&self, peer: &PeerId) -> Option<&Multiaddr> {
        self.peers
            .get(peer)?
            .connections
            .values()
            .min_by_key(|c| c.since)
            .map(|c| &c.address)
    }

    /// Connected peers.
    pub fn ids(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    /// The most connections any one peer has.
    pub fn max_per_peer(&self) -> usize {
        self.peers
            .values()
            .map(|p| p.connections.len())
            .max()
            .unwrap_or(0)
    }

    /// (inbound, outbound) connection counts.
    pub fn directions(&self) -> (u32, u32) {
        let mut counts = (0, 0);
        for c in self.peers.values().flat_map(|p| p.connections.values()) {
            if c.inbound {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        counts
    }

    pub fn to_proto(&self) -> control::PeersResponse {
        let mut peers: Vec<control::PeerEntry> = self
            .peers
            .iter()
            .map(|(id, p)| {
                let mut connections: Vec<control::PeerConnection> = p
                    .connections
                    .values()
                    .map(|c| control::PeerConnection {
                        address: c.address.to_string(),
                        direction: if c.inbound { "inbound" } else { "outbound" }.into(),
                        since_unix: c
                            .since
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0),
                    })
                    .collect();
                connections.sort_by_key(|c| c.since_unix);
                control::PeerEntry {
                    peer_id: id.to_string(),
                    connections,
                    latency_us: p.latency.map(|d| d.as_micros() as u64).unwrap_or(0),
                    agent: p.agent.clone(),
                    protocols: p.protocols.clone(),
                    listen_addrs: p.listen_addrs.iter().map(|a| a.to_string()).collect(),
                    gossip_score: 0.0,
                    policy_score: 0.0,
                }
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        control::PeersResponse { peers }
    }
}
