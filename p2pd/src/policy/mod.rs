//! Peer policy as a `NetworkBehaviour`: bans (peer, IP, CIDR) and the dial filter are enforced
//! before any protocol does work for a connection — inbound connections from a banned address
//! are refused before the security handshake — and a new ban closes what it covers at once.

pub mod bans;
pub mod rate;

use bans::{Ban, BanList, BanTarget};
use ipnet::IpNet;
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

pub fn now_unix() -> u64 {
    crate::blocks::store::now_unix()
}

pub struct Policy {
    pub bans: BanList,
    dial_deny: Vec<IpNet>,
    connections: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    actions: VecDeque<ToSwarm<Infallible, Infallible>>,
    waker: Option<Waker>,
}

fn denied(msg: String) -> ConnectionDenied {
    ConnectionDenied::new(Refused(msg))
}

impl Policy {
    pub fn new(bans: BanList, dial_deny: Vec<IpNet>) -> Self {
        Policy {
            bans,
            dial_deny,
            connections: HashMap::new(),
            actions: VecDeque::new(),
            waker: None,
        }
    }

    fn check_peer(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        match self.bans.peer_ban(peer, now_unix()) {
            Some(b) => Err(denied(format!("peer {peer} is banned: {}", b.reason))),
            None => Ok(()),
        }
    }

    fn check_addr(&self, addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        let Some(ip) = crate::addr::ip_of(addr) else {
            return Ok(());
        };
        match self.bans.ip_ban(&ip, now_unix()) {
            Some(b) => Err(denied(format!(
                "{ip} is banned ({}): {}",
                b.target, b.reason
            ))),
            None => Ok(()),
        }
    }

    pub fn set_dial_deny(&mut self, deny: Vec<IpNet>) {
        self.dial_deny = deny;
    }

    /// Replaces the ban list (reload), closing connections that newly banned targets cover.
    pub fn replace_bans(&mut self, list: BanList) {
        let old = std::mem::take(&mut self.bans.bans);
        self.bans.trusted = list.trusted;
        for b in list.bans {
            if old.contains(&b) {
                self.bans.add(b);
            } else {
                self.ban(b);
            }
        }
    }

    /// True when `addr` lies in `network.dial_deny_cidrs`.
    pub fn dial_denied(&self, addr: &Multiaddr) -> bool {
        crate::addr::ip_of(addr).is_some_and(|ip| self.dial_deny.iter().any(|n| n.contains(&ip)))
    }

    /// Adds a ban and closes every connection it covers.
    pub fn ban(&mut self, ban: Ban) -> usize {
        let closing: Vec<(ConnectionId, PeerId)> = self
            .connections
            .iter()
            .filter(|(_, (peer, ip))| match &ban.target {
                BanTarget::Peer(p) => p == peer,
                t => ip.is_some_and(|ip| t.covers_ip(&ip)),
            })
            .map(|(id, (peer, _))| (*id, *peer))
            .collect();
        for (id, peer) in &closing {
            self.actions.push_back(ToSwarm::CloseConnection {
                peer_id: *peer,
                connection: CloseConnection::One(*id),
            });
        }
        self.bans.add(ban);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        closing.len()
    }
}

impl NetworkBehaviour for Policy {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.check_addr(remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_peer(&peer)?;
        self.check_addr(remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(p) = peer {
            self.check_peer(&p)?;
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_peer(&peer)?;
        self.check_addr(addr)?;
        if self.dial_denied(addr) {
            return Err(denied(format!("{addr} is in network.dial_deny_cidrs")));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let ip = crate::addr::ip_of(e.endpoint.get_remote_address());
                self.connections.insert(e.connection_id, (e.peer_id, ip));
            }
            FromSwarm::ConnectionClosed(e) => {
                self.connections.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        ev: THandlerOutEvent<Self>,
    ) {
        match ev {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(a) = self.actions.pop_front() {
            return Poll::Ready(a);
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
