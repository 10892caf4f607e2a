//! The guard: the part of the policy that sits in the swarm's connection hooks.
//!
//! Before the security handshake, per source address (IPv4 /32, IPv6 /64): bans, a cap on
//! connections still in their handshake (per address and in all), a cap on established inbound
//! connections, and a token bucket on new connections. Trusted addresses bypass the per-address
//! and pending limits; trusted peers bypass the per-address cap once their id is known. After the
//! handshake: peer bans, and `limits.max_per_peer` with room for AutoNAT dial-backs beside it
//! (see `dialback.rs`). A new ban closes every connection it covers.

use super::bans::{Ban, BanList, BanTarget};
use super::dialback::{DialBacks, DIAL_BACKS_PER_PEER};
use super::metrics::PolicyMetrics;
use super::rate::BucketConfig;
use crate::config::values::{IpRange, Text};
use ipnet::{IpNet, Ipv6Net};
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn denied(msg: String) -> ConnectionDenied {
    ConnectionDenied::new(Refused(msg))
}

/// The unit of per-address accounting: an IPv4 address, or the /64 an IPv6 address is in.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => Ipv6Net::new(v6, 64)
            .map(|n| IpAddr::V6(n.network()))
            .unwrap_or(ip),
    }
}

/// Per-address limits, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct AddressLimits {
    pub max_pending: u32,
    pub max_pending_per_ip: u32,
    pub max_inbound_per_ip: u32,
    pub new_per_ip: BucketConfig,
    pub max_per_peer: u32,
}

