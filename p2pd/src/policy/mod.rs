//! Peer policy, as one component that owns all of its state: bans (peer, IP, CIDR), trusted
//! peers and addresses, connection limits (global, per address, pending, memory), per-peer rate
//! limits and misbehaviour scores. It is a `NetworkBehaviour` composed of the [`guard::Guard`]
//! (bans, per-address accounting, trust), libp2p's `connection-limits` and
//! `memory-connection-limits`; the node's event loop only routes commands and events to the
//! methods here. The transport side ([`gate`]) refuses dials to banned addresses before a socket
//! opens. `bans.json` is an output, written by [`store`] before a change is acknowledged.

pub mod bans;
pub mod dialback;
pub mod gate;
mod guard;
pub mod metrics;
pub mod netindex;
pub mod rate;
pub mod store;
#[cfg(test)]
mod tests;

use crate::config::{Config, Limits};
use bans::{Ban, BanList, BanTarget, Change};
use gate::SharedRules;
use guard::{AddressLimits, Guard};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{connection_limits, memory_connection_limits, Multiaddr, PeerId};
use metrics::PolicyMetrics;
use rate::{Admit, BucketConfig, RateLimiter};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use store::{Ack, BanStore, Edits};

pub fn now_unix() -> u64 {
    crate::blocks::store::now_unix()
}

const MAX_REDIAL_BACKOFF: Duration = Duration::from_secs(300);

/// A trusted peer: bypasses connection limits, gets the larger rate limit, is kept connected.
#[derive(Debug, Clone)]
pub struct TrustedPeer {
    pub addr: Option<Multiaddr>,
    pub from_config: bool,
    pub from_runtime: bool,
    next_dial: Instant,
    backoff: Duration,
}

/// Why a trust removal was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrust {
    NotTrusted,
    FromConfig,
}

/// State the policy keeps beside the guard's connection accounting.
pub struct PolicyState {
    pub rate: RateLimiter,
    pub trusted: BTreeMap<PeerId, TrustedPeer>,
    pub ban_duration: Duration,
    store: BanStore,
    /// The store's epoch this memory belongs to (see `store::Revert`).
    epoch: u64,
    rules: SharedRules,
    /// Limits changed with `limits set` since the config was last read.
    pub runtime_limits: std::collections::BTreeSet<String>,
}

#[derive(NetworkBehaviour)]
#[behaviour(to_swarm = "Infallible", prelude = "libp2p::swarm::derive_prelude")]
pub struct Policy {
    guard: Guard,
    limits: connection_limits::Behaviour,
    memory: memory_connection_limits::Behaviour,
}

fn connection_limits(l: &Limits) -> connection_limits::ConnectionLimits {
    // Pending inbound connections are the guard's: trusted addresses bypass that limit. So is
    // `max_per_peer`, with room for AutoNAT dial-backs beside it: this is the ceiling of both.
    connection_limits::ConnectionLimits::default()
        .with_max_established(Some(l.max_connections))
        .with_max_established_incoming(Some(l.max_inbound))
        .with_max_established_outgoing(Some(l.max_outbound))
        .with_max_established_per_peer(Some(l.max_per_peer + dialback::DIAL_BACKS_PER_PEER))
}

fn memory_limits(l: &Limits) -> memory_connection_limits::Behaviour {
    memory_connection_limits::Behaviour::with_max_bytes(
        usize::try_from(l.max_memory.0 .0).unwrap_or(usize::MAX),
    )
}

fn buckets(c: &Config) -> (BucketConfig, BucketConfig, f64) {
    let r = &c.rate_limit;
    (
        BucketConfig {
            capacity: r.capacity.into(),
            refill_per_sec: r.refill_per_sec.into(),
        },
        BucketConfig {
            capacity: r.trusted_capacity.into(),
            refill_per_sec: r.trusted_refill_per_sec.into(),
        },
        r.ban_threshold as f64,
    )
}

impl Policy {
    pub fn new(
        config: &Config,
        bans: BanList,
        store: BanStore,
        rules: SharedRules,
        metrics: PolicyMetrics,
    ) -> Self {
        let (normal, trusted, threshold) = buckets(config);
        let guard = Guard::new(
            bans,
            AddressLimits::from_config(&config.limits),
            metrics,
            PolicyState {
                rate: RateLimiter::new(normal, trusted, threshold),
                trusted: BTreeMap::new(),
                ban_duration: config.rate_limit.ban_duration.0 .0,
                store,
                epoch: 0,
                rules,
                runtime_limits: Default::default(),
            },
        );
        let mut policy = Policy {
            guard,
            limits: connection_limits::Behaviour::new(connection_limits(&config.limits)),
            memory: memory_limits(&config.limits),
        };
        let runtime: Vec<PeerId> = policy.guard.bans.trusted.iter().copied().collect();
        for p in runtime {
            policy.add_trust(p, None, false);
        }
        policy.reconfigure(config);
        policy.sync_rules();
        policy
    }

