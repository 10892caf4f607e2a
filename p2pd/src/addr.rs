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

/// The address a connection reaches its peer at, as `p2pctl peers` shows it. A circuit
/// accepted through our relay reservation is reported by libp2p as `/p2p/SRC` alone; it is
/// shown as the path it took, `RELAY/p2p/R/p2p-circuit/p2p/SRC`, so it reads (and counts) as
/// relayed like a circuit this node dialled.
pub fn remote_path(endpoint: &libp2p::core::ConnectedPoint) -> Multiaddr {
    use libp2p::core::ConnectedPoint;
    match endpoint {
        ConnectedPoint::Dialer { address, .. } => address.clone(),
        ConnectedPoint::Listener {
            local_addr,
            send_back_addr,
        } if is_relayed(local_addr) && !is_relayed(send_back_addr) => send_back_addr
            .iter()
            .fold(local_addr.clone(), Multiaddr::with),
        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
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

/// True for an address whose IP is reachable across the internet: not private, loopback,
/// link-local, shared (CGNAT), documentation, multicast or unspecified space. Relayed and DNS
/// addresses are not.
pub fn is_global(addr: &Multiaddr) -> bool {
    !is_relayed(addr) && ip_of(addr).is_some_and(is_global_ip)
}

pub fn is_global_ip(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_global_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accepted_circuit_reads_as_the_path_through_the_relay() {
        use libp2p::core::{transport::PortUse, ConnectedPoint, Endpoint};
        let relay =
            "/ip4/198.51.100.11/tcp/4001/p2p/12D3KooWC7PYq83rzy6gKaeFsRKtNtuiVrVitKFMAYMt6ib5modW";
        let src = "12D3KooWCQdsjtLVbkHoWTtUnRHE9AsH5r9QwXGarFstsf72JybK";
        let accepted = ConnectedPoint::Listener {
            local_addr: format!("{relay}/p2p-circuit").parse().unwrap(),
            send_back_addr: format!("/p2p/{src}").parse().unwrap(),
        };
        let path = remote_path(&accepted);
        assert_eq!(path.to_string(), format!("{relay}/p2p-circuit/p2p/{src}"));
        assert!(is_relayed(&path));
        assert_eq!(peer_id_of(&path).unwrap().to_string(), src);
        let direct = ConnectedPoint::Listener {
            local_addr: "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            send_back_addr: "/ip4/127.0.0.1/tcp/5000".parse().unwrap(),
        };
        assert_eq!(remote_path(&direct).to_string(), "/ip4/127.0.0.1/tcp/5000");
        let dialled = ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        assert_eq!(remote_path(&dialled).to_string(), "/ip4/127.0.0.1/tcp/4001");
    }

    #[test]
    fn global_addresses_are_the_ones_reachable_across_the_internet() {
        for a in [
            "/ip4/8.8.8.8/tcp/4001",
            "/ip4/185.199.108.1/udp/4001/quic-v1",
            "/ip6/2606:4700::1/tcp/4001",
        ] {
            assert!(is_global(&a.parse().unwrap()), "{a}");
        }
        for a in [
            "/ip4/10.1.2.3/tcp/4001",
            "/ip4/172.20.0.1/tcp/4001",
            "/ip4/192.168.1.5/tcp/4001",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/169.254.1.1/tcp/4001",
            "/ip4/100.64.0.1/tcp/4001",
            "/ip4/198.51.100.7/tcp/4001",
            "/ip4/198.18.0.1/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::1/tcp/4001",
            "/ip6/fd00::1/tcp/4001",
            "/ip6/fe80::1/tcp/4001",
            "/ip6/2001:db8::1/tcp/4001",
            "/ip6/::ffff:10.0.0.1/tcp/4001",
            "/dns4/example.com/tcp/4001",
            "/ip4/8.8.8.8/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit",
        ] {
            assert!(!is_global(&a.parse().unwrap()), "{a}");
        }
    }

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