impl AddressLimits {
    pub fn from_config(l: &crate::config::Limits) -> Self {
        AddressLimits {
            max_pending: l.max_pending_inbound,
            max_pending_per_ip: l.max_pending_inbound_per_ip,
            max_inbound_per_ip: l.max_inbound_per_ip,
            new_per_ip: BucketConfig {
                capacity: l.inbound_burst_per_ip.into(),
                refill_per_sec: l.inbound_rate_per_ip.into(),
            },
            max_per_peer: l.max_per_peer,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Tokens {
    left: f64,
    at: Instant,
}

/// A peer's established connections: the ones `limits.max_per_peer` counts, and AutoNAT
/// dial-backs beyond it.
#[derive(Debug, Default, Clone, Copy)]
struct PerPeer {
    counted: u32,
    dial_backs: u32,
}

struct Connection {
    peer: PeerId,
    ip: Option<IpAddr>,
    inbound: bool,
    dial_back: bool,
}

/// Logs refusals at info level, at most `BURST` lines per `WINDOW`, then one summary line, so a
/// flood cannot fill the journal.
struct RefusalLog {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

const LOG_WINDOW: Duration = Duration::from_secs(10);
const LOG_BURST: u32 = 10;

impl RefusalLog {
    fn note(&mut self, remote: &Multiaddr, reason: &str, why: &str) {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= LOG_WINDOW {
            if self.suppressed > 0 {
                tracing::info!(event = "inbound_refused", suppressed = self.suppressed, "{} more inbound connections were refused in the last {}s (see p2p_inbound_refused_total)", self.suppressed, LOG_WINDOW.as_secs());
            }
            self.window_start = now;
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < LOG_BURST {
            self.logged += 1;
            tracing::info!(event = "inbound_refused", remote_addr = %remote, reason, "inbound connection refused: {why}");
        } else {
            self.suppressed += 1;
        }
    }
}

pub struct Guard {
    pub(super) bans: BanList,
    /// Peers that bypass limits (configured and runtime).
    pub(super) trusted_peers: HashSet<PeerId>,
    /// Rate limits, trust details, the ban store: kept here so the policy has one owner.
    pub(super) state: super::PolicyState,
    trusted_addrs: Vec<IpNet>,
    limits: AddressLimits,
    pending: HashMap<ConnectionId, Option<IpAddr>>,
    pending_per_ip: HashMap<IpAddr, u32>,
    inbound_per_ip: HashMap<IpAddr, u32>,
    new_per_ip: HashMap<IpAddr, Tokens>,
    connections: HashMap<ConnectionId, Connection>,
    per_peer: HashMap<PeerId, PerPeer>,
    /// Let in as dial-backs, not established yet.
    dial_backs_admitted: HashSet<ConnectionId>,
    dial_backs: DialBacks,
    /// Our dial-backs under way, with the addresses named in the transport's rules.
    dial_back_addrs: HashMap<ConnectionId, Vec<Multiaddr>>,
    /// `network.autonat_private_addrs`: dial-backs may go to private addresses.
    dial_back_private: bool,
    metrics: PolicyMetrics,
    log: RefusalLog,
    actions: VecDeque<ToSwarm<Infallible, Infallible>>,
    waker: Option<Waker>,
}

fn bump(map: &mut HashMap<IpAddr, u32>, key: IpAddr) {
    *map.entry(key).or_default() += 1;
}

fn drop_one(map: &mut HashMap<IpAddr, u32>, key: IpAddr) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl Guard {
    pub fn new(
        bans: BanList,
        limits: AddressLimits,
        metrics: PolicyMetrics,
        state: super::PolicyState,
    ) -> Self {
        Guard {
            bans,
            trusted_peers: HashSet::new(),
            state,
            trusted_addrs: Vec::new(),
            limits,
            pending: HashMap::new(),
            pending_per_ip: HashMap::new(),
            inbound_per_ip: HashMap::new(),
            new_per_ip: HashMap::new(),
            connections: HashMap::new(),
            per_peer: HashMap::new(),
            dial_backs_admitted: HashSet::new(),
            dial_backs: DialBacks::default(),
            dial_back_addrs: HashMap::new(),
            dial_back_private: false,
            metrics,
            log: RefusalLog {
                window_start: Instant::now(),
                logged: 0,
                suppressed: 0,
            },
            actions: VecDeque::new(),
            waker: None,
        }
    }

    pub fn metrics(&self) -> &PolicyMetrics {
        &self.metrics
    }

    /// The dial-backs the AutoNAT behaviours record for this guard.
    pub fn dial_backs(&self) -> DialBacks {
        self.dial_backs.clone()
    }

    /// `limits.max_per_peer`: room for one more connection of `peer`, or a dial-back beyond it
    /// when `dial_back` says the connection is one (asked only when the limit is reached).
    fn per_peer_room(
        &mut self,
        id: ConnectionId,
        peer: &PeerId,
        dial_back: impl FnOnce(&DialBacks) -> bool,
    ) -> Result<(), String> {
        let held = self.per_peer.get(peer).copied().unwrap_or_default();
        if held.counted < self.limits.max_per_peer || self.trusted_peers.contains(peer) {
            return Ok(());
        }
        if held.dial_backs < DIAL_BACKS_PER_PEER && dial_back(&self.dial_backs) {
            self.dial_backs_admitted.insert(id);
            return Ok(());
        }
        Err(format!(
            "peer {peer} already has {} connections (limits.max_per_peer)",
            held.counted
        ))
    }

    /// Whether AutoNAT dial-backs may go to addresses outside global IP space
    /// (`network.autonat_private_addrs`).
    pub fn set_dial_back_private(&mut self, yes: bool) {
        self.dial_back_private = yes;
    }

    pub fn set_limits(&mut self, limits: AddressLimits) {
        self.limits = limits;
    }

    pub fn set_trusted_addrs(&mut self, addrs: &[Text<IpRange>]) {
        self.trusted_addrs = addrs.iter().map(|r| r.0 .0).collect();
    }

    fn trusted_ip(&self, ip: &IpAddr) -> bool {
        self.trusted_addrs.iter().any(|n| n.contains(ip))
    }

    /// Connections in their handshake, and the most any one address holds.
    pub fn pending_usage(&self) -> (usize, u32) {
        (
            self.pending.len(),
            self.pending_per_ip.values().copied().max().unwrap_or(0),
        )
    }

    /// The most established inbound connections any one address holds.
    pub fn inbound_per_ip_usage(&self) -> u32 {
        self.inbound_per_ip.values().copied().max().unwrap_or(0)
    }

    fn refuse(
        &mut self,
        remote: &Multiaddr,
        reason: &'static str,
        why: String,
    ) -> ConnectionDenied {
        self.metrics.refused(reason);
        self.log.note(remote, reason, &why);
        denied(why)
    }

    /// The transport gives a dial-back a shorter deadline (`gate.rs`) while it is under way.
    fn dial_back_ended(&mut self, id: ConnectionId) {
        if let Some(addrs) = self.dial_back_addrs.remove(&id) {
            let mut rules = self.state.rules.write().unwrap_or_else(|e| e.into_inner());
            for a in &addrs {
                rules.dial_back_ended(a);
            }
        }
    }

    fn check_peer(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        match self.bans.peer_ban(peer, super::now_unix()) {
            Some(b) => Err(denied(format!("peer {peer} is banned: {}", b.reason))),
            None => Ok(()),
        }
    }

    fn ip_ban(&self, ip: &IpAddr) -> Option<String> {
        self.bans
            .ip_ban(ip, super::now_unix())
            .map(|b| format!("{ip} is banned ({}): {}", b.target, b.reason))
    }

    /// Takes a token from the address's new-connection bucket.
    fn take_token(&mut self, key: IpAddr, now: Instant) -> bool {
        let cfg = self.limits.new_per_ip;
        let t = self.new_per_ip.entry(key).or_insert(Tokens {
            left: cfg.capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(t.at).as_secs_f64();
        t.left = (t.left + elapsed * cfg.refill_per_sec).min(cfg.capacity);
        t.at = now;
        if t.left >= 1.0 {
            t.left -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets per-address state that a fresh entry would reproduce.
    pub fn sweep(&mut self, now: Instant) {
        let cfg = self.limits.new_per_ip;
        self.new_per_ip.retain(|_, t| {
            t.left + now.saturating_duration_since(t.at).as_secs_f64() * cfg.refill_per_sec
                < cfg.capacity
        });
        if self.new_per_ip.capacity() > 64 && self.new_per_ip.capacity() > 4 * self.new_per_ip.len()
        {
            self.new_per_ip.shrink_to_fit();
        }
    }

    /// Adds a ban and closes every connection it covers; returns how many.
    pub fn ban(&mut self, ban: Ban) -> usize {
        let closing: Vec<(ConnectionId, PeerId)> = self
            .connections
            .iter()
            .filter(|(_, c)| match &ban.target {
                BanTarget::Peer(p) => *p == c.peer,
                t => c.ip.is_some_and(|ip| t.covers_ip(&ip)),
            })
            .map(|(id, c)| (*id, c.peer))
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

impl NetworkBehaviour for Guard {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = crate::addr::ip_of(remote) else {
            // Relayed connections have no address of their own; the relay is accounted for.
            self.pending.insert(id, None);
            return Ok(());
        };
        if let Some(why) = self.ip_ban(&ip) {
            return Err(self.refuse(remote, "banned", why));
        }
        let key = ip_key(ip);
        if !self.trusted_ip(&ip) {
            let l = self.limits;
            if self.pending.len() >= l.max_pending as usize {
                let why = format!(
                    "{} connections are already in their handshake (limits.max_pending_inbound)",
                    self.pending.len()
                );
                return Err(self.refuse(remote, "pending", why));
            }
            if self.pending_per_ip.get(&key).copied().unwrap_or(0) >= l.max_pending_per_ip {
                let why = format!("{key} already has {} connections in their handshake (limits.max_pending_inbound_per_ip)", l.max_pending_per_ip);
                return Err(self.refuse(remote, "pending_per_ip", why));
            }
            if self.inbound_per_ip.get(&key).copied().unwrap_or(0) >= l.max_inbound_per_ip {
                let why = format!(
                    "{key} already has {} inbound connections (limits.max_inbound_per_ip)",
                    l.max_inbound_per_ip
                );
                return Err(self.refuse(remote, "inbound_per_ip", why));
            }
            if !self.take_token(key, Instant::now()) {
                let why = format!("{key} opens new connections faster than limits.inbound_rate_per_ip ({}/s, burst {})", l.new_per_ip.refill_per_sec, l.new_per_ip.capacity);
                return Err(self.refuse(remote, "rate_per_ip", why));
            }
        }
        self.pending.insert(id, Some(key));
        bump(&mut self.pending_per_ip, key);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if let Err(e) = self.check_peer(&peer) {
            self.metrics.refused("banned");
            return Err(e);
        }
        if let Some(ip) = crate::addr::ip_of(remote) {
            if let Some(why) = self.ip_ban(&ip) {
                return Err(self.refuse(remote, "banned", why));
            }
            let key = ip_key(ip);
            let held = self.inbound_per_ip.get(&key).copied().unwrap_or(0);
            let exempt = self.trusted_ip(&ip) || self.trusted_peers.contains(&peer);
            if !exempt && held >= self.limits.max_inbound_per_ip {
                let why = format!(
                    "{key} already has {held} inbound connections (limits.max_inbound_per_ip)"
                );
                return Err(self.refuse(remote, "inbound_per_ip", why));
            }
        }
        let now = Instant::now();
        if let Err(why) = self.per_peer_room(id, &peer, |d| d.take_expected(&peer, now)) {
            return Err(self.refuse(remote, "per_peer", why));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(p) = peer {
            self.check_peer(&p)?;
        }
        if self.dial_backs.is_dialing(id) {
            // A peer names the address it wants dialled back: never one on this node's own
            // networks or loopback (that would make the node a port scanner for any peer).
            if !self.dial_back_private {
                if let Some(a) = addresses.iter().find(|a| !crate::addr::is_global(a)) {
                    return Err(denied(format!(
                        "an AutoNAT dial-back to {a}, outside global IP space, is not made (network.autonat_private_addrs)"
                    )));
                }
            }
            let mut rules = self.state.rules.write().unwrap_or_else(|e| e.into_inner());
            for a in addresses {
                rules.dial_back_started(a);
            }
            drop(rules);
            self.dial_back_addrs.insert(id, addresses.to_vec());
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let ours = self.dial_backs.take_dialing(id);
        self.check_peer(&peer)?;
        if let Some(why) = crate::addr::ip_of(addr).and_then(|ip| self.ip_ban(&ip)) {
            return Err(denied(why));
        }
        self.per_peer_room(id, &peer, |_| ours).map_err(denied)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let ip = crate::addr::ip_of(e.endpoint.get_remote_address());
                let inbound = e.endpoint.is_listener();
                if let Some(key) = self.pending.remove(&e.connection_id).flatten() {
                    drop_one(&mut self.pending_per_ip, key);
                }
                if inbound {
                    if let Some(ip) = ip {
                        bump(&mut self.inbound_per_ip, ip_key(ip));
                    }
                }
                self.dial_back_ended(e.connection_id);
                let dial_back = self.dial_backs_admitted.remove(&e.connection_id);
                let held = self.per_peer.entry(e.peer_id).or_default();
                if dial_back {
                    held.dial_backs += 1;
                } else {
                    held.counted += 1;
                }
                self.connections.insert(
                    e.connection_id,
                    Connection {
                        peer: e.peer_id,
                        ip,
                        inbound,
                        dial_back,
                    },
                );
            }
            FromSwarm::ListenFailure(e) => {
                if let Some(key) = self.pending.remove(&e.connection_id).flatten() {
                    drop_one(&mut self.pending_per_ip, key);
                }
                self.dial_backs_admitted.remove(&e.connection_id);
            }
            FromSwarm::DialFailure(e) => {
                self.dial_back_ended(e.connection_id);
                self.dial_backs.take_dialing(e.connection_id);
                self.dial_backs_admitted.remove(&e.connection_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(c) = self.connections.remove(&e.connection_id) {
                    if let (true, Some(ip)) = (c.inbound, c.ip) {
                        drop_one(&mut self.inbound_per_ip, ip_key(ip));
                    }
                    if let Some(held) = self.per_peer.get_mut(&c.peer) {
                        if c.dial_back {
                            held.dial_backs = held.dial_backs.saturating_sub(1);
                        } else {
                            held.counted = held.counted.saturating_sub(1);
                        }
                        if held.counted == 0 && held.dial_backs == 0 {
                            self.per_peer.remove(&c.peer);
                        }
                    }
                }
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