    pub fn metrics(&self) -> &PolicyMetrics {
        self.guard.metrics()
    }

    /// What the AutoNAT behaviours record so their dial-backs find room (`dialback.rs`).
    pub fn dial_backs(&self) -> dialback::DialBacks {
        self.guard.dial_backs()
    }

    fn state(&self) -> &PolicyState {
        &self.guard.state
    }

    fn state_mut(&mut self) -> &mut PolicyState {
        &mut self.guard.state
    }

    /// Publishes the IP/CIDR bans to the transport's dial rules.
    fn sync_rules(&mut self) {
        let now = now_unix();
        let nets: Vec<_> = self
            .guard
            .bans
            .iter()
            .filter(|b| b.active(now))
            .filter_map(|b| match &b.target {
                BanTarget::Ip(ip) => Some((ipnet::IpNet::from(*ip), b.reason.clone())),
                BanTarget::Cidr(n) => Some((*n, b.reason.clone())),
                BanTarget::Peer(_) => None,
            })
            .collect();
        if let Ok(mut r) = self.state().rules.write() {
            r.set_bans(nets.into_iter());
        }
    }

    fn set_dial_deny(&mut self, config: &Config) {
        let deny = config.network.dial_deny_cidrs.iter().map(|c| c.0).collect();
        if let Ok(mut r) = self.state().rules.write() {
            r.set_deny(deny);
        }
    }

    /// Why `addr` must not be dialled or announced, if it must not (bans, dial filter).
    pub fn refuses_addr(&self, addr: &Multiaddr) -> Option<String> {
        self.state()
            .rules
            .read()
            .ok()
            .and_then(|r| r.refuses_addr(addr))
    }

    /// Writes the changes; `ack` runs once they are durable.
    fn persist(&self, changes: Vec<Change>, ack: Option<Ack>) {
        let s = self.state();
        s.store.save(changes, s.epoch, ack);
    }

    /// Adds (or replaces) a ban, closes what it covers, and acknowledges once it is on disk.
    /// Returns how many connections it closes.
    pub fn ban(&mut self, ban: Ban, ack: Option<Ack>) -> usize {
        let target = ban.target.clone();
        let rule = bans::net_of(&target).map(|n| (n, ban.reason.clone()));
        let change = Change::Ban { ban: ban.clone() };
        let closed = self.guard.ban(ban);
        if let BanTarget::Peer(p) = &target {
            self.state_mut().rate.forget(p);
        }
        self.guard.metrics().ban("ban", target.kind());
        if let (Some((net, reason)), Ok(mut r)) = (rule, self.state().rules.write()) {
            r.ban(net, reason);
        }
        self.persist(vec![change], ack);
        closed
    }

    /// Adds many bans as one change (one durable write); returns how many connections they
    /// close.
    pub fn ban_many(&mut self, bans: Vec<Ban>, ack: Option<Ack>) -> usize {
        let mut closed = 0;
        let mut changes = Vec::with_capacity(bans.len());
        for ban in bans {
            let target = ban.target.clone();
            if let (Some(net), Ok(mut r)) = (bans::net_of(&target), self.state().rules.write()) {
                r.ban(net, ban.reason.clone());
            }
            changes.push(Change::Ban { ban: ban.clone() });
            closed += self.guard.ban(ban);
            if let BanTarget::Peer(p) = &target {
                self.state_mut().rate.forget(p);
            }
            self.guard.metrics().ban("ban", target.kind());
        }
        self.persist(changes, ack);
        closed
    }

    /// Lifts a ban; `ack` runs once that is on disk.
    pub fn unban(&mut self, target: &BanTarget, ack: Ack) -> Option<Ban> {
        let gone = self.guard.bans.remove(target);
        if gone.is_some() {
            self.guard.metrics().ban("unban", target.kind());
            self.unrule(target);
        }
        let change = Change::Unban {
            target: target.clone(),
        };
        self.persist(vec![change], Some(ack));
        gone
    }

    /// Takes a lifted IP or CIDR ban out of the transport's dial rules.
    fn unrule(&mut self, target: &BanTarget) {
        let Some(net) = bans::net_of(target) else {
            return;
        };
        // `192.0.2.7` and `192.0.2.7/32` are one network: the rule stays while either is banned.
        let other = match target {
            BanTarget::Ip(ip) => BanTarget::Cidr((*ip).into()),
            _ => BanTarget::Ip(net.addr()),
        };
        let still = self.guard.bans.get(&other).map(|b| b.reason.clone());
        if let Ok(mut r) = self.state().rules.write() {
            match still {
                Some(reason) if net.prefix_len() == net.max_prefix_len() => r.ban(net, reason),
                _ => r.unban(&net),
            }
        }
    }

