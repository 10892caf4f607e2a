//! What the control API names, as types both sides parse the same way: a ban target (peer, IP
//! or CIDR) and a peer reference (a peer id, or a multiaddr ending in `/p2p/ID`).

use ipnet::IpNet;
pub use libp2p_identity::PeerId;
pub use multiaddr::Multiaddr;
use multiaddr::Protocol;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A ban names a peer, one IP address or a CIDR (kept with its host bits cleared).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanTarget {
    Peer(PeerId),
    Ip(IpAddr),
    Cidr(IpNet),
}

impl FromStr for BanTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(BanTarget::Ip(ip));
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(BanTarget::Cidr(net.trunc()));
        }
        s.parse::<PeerId>()
            .map(BanTarget::Peer)
            .map_err(|_| format!("{s:?} is not a peer id, an IP address or a CIDR (e.g. 12D3KooW..., 192.0.2.7, 10.0.0.0/8)"))
    }
}

impl fmt::Display for BanTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTarget::Peer(p) => write!(f, "{p}"),
            BanTarget::Ip(ip) => write!(f, "{ip}"),
            BanTarget::Cidr(n) => write!(f, "{n}"),
        }
    }
}

impl BanTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            BanTarget::Peer(_) => "peer",
            BanTarget::Ip(_) => "ip",
            BanTarget::Cidr(_) => "cidr",
        }
    }

    pub fn covers_ip(&self, ip: &IpAddr) -> bool {
        match self {
            BanTarget::Peer(_) => false,
            BanTarget::Ip(b) => b == ip,
            BanTarget::Cidr(n) => n.contains(ip),
        }
    }
}

impl serde::Serialize for BanTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BanTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A peer, and optionally where to dial it: `12D3KooW...` or `/ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRef {
    pub peer: PeerId,
    pub addr: Option<Multiaddr>,
}

impl From<PeerId> for PeerRef {
    fn from(peer: PeerId) -> Self {
        PeerRef { peer, addr: None }
    }
}

impl FromStr for PeerRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with('/') {
            let addr: Multiaddr = s.parse().map_err(|e| format!("{e}"))?;
            // The trailing /p2p/ID: behind a relay (`.../p2p/RELAY/p2p-circuit/p2p/ID`), the
            // peer is the last one named.
            let peer = match addr.iter().last() {
                Some(Protocol::P2p(id)) => id,
                _ => return Err("the multiaddr does not end in /p2p/PEER_ID".to_string()),
            };
            Ok(PeerRef {
                peer,
                addr: Some(addr),
            })
        } else {
            let peer = s.parse().map_err(|e| format!("{e}"))?;
            Ok(PeerRef { peer, addr: None })
        }
    }
}

impl fmt::Display for PeerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            Some(a) => write!(f, "{a}"),
            None => write!(f, "{}", self.peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn ban_targets_parse_and_print_back() {
        for (text, kind, shown) in [
            ("192.0.2.7", "ip", "192.0.2.7"),
            ("10.1.2.3/8", "cidr", "10.0.0.0/8"),
            ("2001:db8::/32", "cidr", "2001:db8::/32"),
            (PEER, "peer", PEER),
        ] {
            let t: BanTarget = text.parse().unwrap();
            assert_eq!((t.kind(), t.to_string().as_str()), (kind, shown));
        }
        for bad in ["not-a-peer", "300.1.1.1", "10.0.0.0/33"] {
            assert!(bad.parse::<BanTarget>().unwrap_err().contains("peer id"));
        }
        let net: BanTarget = "10.0.0.0/8".parse().unwrap();
        assert!(net.covers_ip(&"10.9.9.9".parse().unwrap()));
        assert!(!net.covers_ip(&"11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn peer_refs_take_an_id_or_an_address_with_one() {
        let r: PeerRef = PEER.parse().unwrap();
        assert_eq!((r.peer.to_string().as_str(), r.addr), (PEER, None));
        let a = format!("/ip4/192.0.2.1/tcp/4001/p2p/{PEER}");
        let r: PeerRef = a.parse().unwrap();
        assert_eq!(r.to_string(), a);
        assert!("/ip4/192.0.2.1/tcp/4001"
            .parse::<PeerRef>()
            .unwrap_err()
            .contains("/p2p/"));
    }
}
