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
        let address = crate::addr::remote_path(endpoint);
        let inbound = endpoint.is_listener();
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

    /// Connected peers that offer `protocol` (from identify), each with the address of a
    /// direct connection this node dialled (an address it can dial again).
    pub fn offering<'a>(
        &'a self,
        protocol: &'a str,
    ) -> impl Iterator<Item = (PeerId, Multiaddr)> + 'a {
        self.peers.iter().filter_map(move |(id, p)| {
            if !p.protocols.iter().any(|s| s == protocol) {
                return None;
            }
            let dialled = p
                .connections
                .values()
                .find(|c| !c.inbound && !crate::addr::is_relayed(&c.address))?;
            Some((*id, dialled.address.clone()))
        })
    }

    /// Where a connected peer can be dialled: its listen addresses (from identify), then the
    /// addresses this node dialled it at.
    pub fn known_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let Some(p) = self.peers.get(peer) else {
            return Vec::new();
        };
        let mut v: Vec<Multiaddr> = p.listen_addrs.clone();
        for c in p.connections.values().filter(|c| !c.inbound) {
            let a = crate::addr::without_peer_id(&c.address);
            if !v.contains(&a) {
                v.push(a);
            }
        }
        v
    }

    /// Connections through a relay now.
    pub fn relayed(&self) -> u32 {
        let all = self.peers.values().flat_map(|p| p.connections.values());
        all.filter(|c| crate::addr::is_relayed(&c.address)).count() as u32
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

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::{transport::PortUse, Endpoint};

    fn dialed(addr: &str) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: addr.parse().unwrap(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        }
    }

    fn accepted(from: &str) -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            send_back_addr: from.parse().unwrap(),
        }
    }

    #[test]
    fn connections_are_counted_by_direction_and_peer() {
        let mut book = PeerBook::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let id = ConnectionId::new_unchecked;
        book.connected(a, id(1), &dialed("/ip4/192.0.2.1/tcp/1"));
        book.connected(a, id(2), &accepted("/ip4/192.0.2.1/tcp/2"));
        book.connected(b, id(3), &accepted("/ip4/192.0.2.2/tcp/3"));
        assert_eq!(
            (book.len(), book.directions(), book.max_per_peer()),
            (2, (2, 1), 2)
        );
        // The oldest connection's address answers for the peer.
        assert_eq!(
            book.address_of(&a).unwrap().to_string(),
            "/ip4/192.0.2.1/tcp/1"
        );
        book.disconnected(&a, id(1));
        assert_eq!(
            book.address_of(&a).unwrap().to_string(),
            "/ip4/192.0.2.1/tcp/2"
        );
        book.disconnected(&a, id(2));
        assert_eq!((book.len(), book.directions()), (1, (1, 0)));
        assert!(book.address_of(&a).is_none());
        // A close for a connection never seen changes nothing.
        book.disconnected(&b, id(9));
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn circuits_count_as_relayed_whichever_side_opened_them() {
        let mut book = PeerBook::default();
        let relay =
            "/ip4/198.51.100.11/tcp/4001/p2p/12D3KooWC7PYq83rzy6gKaeFsRKtNtuiVrVitKFMAYMt6ib5modW";
        let (a, b) = (PeerId::random(), PeerId::random());
        let id = ConnectionId::new_unchecked;
        book.connected(a, id(1), &dialed(&format!("{relay}/p2p-circuit/p2p/{a}")));
        book.connected(
            b,
            id(2),
            &ConnectedPoint::Listener {
                local_addr: format!("{relay}/p2p-circuit").parse().unwrap(),
                send_back_addr: format!("/p2p/{b}").parse().unwrap(),
            },
        );
        book.connected(b, id(3), &accepted("/ip4/192.0.2.2/tcp/3"));
        assert_eq!(book.relayed(), 2);
        assert!(book
            .address_of(&b)
            .unwrap()
            .to_string()
            .contains("/p2p-circuit/p2p/"));
    }

    #[test]
    fn views_carry_identity_latency_and_scores() {
        let mut book = PeerBook::default();
        let a = PeerId::random();
        book.connected(
            a,
            ConnectionId::new_unchecked(1),
            &dialed("/ip4/192.0.2.1/tcp/1"),
        );
        book.pinged(&a, Duration::from_millis(3));
        book.identified(
            &a,
            &libp2p::identify::Info {
                public_key: libp2p::identity::Keypair::generate_ed25519().public(),
                protocol_version: "ipfs/0.1.0".into(),
                agent_version: "test/1".into(),
                listen_addrs: vec!["/ip4/192.0.2.1/tcp/4001".parse().unwrap()],
                protocols: vec![
                    libp2p::StreamProtocol::new("/b"),
                    libp2p::StreamProtocol::new("/a"),
                ],
                observed_addr: "/ip4/192.0.2.9/tcp/1".parse().unwrap(),
                signed_peer_record: None,
            },
        );
        // Nothing is recorded for a peer that is not connected.
        book.pinged(&PeerId::random(), Duration::from_millis(1));
        let views = book.views(|_| (1.5, -2.0));
        assert_eq!(views.len(), 1);
        let v = &views[0];
        assert_eq!(v.peer, a);
        assert_eq!(v.latency, Some(Duration::from_millis(3)));
        assert_eq!(v.agent, "test/1");
        assert_eq!(v.protocols, ["/a", "/b"]);
        assert_eq!((v.gossip_score, v.policy_score), (1.5, -2.0));
        assert!(!v.connections[0].inbound);
    }
}
