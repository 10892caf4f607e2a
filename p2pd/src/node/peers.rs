//! What the node knows about each connected peer, kept up to date from swarm events.

use super::{ConnectionView, PeerView};
use libp2p::core::ConnectedPoint;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

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

    /// Every connected peer, by peer id, with `scores(peer)` = (gossip, policy).
    pub fn views(&self, scores: impl Fn(&PeerId) -> (f64, f64)) -> Vec<PeerView> {
        let mut peers: Vec<PeerView> = self
            .peers
            .iter()
            .map(|(id, p)| {
                let mut connections: Vec<ConnectionView> = p
                    .connections
                    .values()
                    .map(|c| ConnectionView {
                        address: c.address.clone(),
                        inbound: c.inbound,
                        since: c.since,
                    })
                    .collect();
                connections.sort_by_key(|c| c.since);
                let (gossip_score, policy_score) = scores(id);
                PeerView {
                    peer: *id,
                    connections,
                    latency: p.latency,
                    agent: p.agent.clone(),
                    protocols: p.protocols.clone(),
                    listen_addrs: p.listen_addrs.clone(),
                    gossip_score,
                    policy_score,
                }
            })
            .collect();
        peers.sort_by_key(|p| p.peer.to_base58());
        peers
    }
}
