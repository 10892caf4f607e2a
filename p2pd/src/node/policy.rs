//! Routing of policy commands and events to the policy component (`crate::policy::Policy`),
//! and what only the node can do for it: dial trusted peers, purge banned peers and addresses
//! from the DHT, and answer with bans, trusted peers and limits.

use super::Code;
use super::{ApiError, LimitView, Node, Reply, TrustAction, TrustedView};
use crate::config::limits::{self, LIMITS};
use crate::policy::bans::{Ban, BanTarget};
use crate::policy::rate::Admit;
use crate::policy::store::{ack_channel, Ack};
use crate::policy::{now_unix, Untrust};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use std::time::Duration;

/// An acknowledgement that answers `reply` with `answer` once the change is on disk.
fn ack_with<T: Send + 'static>(reply: Reply<T>, answer: T) -> Ack {
    Box::new(move |written: Result<(), String>| {
        let _ = reply.send(
            written
                .map(|()| answer)
                .map_err(|m| ApiError::new(Code::Failed, m)),
        );
    })
}

impl Node {
    fn policy(&mut self) -> &mut crate::policy::Policy {
        &mut self.swarm.behaviour_mut().policy
    }

    /// Trusted peers given with an address are known to the DHT.
    pub(super) fn learn_trusted_addrs(&mut self) {
        let known: Vec<(PeerId, Multiaddr)> = self
            .swarm
            .behaviour()
            .policy
            .trusted()
            .iter()
            .filter_map(|(p, t)| {
                t.addr
                    .as_ref()
                    .map(|a| (*p, crate::addr::without_peer_id(a)))
            })
            .collect();
        for (p, a) in known {
            self.swarm.behaviour_mut().kad.add_address(&p, a);
        }
    }

