//! The policy's hold on the transport, below the swarm:
//! - every dial to an address whose IP is banned or in `network.dial_deny_cidrs` is refused
//!   before a socket opens, whoever asked for it (a `connect`, a DHT query, a redial);
//! - every connection, inbound or outbound, must finish its security and muxer handshake within
//!   `limits.handshake_timeout`, so sockets that never complete one cannot hold a pending slot;
//! - an AutoNAT dial-back (the guard names its addresses here while it is under way) has
//!   [`DIAL_BACK_DEADLINE`]: the tested node waits 10 s for the answer, so a dial-back to an
//!   address behind a NAT that drops it must fail before that to be reported as unreachable.

use futures::future::BoxFuture;
use futures::FutureExt;
use ipnet::IpNet;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::Transport;
use libp2p::Multiaddr;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// How long an AutoNAT dial-back may take to connect and finish its handshake (at most
/// `limits.handshake_timeout`).
pub const DIAL_BACK_DEADLINE: Duration = Duration::from_secs(6);

/// Addresses never dialled: banned IPs and CIDRs (with the ban's reason) and the dial filter.
#[derive(Debug, Default)]
pub struct DialRules {
    /// Banned IPs (as /32, /128) and CIDRs, with the ban's reason.
    banned: super::netindex::NetIndex<String>,
    deny: Vec<IpNet>,
    /// Addresses (without `/p2p/`) an AutoNAT dial-back is dialling now, with how many.
    dial_backs: std::collections::HashMap<Multiaddr, u32>,
}

impl DialRules {
    /// Why `ip` must not be dialled, if it must not.
    pub fn refuses(&self, ip: &IpAddr) -> Option<String> {
        if let Some((net, reason)) = self.banned.covering(*ip).next() {
            return Some(if net.prefix_len() == net.max_prefix_len() {
                format!("{ip} is banned: {reason}")
            } else {
                format!("{ip} is banned ({net}): {reason}")
            });
        }
        self.deny
            .iter()
            .find(|n| n.contains(ip))
            .map(|n| format!("{ip} is in network.dial_deny_cidrs ({n})"))
    }

    pub fn refuses_addr(&self, addr: &Multiaddr) -> Option<String> {
        crate::addr::ip_of(addr).and_then(|ip| self.refuses(&ip))
    }

    /// An AutoNAT dial-back to `addr` starts.
    pub fn dial_back_started(&mut self, addr: &Multiaddr) {
        *self
            .dial_backs
            .entry(crate::addr::without_peer_id(addr))
            .or_default() += 1;
    }

    /// An AutoNAT dial-back to `addr` ended.
    pub fn dial_back_ended(&mut self, addr: &Multiaddr) {
        let key = crate::addr::without_peer_id(addr);
        if let Some(n) = self.dial_backs.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.dial_backs.remove(&key);
            }
        }
    }

    fn is_dial_back(&self, addr: &Multiaddr) -> bool {
        !self.dial_backs.is_empty()
            && self
                .dial_backs
                .contains_key(&crate::addr::without_peer_id(addr))
    }

    pub fn set_bans(&mut self, bans: impl Iterator<Item = (IpNet, String)>) {
        self.banned.clear();
        for (net, reason) in bans {
            self.banned.insert(net, reason);
        }
    }

    /// One more banned IP or CIDR.
    pub fn ban(&mut self, net: IpNet, reason: String) {
        self.banned.insert(net, reason);
    }

    /// A ban lifted.
    pub fn unban(&mut self, net: &IpNet) {
        self.banned.remove(net);
    }

    pub fn set_deny(&mut self, deny: Vec<IpNet>) {
        self.deny = deny;
    }
}

/// The rules as the policy (writer) and the transport (reader) share them.
pub type SharedRules = Arc<RwLock<DialRules>>;

#[derive(Debug, thiserror::Error)]
pub enum GateError<E> {
    #[error("{0}")]
    Refused(String),
    #[error("the handshake did not finish within {0:?} (limits.handshake_timeout)")]
    Timeout(Duration),
    #[error("the AutoNAT dial-back did not connect within {0:?}")]
    DialBackTimeout(Duration),
    #[error(transparent)]
    Inner(E),
}

/// Wraps a transport with the dial rules and the handshake deadline.
pub struct Gate<T> {
    inner: T,
    rules: SharedRules,
    timeout: Duration,
    dial_back_timeout: Duration,
}

impl<T> Gate<T> {
    pub fn new(inner: T, rules: SharedRules, timeout: Duration) -> Self {
        Gate {
            inner,
            rules,
            timeout,
            dial_back_timeout: timeout.min(DIAL_BACK_DEADLINE),
        }
    }
}

type Deadline<O, E> = BoxFuture<'static, Result<O, GateError<E>>>;

