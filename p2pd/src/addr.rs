//! Small facts about multiaddrs that several modules need.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Quic,
}

/// The peer id in a trailing `/p2p/ID`, if any (in a relayed address
/// `RELAY/p2p/R/p2p-circuit/p2p/ID`, the peer behind the relay, not the relay).
pub fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last()? {
        Protocol::P2p(id) => Some(id),
        _ => None,
    }
}

/// The address without its trailing `/p2p/ID` (a relay's own `/p2p/R` stays: the dial needs it).
pub fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if let Some(Protocol::P2p(_)) = a.iter().last() {
        a.pop();
    }
    a
}

/// Which of our transports a listen address needs, if it is one we support.
pub fn transport_of(addr: &Multiaddr) -> Option<Transport> {
    let mut it = addr.iter();
    match it.next()? {
        Protocol::Ip4(_)
        | Protocol::Ip6(_)
        | Protocol::Dns(_)
        | Protocol::Dns4(_)
        | Protocol::Dns6(_) => {}
        _ => return None,
    }
    match (it.next()?, it.next(), it.next()) {
        (Protocol::Tcp(_), None, None) => Some(Transport::Tcp),
        (Protocol::Udp(_), Some(Protocol::QuicV1), None) => Some(Transport::Quic),
        _ => None,
    }
}

/// True when the address is on the loopback interface.
pub fn is_loopback(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// True for an address through a relay (`.../p2p-circuit/...`).
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The IP of an address, if it starts with one.
pub fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_of_an_address_is_the_trailing_one() {
        let relay = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        let peer = "12D3KooWQZexzwEQ9vLNt8xQsKfchVwSxrcaKUxCcWhrPvpFwxjs";
        let a: Multiaddr = format!("/ip4/198.51.100.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}")
            .parse()
            .unwrap();
        assert_eq!(peer_id_of(&a).unwrap().to_string(), peer);
        assert_eq!(
            without_peer_id(&a).to_string(),
            format!("/ip4/198.51.100.1/tcp/4001/p2p/{relay}/p2p-circuit")
        );
        assert!(is_relayed(&a));
        let direct: Multiaddr = format!("/ip4/198.51.100.1/tcp/4001/p2p/{relay}")
            .parse()
            .unwrap();
        assert_eq!(peer_id_of(&direct).unwrap().to_string(), relay);
        assert_eq!(
            without_peer_id(&direct).to_string(),
            "/ip4/198.51.100.1/tcp/4001"
        );
        let bare: Multiaddr = "/ip4/198.51.100.1/tcp/4001".parse().unwrap();
        assert_eq!(peer_id_of(&bare), None);
        assert!(!is_relayed(&bare));
    }

    #[test]
    fn transports() {
        let t = |s: &str| transport_of(&s.parse().unwrap());
        assert_eq!(t("/ip4/0.0.0.0/tcp/4001"), Some(Transport::Tcp));
        assert_eq!(t("/ip6/::1/udp/1/quic-v1"), Some(Transport::Quic));
        assert_eq!(t("/ip4/0.0.0.0/udp/1/quic"), None);
        assert_eq!(t("/ip4/0.0.0.0/tcp/1/ws"), None);
    }
}