    /// Redials trusted peers that are not connected, with exponential backoff.
    pub(super) fn keep_trusted_connected(&mut self) {
        let swarm = &mut self.swarm;
        let connected: std::collections::HashSet<PeerId> =
            swarm.connected_peers().copied().collect();
        let due = swarm
            .behaviour_mut()
            .policy
            .due_redials(|p| connected.contains(p));
        for (peer, addr) in due {
            let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing);
            let opts = match addr {
                Some(a) => opts
                    .addresses(vec![crate::addr::without_peer_id(&a)])
                    .build(),
                None => opts.build(),
            };
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(peer_id = %peer, error = %super::error_chain(&e), "trusted peer redial not started");
            }
        }
    }

    /// Removes what a ban covers from the DHT's routing table, so no query dials it again.
    pub(super) fn purge_from_dht(&mut self, target: &BanTarget) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        if let BanTarget::Peer(p) = target {
            kad.remove_peer(p);
            return;
        }
        let mut covered = Vec::new();
        for bucket in kad.kbuckets() {
            for e in bucket.iter() {
                for a in e.node.value.iter() {
                    if crate::addr::ip_of(a).is_some_and(|ip| target.covers_ip(&ip)) {
                        covered.push((*e.node.key.preimage(), a.clone()));
                    }
                }
            }
        }
        for (p, a) in covered {
            kad.remove_address(&p, &a);
        }
    }

    /// Bans `target`; answers with the ban once it is on disk.
    pub fn ban(
        &mut self,
        target: BanTarget,
        duration: Option<Duration>,
        reason: String,
        by: String,
        reply: Reply<Ban>,
    ) {
        if target == BanTarget::Peer(self.local_peer_id()) {
            let _ = reply.send(Err(ApiError::new(
                Code::BadRequest,
                "that is this node's own peer id",
            )));
            return;
        }
        let now = now_unix();
        let ban = Ban {
            target: target.clone(),
            reason: if reason.is_empty() {
                "no reason given".into()
            } else {
                reason
            },
            created_unix: now,
            expires_unix: duration.map(|d| now.saturating_add(d.as_secs().max(1))),
            created_by: by.clone(),
        };
        tracing::warn!(event = "ban", ban_target = %target, kind = target.kind(), reason = %ban.reason, by = %by, expires_unix = ban.expires_unix.unwrap_or(0), "banned");
        let closed = self.policy().ban(ban.clone(), Some(ack_with(reply, ban)));
        if closed > 0 {
            tracing::info!(ban_target = %target, closed_connections = closed, "closed the connections the ban covers");
        }
        self.purge_from_dht(&target);
    }

    /// Bans many targets as one change (an import); answers with how many were banned and the
    /// ones refused (this node's own id), once all are on disk.
    pub fn ban_many(
        &mut self,
        targets: Vec<BanTarget>,
        duration: Option<Duration>,
        reason: String,
        by: String,
        reply: Reply<(usize, Vec<(BanTarget, String)>)>,
    ) {
        let me = BanTarget::Peer(self.local_peer_id());
        let now = now_unix();
        let reason = if reason.is_empty() {
            "imported".to_string()
        } else {
            reason
        };
        let (mine, targets): (Vec<_>, Vec<_>) = targets.into_iter().partition(|t| *t == me);
        let refused: Vec<(BanTarget, String)> = mine
            .into_iter()
            .map(|t| (t, "that is this node's own peer id".to_string()))
            .collect();
        let bans: Vec<Ban> = targets
            .into_iter()
            .map(|target| Ban {
                target,
                reason: reason.clone(),
                created_unix: now,
                expires_unix: duration.map(|d| now.saturating_add(d.as_secs().max(1))),
                created_by: by.clone(),
            })
            .collect();
        let accepted = bans.len();
        let banned: Vec<BanTarget> = bans.iter().map(|b| b.target.clone()).collect();
        let closed = self
            .policy()
            .ban_many(bans, Some(ack_with(reply, (accepted, refused))));
        tracing::warn!(event = "ban_import", bans = accepted, reason = %reason, by = %by, closed_connections = closed, "banned a list of targets");
        self.purge_many_from_dht(&banned);
    }

    /// [`Node::purge_from_dht`] for many targets: one pass over the routing table.
    fn purge_many_from_dht(&mut self, targets: &[BanTarget]) {
        let mut nets = crate::policy::netindex::NetIndex::default();
        let mut peers = std::collections::HashSet::new();
        for t in targets {
            match crate::policy::bans::net_of(t) {
                Some(n) => {
                    nets.insert(n, ());
                }
                None => {
                    if let BanTarget::Peer(p) = t {
                        peers.insert(*p);
                    }
                }
            }
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        for p in &peers {
            kad.remove_peer(p);
        }
        if nets.is_empty() {
            return;
        }
        let mut covered = Vec::new();
        for bucket in kad.kbuckets() {
            for e in bucket.iter() {
                for a in e.node.value.iter() {
                    let hit =
                        crate::addr::ip_of(a).is_some_and(|ip| nets.covering(ip).next().is_some());
                    if hit {
                        covered.push((*e.node.key.preimage(), a.clone()));
                    }
                }
            }
        }
        for (p, a) in covered {
            kad.remove_address(&p, &a);
        }
    }

    /// A ban-list write failed: memory goes back to what is on disk (the clients were told).
    pub(crate) fn revert_bans(&mut self, revert: crate::policy::store::Revert) {
        let bans = revert.list.len();
        let closed = self.policy().revert(revert);
        tracing::warn!(
            event = "bans_reverted",
            bans,
            closed_connections = closed,
            "the ban list could not be saved; changes since the last save were refused and undone"
        );
    }

    /// Bans a peer whose misbehaviour score reached the threshold.
    pub(super) fn auto_ban(&mut self, peer: PeerId, what: &str) {
        let ban = self.policy().automatic_ban(peer, what);
        tracing::warn!(event = "ban", ban_target = %ban.target, kind = "peer", reason = %ban.reason, by = "p2pd", expires_unix = ban.expires_unix.unwrap_or(0), "banned");
        self.purge_from_dht(&ban.target);
    }

    /// Counts an inbound message or request against `peer`'s rate; false = drop it.
    pub(super) fn rate_allows(&mut self, peer: &PeerId) -> bool {
        match self.policy().admit(peer) {
            Admit::Yes => true,
            Admit::Dropped { ban } => {
                if ban {
                    self.auto_ban(
                        *peer,
                        "sustained traffic far above rate_limit.refill_per_sec",
                    );
                }
                false
            }
        }
    }

    /// Records a provably invalid message from `peer`, banning it at the threshold.
    pub(crate) fn punish_invalid(&mut self, peer: PeerId, reason: &str) {
        if self.policy().invalid(&peer, reason) {
            self.auto_ban(peer, reason);
        }
    }

    /// Lifts the ban on `target`; answers once that is on disk.
    pub fn unban(&mut self, target: BanTarget, by: String, reply: Reply<()>) {
        if !self.swarm.behaviour().policy.has_ban(&target) {
            let _ = reply.send(Err(ApiError::new(
                Code::NotFound,
                format!("{target} is not banned (see p2pctl bans)"),
            )));
            return;
        }
        self.policy().unban(&target, ack_with(reply, ()));
        tracing::info!(event = "unban", ban_target = %target, by = %by, "unbanned");
    }

    /// `limit` of the bans in force from `offset` (by target), and how many are in force.
    pub fn bans_page(&self, offset: usize, limit: usize) -> (Vec<Ban>, usize) {
        let policy = &self.swarm.behaviour().policy;
        let page = policy
            .active_bans()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        // Listed bans: expired ones go within a second (the tick), so this is the count in force
        // without a second pass over the list.
        (page, policy.ban_count())
    }

    /// Removes expired bans (called every second).
    pub(super) fn expire_bans(&mut self) {
        for b in self.policy().expire() {
            tracing::info!(event = "ban_expired", ban_target = %b.target, "ban expired");
        }
    }

    fn trust_list(&self) -> Vec<TrustedView> {
        self.swarm
            .behaviour()
            .policy
            .trusted()
            .iter()
            .map(|(p, t)| TrustedView {
                peer: *p,
                addr: t.addr.clone(),
                connected: self.swarm.is_connected(p),
                source: if t.from_config { "config" } else { "runtime" },
            })
            .collect()
    }

    /// Lists, adds or removes trusted peers; answers with the list (after a change, once it is
    /// on disk).
    pub fn trust(&mut self, action: TrustAction, reply: Reply<Vec<TrustedView>>) {
        match action {
            TrustAction::List => {
                let _ = reply.send(Ok(self.trust_list()));
            }
            TrustAction::Add(r) => {
                tracing::info!(event = "trust_add", peer_id = %r.peer, "peer trusted");
                // The change is made first, so the answer lists it; it is sent once durable.
                let (ack, rx) = ack_channel();
                self.policy().trust(r.peer, r.addr.clone(), ack);
                self.learn_trusted_addrs();
                self.answer_when_written(rx, self.trust_list(), reply);
            }
            TrustAction::Remove(p) => {
                let (ack, rx) = ack_channel();
                let result = self.policy().untrust(&p, ack);
                match result {
                    Ok(()) => {
                        tracing::info!(event = "trust_rm", peer_id = %p, "peer no longer trusted");
                        self.answer_when_written(rx, self.trust_list(), reply);
                    }
                    Err(Untrust::NotTrusted) => {
                        let _ = reply.send(Err(ApiError::new(
                            Code::NotFound,
                            format!("{p} is not trusted"),
                        )));
                    }
                    Err(Untrust::FromConfig) => {
                        let _ = reply.send(Err(ApiError::new(
                            Code::BadRequest,
                            format!("{p} is trusted in the config file ([trust] peers); remove it there and reload"),
                        )));
                    }
                }
            }
        }
    }

    /// Sends `answer` on `reply` once the write behind `written` is durable.
    fn answer_when_written<T: Send + 'static>(
        &self,
        written: tokio::sync::oneshot::Receiver<Result<(), String>>,
        answer: T,
        reply: Reply<T>,
    ) {
        tokio::spawn(async move {
            let r = match written.await {
                Ok(Ok(())) => Ok(answer),
                Ok(Err(m)) => Err(ApiError::new(Code::Failed, m)),
                Err(_) => Err(ApiError::new(
                    Code::Unavailable,
                    "the node is shutting down",
                )),
            };
            let _ = reply.send(r);
        });
    }

    /// Current usage of a limit, and the value it is measured against.
    fn usage(&self, name: &str) -> Option<(u64, u64)> {
        let l = &self.config.limits;
        let (inbound, outbound) = self.peers.directions();
        let policy = &self.swarm.behaviour().policy;
        let (pending, pending_per_ip) = policy.pending_usage();
        Some(match name {
            "max_connections" => (u64::from(inbound + outbound), l.max_connections.into()),
            "max_inbound" => (inbound.into(), l.max_inbound.into()),
            "max_outbound" => (outbound.into(), l.max_outbound.into()),
            "max_pending_inbound" => (pending as u64, l.max_pending_inbound.into()),
            "max_per_peer" => (self.peers.max_per_peer() as u64, l.max_per_peer.into()),
            "max_inbound_per_ip" => (
                policy.inbound_per_ip_usage().into(),
                l.max_inbound_per_ip.into(),
            ),
            "max_pending_inbound_per_ip" => {
                (pending_per_ip.into(), l.max_pending_inbound_per_ip.into())
            }
            "max_memory" => (crate::metrics::rss_bytes(), l.max_memory.0 .0),
            _ => return None,
        })
    }

    /// Every limit with its value, usage and source.
    pub fn limits(&mut self) -> Vec<LimitView> {
        let runtime = self.policy().runtime_limits().clone();
        // Limits do not depend on the mode.
        let defaults = crate::config::Config::defaults(p2pd_proto::paths::Mode::System).limits;
        LIMITS
            .iter()
            .map(|spec| {
                let usage = self.usage(spec.name);
                LimitView {
                    name: spec.name,
                    value: spec.show(&self.config.limits),
                    usage: usage.map(|(u, _)| spec.unit.show_usage(u)),
                    percent: match usage {
                        Some((u, l)) if l > 0 => Some(u as f64 * 100.0 / l as f64),
                        _ => None,
                    },
                    source: {
                        let set = if (spec.get)(&defaults) == (spec.get)(&self.config.limits) {
                            "default"
                        } else {
                            "config"
                        };
                        if runtime.contains(spec.name) {
                            "runtime".into()
                        } else if spec.runtime {
                            set.to_string()
                        } else {
                            format!("{set} (restart to change)")
                        }
                    },
                }
            })
            .collect()
    }

    /// `limits set`: the same checks and messages as the config file, then applied at once.
    pub fn set_limit(&mut self, name: &str, value: &str) -> Result<(), ApiError> {
        let mut l = self.config.limits.clone();
        limits::set(&mut l, name, value)
            .map_err(|m| ApiError::new(Code::BadRequest, format!("limits.{name}: {m}")))?;
        self.config.limits = l;
        let policy = &mut self.swarm.behaviour_mut().policy;
        policy.set_limits(&self.config.limits);
        policy.runtime_limits().insert(name.to_string());
        self.p2p.set_limits(&self.config.limits);
        Ok(())
    }
}