    /// True when a ban on exactly `target` is listed (active or about to expire).
    pub fn has_ban(&self, target: &BanTarget) -> bool {
        self.guard.bans.get(target).is_some()
    }

    /// Bans listed (in force, or expired and not yet swept).
    pub fn ban_count(&self) -> usize {
        self.guard.bans.len()
    }

    /// Bans in effect.
    pub fn active_bans(&self) -> impl Iterator<Item = &Ban> {
        let now = now_unix();
        self.guard.bans.iter().filter(move |b| b.active(now))
    }

    /// Drops expired bans (and writes the list when any went).
    pub fn expire(&mut self) -> Vec<Ban> {
        let gone = self.guard.bans.expire(now_unix());
        if !gone.is_empty() {
            for b in &gone {
                self.unrule(&b.target);
            }
            let changes = gone
                .iter()
                .map(|b| Change::Unban {
                    target: b.target.clone(),
                })
                .collect();
            self.persist(changes, None);
        }
        gone
    }

    /// Applies what an operator edited in bans.json (reload); acknowledges once written.
    pub fn apply_edits(&mut self, edits: Edits, ack: Option<Ack>) -> usize {
        let changes = edits.changes();
        let closed = self.apply(edits);
        self.persist(changes, ack);
        closed
    }

    /// Goes back to the list on disk after a write failed, so memory holds nothing a restart
    /// would not load; returns how many connections bans that came back closed.
    pub fn revert(&mut self, revert: store::Revert) -> usize {
        let edits = Edits::between(&self.guard.bans, &revert.list);
        self.state_mut().epoch = revert.epoch;
        self.apply(edits)
    }

    fn apply(&mut self, edits: Edits) -> usize {
        let mut closed = 0;
        for t in &edits.unbans {
            self.guard.bans.remove(t);
        }
        for b in edits.bans {
            closed += self.guard.ban(b);
        }
        for p in edits.untrusted {
            self.guard.bans.trusted.remove(&p);
            if let Some(t) = self.state_mut().trusted.get_mut(&p) {
                t.from_runtime = false;
            }
            self.drop_trust_if_unused(&p);
        }
        for p in edits.trusted {
            self.add_trust(p, None, false);
        }
        self.sync_rules();
        closed
    }

    fn add_trust(&mut self, peer: PeerId, addr: Option<Multiaddr>, from_config: bool) {
        self.limits.bypass_peer_id(&peer);
        self.guard.trusted_peers.insert(peer);
        if !from_config {
            self.guard.bans.trusted.insert(peer);
        }
        let t = self.state_mut().trusted.entry(peer).or_insert(TrustedPeer {
            addr: None,
            from_config: false,
            from_runtime: false,
            next_dial: Instant::now(),
            backoff: Duration::from_secs(1),
        });
        t.from_config |= from_config;
        t.from_runtime |= !from_config;
        if addr.is_some() {
            t.addr = addr;
        }
    }

    fn drop_trust_if_unused(&mut self, peer: &PeerId) {
        let unused = self
            .state()
            .trusted
            .get(peer)
            .is_some_and(|t| !t.from_config && !t.from_runtime);
        if unused {
            self.state_mut().trusted.remove(peer);
            self.guard.trusted_peers.remove(peer);
            self.limits.remove_peer_id(peer);
        }
    }

    /// Trusts a peer at runtime (persisted); acknowledges once written.
    pub fn trust(&mut self, peer: PeerId, addr: Option<Multiaddr>, ack: Ack) {
        self.add_trust(peer, addr, false);
        let change = Change::Trust {
            peer: peer.to_string(),
        };
        self.persist(vec![change], Some(ack));
    }

    /// Removes a runtime trust; a peer trusted in the config file stays trusted.
    pub fn untrust(&mut self, peer: &PeerId, ack: Ack) -> Result<(), Untrust> {
        match self.state().trusted.get(peer) {
            None => return Err(Untrust::NotTrusted),
            Some(t) if t.from_config => return Err(Untrust::FromConfig),
            Some(_) => {}
        }
        if let Some(t) = self.state_mut().trusted.get_mut(peer) {
            t.from_runtime = false;
        }
        self.guard.bans.trusted.remove(peer);
        self.drop_trust_if_unused(peer);
        let change = Change::Untrust {
            peer: peer.to_string(),
        };
        self.persist(vec![change], Some(ack));
        Ok(())
    }

    pub fn trusted(&self) -> &BTreeMap<PeerId, TrustedPeer> {
        &self.state().trusted
    }

    pub fn is_trusted(&self, peer: &PeerId) -> bool {
        self.guard.trusted_peers.contains(peer)
    }

