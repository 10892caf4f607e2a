//! Small facts about multiaddrs that several modules need.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Quic,
}

/// The peer id in a trailing `/p2p/ID`, if any.
pub fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// The address without its `/p2p/ID` part.
pub fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
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
    fn transports() {
        let t = |s: &str| transport_of(&s.parse().unwrap());
        assert_eq!(t("/ip4/0.0.0.0/tcp/4001"), Some(Transport::Tcp));
        assert_eq!(t("/ip6/::1/udp/1/quic-v1"), Some(Transport::Quic));
        assert_eq!(t("/ip4/0.0.0.0/udp/1/quic"), None);
        assert_eq!(t("/ip4/0.0.0.0/tcp/1/ws"), None);
    }
}