fn deadline<F, O, E>(fut: F, limit: Duration, late: fn(Duration) -> GateError<E>) -> Deadline<O, E>
where
    F: std::future::Future<Output = Result<O, E>> + Send + 'static,
    O: Send + 'static,
    E: Send + 'static,
{
    async move {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(GateError::Inner),
            Err(_) => Err(late(limit)),
        }
    }
    .boxed()
}

impl<T> Transport for Gate<T>
where
    T: Transport + Unpin,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    T::Output: Send + 'static,
    T::Error: Send + 'static,
{
    type Output = T::Output;
    type Error = GateError<T::Error>;
    type ListenerUpgrade = Deadline<T::Output, T::Error>;
    type Dial = Deadline<T::Output, T::Error>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner
            .listen_on(id, addr)
            .map_err(|e| e.map(GateError::Inner))
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let (refused, dial_back) = {
            let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
            (rules.refuses_addr(&addr), rules.is_dial_back(&addr))
        };
        if let Some(why) = refused {
            return Err(TransportError::Other(GateError::Refused(why)));
        }
        let dial = self
            .inner
            .dial(addr, opts)
            .map_err(|e| e.map(GateError::Inner))?;
        Ok(if dial_back {
            deadline(dial, self.dial_back_timeout, GateError::DialBackTimeout)
        } else {
            deadline(dial, self.timeout, GateError::Timeout)
        })
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let limit = self.timeout;
        Pin::new(&mut self.inner).poll(cx).map(|ev| {
            ev.map_upgrade(|u| deadline(u, limit, GateError::Timeout))
                .map_err(GateError::Inner)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_the_reason() {
        let mut r = DialRules::default();
        r.set_bans(
            [
                ("192.0.2.7/32".parse().unwrap(), "spam".to_string()),
                ("10.0.0.0/8".parse().unwrap(), "range".to_string()),
            ]
            .into_iter(),
        );
        r.set_deny(vec!["172.16.0.0/12".parse().unwrap()]);
        let why = |s: &str| r.refuses(&s.parse().unwrap());
        assert!(why("192.0.2.7").unwrap().contains("spam"));
        assert!(why("10.9.9.9").unwrap().contains("10.0.0.0/8"));
        assert!(why("172.16.1.1").unwrap().contains("dial_deny_cidrs"));
        assert!(why("192.0.2.8").is_none());
        let a: Multiaddr = "/ip4/192.0.2.7/udp/1/quic-v1".parse().unwrap();
        assert!(r.refuses_addr(&a).is_some());
    }

    /// A transport whose dials never connect.
    struct Silent;

    impl Transport for Silent {
        type Output = ();
        type Error = std::io::Error;
        type ListenerUpgrade = futures::future::Pending<Result<(), std::io::Error>>;
        type Dial = futures::future::Pending<Result<(), std::io::Error>>;

        fn listen_on(
            &mut self,
            _: ListenerId,
            a: Multiaddr,
        ) -> Result<(), TransportError<Self::Error>> {
            Err(TransportError::MultiaddrNotSupported(a))
        }

        fn remove_listener(&mut self, _: ListenerId) -> bool {
            false
        }

        fn dial(
            &mut self,
            _: Multiaddr,
            _: DialOpts,
        ) -> Result<Self::Dial, TransportError<Self::Error>> {
            Ok(futures::future::pending())
        }

        fn poll(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_dial_back_gives_up_before_the_tester_stops_waiting() {
        let rules = SharedRules::default();
        let mut gate = Gate::new(Silent, rules.clone(), Duration::from_secs(10));
        assert_eq!(gate.dial_back_timeout, DIAL_BACK_DEADLINE);
        // Scaled down a hundredfold, so the test takes a tenth of a second.
        gate.timeout = Duration::from_millis(100);
        gate.dial_back_timeout = DIAL_BACK_DEADLINE / 100;
        let target: Multiaddr = "/ip4/192.0.2.9/tcp/4001".parse().unwrap();
        let opts = DialOpts {
            role: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::New,
        };
        rules.write().unwrap().dial_back_started(&target);
        let with_peer = target
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(libp2p::PeerId::random()));
        let back = gate.dial(with_peer, opts).unwrap();
        rules.write().unwrap().dial_back_ended(&target);
        let other = gate.dial(target, opts).unwrap();
        match back.await {
            Err(GateError::DialBackTimeout(d)) => assert_eq!(d, DIAL_BACK_DEADLINE / 100),
            r => panic!("the dial-back ended with {:?}", r.err()),
        }
        match other.await {
            Err(GateError::Timeout(d)) => assert_eq!(d, Duration::from_millis(100)),
            r => panic!("the dial ended with {:?}", r.err()),
        }
    }
}