    /// Trusted peers that are due for a redial (not connected), with exponential backoff.
    pub fn due_redials(
        &mut self,
        connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<(PeerId, Option<Multiaddr>)> {
        let now = Instant::now();
        let mut due = Vec::new();
        for (p, t) in self.state_mut().trusted.iter_mut() {
            if t.next_dial <= now && !connected(p) {
                due.push((*p, t.addr.clone()));
                t.next_dial = now + t.backoff;
                t.backoff = (t.backoff * 2).min(MAX_REDIAL_BACKOFF);
            }
        }
        due
    }

    pub fn trusted_connected(&mut self, peer: &PeerId) {
        if let Some(t) = self.state_mut().trusted.get_mut(peer) {
            t.backoff = Duration::from_secs(1);
            t.next_dial = Instant::now() + t.backoff;
        }
    }

    /// Applies `l` (already validated) to every limit that can change at runtime.
    pub fn set_limits(&mut self, l: &Limits) {
        *self.limits.limits_mut() = connection_limits(l);
        self.memory = memory_limits(l);
        self.guard.set_limits(AddressLimits::from_config(l));
    }

    /// Re-reads what the policy takes from the config (reload): limits, rate limits, trusted
    /// peers and addresses, the dial filter. Runtime trust and bans are kept.
    pub fn reconfigure(&mut self, config: &Config) {
        self.set_limits(&config.limits);
        let (normal, trusted, threshold) = buckets(config);
        self.state_mut()
            .rate
            .reconfigure(normal, trusted, threshold);
        self.state_mut().ban_duration = config.rate_limit.ban_duration.0 .0;
        self.state_mut().runtime_limits.clear();
        self.guard.set_trusted_addrs(&config.trust.addresses);
        self.guard
            .set_dial_back_private(config.network.autonat_private_addrs);
        self.set_dial_deny(config);
        let wanted: Vec<PeerId> = config.trust.peers.iter().map(|t| t.0.peer).collect();
        let configured: Vec<PeerId> = self
            .state()
            .trusted
            .iter()
            .filter(|(p, t)| t.from_config && !wanted.contains(p))
            .map(|(p, _)| *p)
            .collect();
        for p in configured {
            if let Some(t) = self.state_mut().trusted.get_mut(&p) {
                t.from_config = false;
            }
            self.drop_trust_if_unused(&p);
        }
        for t in &config.trust.peers {
            self.add_trust(t.0.peer, t.0.addr.clone(), true);
        }
    }

    /// Takes a rate-limit token for a message or request from `peer`. A drop is counted; a
    /// peer whose sustained abuse reaches the threshold is banned (returned as true).
    pub fn admit(&mut self, peer: &PeerId) -> Admit {
        let trusted = self.is_trusted(peer);
        let verdict = self.state_mut().rate.allow(peer, trusted, Instant::now());
        if verdict != Admit::Yes {
            self.metrics().rejected("rate_limit");
        }
        verdict
    }

    /// Records a provably invalid message from `peer`; true when it must now be banned.
    pub fn invalid(&mut self, peer: &PeerId, reason: &str) -> bool {
        self.metrics().rejected(reason);
        self.state_mut().rate.invalid(peer, Instant::now())
    }

    /// Counts a message dropped without penalty (replay, too old, our own).
    pub fn ignored(&self, reason: &str) {
        self.metrics().rejected(reason);
    }

    /// Our misbehaviour score of `peer` (0 is clean).
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.state().rate.score(peer, Instant::now())
    }

    /// The automatic ban for a peer whose score fell to the threshold.
    pub fn automatic_ban(&mut self, peer: PeerId, what: &str) -> Ban {
        let dropped = self.state().rate.dropped(&peer);
        let now = now_unix();
        let ban = Ban {
            target: BanTarget::Peer(peer),
            reason: format!("automatic: misbehaviour score fell to the threshold ({what}; {dropped} messages dropped for rate)"),
            created_unix: now,
            expires_unix: Some(now.saturating_add(self.state().ban_duration.as_secs().max(1))),
            created_by: "p2pd".into(),
        };
        self.ban(ban.clone(), None);
        ban
    }

    /// Forgets state that peers no longer need (called periodically).
    pub fn sweep(&mut self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&mut self, now: Instant) {
        let trusted = self.guard.trusted_peers.clone();
        self.state_mut().rate.evict(now, |p| trusted.contains(p));
        self.guard.sweep(now);
    }

    pub fn pending_usage(&self) -> (usize, u32) {
        self.guard.pending_usage()
    }

    pub fn inbound_per_ip_usage(&self) -> u32 {
        self.guard.inbound_per_ip_usage()
    }

    pub fn runtime_limits(&mut self) -> &mut std::collections::BTreeSet<String> {
        &mut self.state_mut().runtime_limits
    }
}
