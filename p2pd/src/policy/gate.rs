//! The policy's hold on the transport, below the swarm:
//! - every dial to an address whose IP is banned or in `network.dial_deny_cidrs` is refused
//!   before a socket opens, whoever asked for it (a `connect`, a DHT query, a redial);
//! - every connection, inbound or outbound, must finish its security and muxer handshake within
//!   `limits.handshake_timeout`, so sockets that never complete one cannot hold a pending slot.

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

/// Addresses never dialled: banned IPs and CIDRs (with the ban's reason) and the dial filter.
#[derive(Debug, Default)]
pub struct DialRules {
    /// Banned IPs (as /32, /128) and CIDRs, with the ban's reason.
    banned: super::netindex::NetIndex<String>,
    deny: Vec<IpNet>,
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
    #[error(transparent)]
    Inner(E),
}

/// Wraps a transport with the dial rules and the handshake deadline.
pub struct Gate<T> {
    inner: T,
    rules: SharedRules,
    timeout: Duration,
}

impl<T> Gate<T> {
    pub fn new(inner: T, rules: SharedRules, timeout: Duration) -> Self {
        Gate {
            inner,
            rules,
            timeout,
        }
    }
}

type Deadline<O, E> = BoxFuture<'static, Result<O, GateError<E>>>;

fn deadline<F, O, E>(fut: F, limit: Duration) -> Deadline<O, E>
where
    F: std::future::Future<Output = Result<O, E>> + Send + 'static,
    O: Send + 'static,
    E: Send + 'static,
{
    async move {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(GateError::Inner),
            Err(_) => Err(GateError::Timeout(limit)),
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
        let refused = match self.rules.read() {
            Ok(rules) => rules.refuses_addr(&addr),
            Err(poisoned) => poisoned.into_inner().refuses_addr(&addr),
        };
        if let Some(why) = refused {
            return Err(TransportError::Other(GateError::Refused(why)));
        }
        let dial = self
            .inner
            .dial(addr, opts)
            .map_err(|e| e.map(GateError::Inner))?;
        Ok(deadline(dial, self.timeout))
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let limit = self.timeout;
        Pin::new(&mut self.inner).poll(cx).map(|ev| {
            ev.map_upgrade(|u| deadline(u, limit))
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
}
