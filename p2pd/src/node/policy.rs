//! The node's side of peer policy: bans and trusted peers at runtime, limits shown and changed,
//! rate limits and misbehaviour scores on inbound traffic, automatic bans.

use super::{ApiError, Node, Reply, TrustAction};
use crate::behaviour;
use crate::config::values::{ByteSize, PeerRef};
use crate::policy::bans::{Ban, BanList, BanTarget};
use crate::policy::now_unix;
use crate::policy::rate::{BucketConfig, Offence, RateLimiter};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use p2pd_proto::control::{self, ErrorCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BanLabels {
    pub action: String,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: String,
}

struct Trusted {
    addr: Option<Multiaddr>,
    from_config: bool,
    next_dial: Instant,
    backoff: Duration,
}

pub struct PolicyState {
    pub rate: RateLimiter,
    trusted: BTreeMap<PeerId, Trusted>,
    runtime_limits: BTreeSet<String>,
    pub pending_inbound: HashSet<ConnectionId>,
    pub blacklist_total: Family<BanLabels, Counter>,
    /// Inbound messages refused, by reason (rate_limit, replay, too_old).
    pub rejected_total: Family<RejectLabels, Counter>,
    ban_duration: Duration,
    /// The latest ban list for the writer task (atomic replace of bans.json).
    saver: watch::Sender<BanList>,
}

impl PolicyState {
    pub fn new(
        rate: RateLimiter,
        registry: &mut prometheus_client::registry::Registry,
        ban_duration: Duration,
        saver: watch::Sender<BanList>,
    ) -> Self {
        let blacklist_total = Family::<BanLabels, Counter>::default();
        registry.register(
            "p2p_blacklist",
            "Bans and unbans, by action (ban, unban) and kind (peer, ip, cidr)",
            blacklist_total.clone(),
        );
        for action in ["ban", "unban"] {
            for kind in ["peer", "ip", "cidr"] {
                let _ = blacklist_total.get_or_create(&BanLabels {
                    action: action.into(),
                    kind: kind.into(),
                });
            }
        }
        let rejected_total = Family::<RejectLabels, Counter>::default();
        for reason in ["rate_limit", "replay", "too_old", "bad_signature"] {
            let _ = rejected_total.get_or_create(&RejectLabels {
                reason: reason.into(),
            });
        }
        registry.register(
            "p2p_messages_rejected",
            "Inbound messages refused before delivery, by reason (rate_limit, replay, too_old)",
            rejected_total.clone(),
        );
        PolicyState {
            rate,
            trusted: BTreeMap::new(),
            runtime_limits: BTreeSet::new(),
            pending_inbound: HashSet::new(),
            blacklist_total,
            rejected_total,
            ban_duration,
            saver,
        }
    }
}

impl PolicyState {
    pub fn clear_runtime_limits(&mut self) {
        self.runtime_limits.clear();
    }

    pub fn reconfigure(
        &mut self,
        normal: BucketConfig,
        trusted: BucketConfig,
        threshold: f64,
        ban_duration: Duration,
    ) {
        self.rate.reconfigure(normal, trusted, threshold);
        self.ban_duration = ban_duration;
    }

    /// Peers trusted through the config file.
    pub fn configured_trusted(&self) -> Vec<PeerId> {
        self.trusted
            .iter()
            .filter(|(_, t)| t.from_config)
            .map(|(p, _)| *p)
            .collect()
    }
}

/// Writes every new ban list to `path`, newest last; ends when the node drops its sender.
pub async fn ban_writer(path: std::path::PathBuf, mut rx: watch::Receiver<BanList>) {
    while rx.changed().await.is_ok() {
        let list = rx.borrow_and_update().clone();
        let p = path.clone();
        match tokio::task::spawn_blocking(move || list.save(&p)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(path = %path.display(), error = %e, "cannot save the ban list (disk full or read-only?); it is kept in memory and saved on the next change")
            }
            Err(e) => tracing::error!(error = %e, "ban list writer failed"),
        }
    }
}

fn entry(b: &Ban) -> control::BanEntry {
    control::BanEntry {
        target: b.target.to_string(),
        kind: b.target.kind().into(),
        reason: b.reason.clone(),
        created_unix: b.created_unix,
        expires_unix: b.expires_unix.unwrap_or(0),
        created_by: b.created_by.clone(),
    }
}

impl Node {
    /// Trusted peers from the config; they bypass connection limits and are kept connected.
    pub(super) fn init_trust(&mut self) {
        let configured: Vec<PeerRef> = self
            .config
            .trust
            .peers
            .iter()
            .map(|t| t.0.clone())
            .collect();
        for r in configured {
            self.trust(r.peer, r.addr, true);
        }
        let runtime: Vec<PeerId> = self
            .swarm
            .behaviour()
            .policy
            .bans
            .trusted
            .iter()
            .copied()
            .collect();
        for p in runtime {
            self.trust(p, None, false);
        }
    }

    fn trust(&mut self, peer: PeerId, addr: Option<Multiaddr>, from_config: bool) {
        self.swarm
            .behaviour_mut()
            .connection_limits
            .bypass_peer_id(&peer);
        if let Some(a) = &addr {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, crate::addr::without_peer_id(a));
        }
        let t = self.policy.trusted.entry(peer).or_insert(Trusted {
            addr: None,
            from_config,
            next_dial: Instant::now(),
            backoff: Duration::from_secs(1),
        });
        t.from_config |= from_config;
        if addr.is_some() {
            t.addr = addr;
        }
    }

    /// A peer no longer trusted by the config: untrusted unless also trusted at runtime.
    pub(super) fn untrust_configured(&mut self, peer: &PeerId) {
        if self.swarm.behaviour().policy.bans.trusted.contains(peer) {
            if let Some(t) = self.policy.trusted.get_mut(peer) {
                t.from_config = false;
            }
            return;
        }
        self.policy.trusted.remove(peer);
        self.swarm
            .behaviour_mut()
            .connection_limits
            .remove_peer_id(peer);
    }

    pub(super) fn is_trusted(&self, peer: &PeerId) -> bool {
        self.policy.trusted.contains_key(peer)
    }

    /// Redials trusted peers that are not connected, with exponential backoff.
    pub(super) fn keep_trusted_connected(&mut self) {
        let now = Instant::now();
        let due: Vec<(PeerId, Option<Multiaddr>)> = self
            .policy
            .trusted
            .iter()
            .filter(|(p, t)| t.next_dial <= now && !self.swarm.is_connected(p))
            .map(|(p, t)| (*p, t.addr.clone()))
            .collect();
        for (peer, addr) in due {
            let opts = match addr {
                Some(a) => DialOpts::peer_id(peer)
                    .addresses(vec![crate::addr::without_peer_id(&a)])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            };
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(peer_id = %peer, error = %e, "trusted peer redial not started");
            }
            if let Some(t) = self.policy.trusted.get_mut(&peer) {
                t.next_dial = now + t.backoff;
                t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    pub(super) fn trusted_connected(&mut self, peer: &PeerId) {
        if let Some(t) = self.policy.trusted.get_mut(peer) {
            t.backoff = Duration::from_secs(1);
            t.next_dial = Instant::now() + t.backoff;
        }
    }

    fn save_bans(&self) {
        let _ = self
            .policy
            .saver
            .send(self.swarm.behaviour().policy.bans.clone());
    }

    fn count_ban(&self, action: &str, target: &BanTarget) {
        self.policy
            .blacklist_total
            .get_or_create(&BanLabels {
                action: action.into(),
                kind: target.kind().into(),
            })
            .inc();
    }

    pub(super) fn ban(
        &mut self,
        target: BanTarget,
        duration: Option<Duration>,
        reason: String,
        by: String,
        reply: Option<Reply<control::BanEntry>>,
    ) {
        if target == BanTarget::Peer(self.local_peer_id()) {
            if let Some(r) = reply {
                let _ = r.send(Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "that is this node's own peer id",
                )));
            }
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
            expires_unix: duration.map(|d| now + d.as_secs().max(1)),
            created_by: by.clone(),
        };
        let e = entry(&ban);
        let closed = self.swarm.behaviour_mut().policy.ban(ban);
        if let BanTarget::Peer(p) = &target {
            self.policy.rate.forget(p);
        }
        tracing::warn!(event = "ban", target = %target, kind = target.kind(), reason = %e.reason, by = %by, expires_unix = e.expires_unix, closed_connections = closed, "banned");
        self.count_ban("ban", &target);
        self.save_bans();
        if let Some(r) = reply {
            let _ = r.send(Ok(e));
        }
    }

    pub(super) fn unban(&mut self, target: BanTarget, by: String, reply: Reply<()>) {
        match self.swarm.behaviour_mut().policy.bans.remove(&target) {
            Some(_) => {
                tracing::info!(event = "unban", target = %target, by = %by, "unbanned");
                self.count_ban("unban", &target);
                self.save_bans();
                let _ = reply.send(Ok(()));
            }
            None => {
                let _ = reply.send(Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("{target} is not banned (see p2pctl bans)"),
                )));
            }
        }
    }

    pub(super) fn bans(&self) -> control::BanList {
        let now = now_unix();
        control::BanList {
            bans: self
                .swarm
                .behaviour()
                .policy
                .bans
                .bans
                .iter()
                .filter(|b| b.expires_unix.is_none_or(|e| e > now))
                .map(entry)
                .collect(),
        }
    }

    /// Removes expired bans (called every second).
    pub(super) fn expire_bans(&mut self) {
        let gone = self.swarm.behaviour_mut().policy.bans.expire(now_unix());
        for b in &gone {
            tracing::info!(event = "ban_expired", target = %b.target, "ban expired");
        }
        if !gone.is_empty() {
            self.save_bans();
        }
    }

    /// Records misbehaviour by `peer`; at the threshold it is disconnected and banned.
    pub(super) fn punish(&mut self, peer: PeerId, offence: Offence) {
        if !self.policy.rate.offend(&peer, offence, Instant::now()) {
            return;
        }
        let dropped = self.policy.rate.dropped.get(&peer).copied().unwrap_or(0);
        let reason = format!("automatic: misbehaviour score fell below the threshold ({offence:?}; {dropped} messages dropped for rate)");
        let d = self.policy.ban_duration;
        self.ban(BanTarget::Peer(peer), Some(d), reason, "p2pd".into(), None);
    }

    pub(super) fn trust_command(&mut self, action: TrustAction, reply: Reply<control::TrustList>) {
        match action {
            TrustAction::List => {}
            TrustAction::Add(r) => {
                self.trust(r.peer, r.addr.clone(), false);
                self.swarm
                    .behaviour_mut()
                    .policy
                    .bans
                    .trusted
                    .insert(r.peer);
                self.save_bans();
                tracing::info!(event = "trust_add", peer_id = %r.peer, "peer trusted");
            }
            TrustAction::Remove(p) => {
                let from_config = self.policy.trusted.get(&p).map(|t| t.from_config);
                match from_config {
                    None => {
                        let _ = reply.send(Err(ApiError::new(
                            ErrorCode::NotFound,
                            format!("{p} is not trusted"),
                        )));
                        return;
                    }
                    Some(true) => {
                        let _ = reply.send(Err(ApiError::new(
                            ErrorCode::BadRequest,
                            format!("{p} is trusted in the config file ([trust] peers); remove it there and reload"),
                        )));
                        return;
                    }
                    Some(false) => {
                        self.policy.trusted.remove(&p);
                        self.swarm
                            .behaviour_mut()
                            .connection_limits
                            .remove_peer_id(&p);
                        self.swarm.behaviour_mut().policy.bans.trusted.remove(&p);
                        self.save_bans();
                        tracing::info!(event = "trust_rm", peer_id = %p, "peer no longer trusted");
                    }
                }
            }
        }
        let peers = self
            .policy
            .trusted
            .iter()
            .map(|(p, t)| control::TrustedPeer {
                peer_id: p.to_string(),
                addr: t.addr.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                connected: self.swarm.is_connected(p),
                source: if t.from_config { "config" } else { "runtime" }.into(),
            })
            .collect();
        let _ = reply.send(Ok(control::TrustList { peers }));
    }

    pub(super) fn limits(&self) -> control::LimitList {
        let l = &self.config.limits;
        let (inbound, outbound) = self.peers.directions();
        let entry = |name: &str, value: String, usage: Option<u64>, limit: Option<u64>| {
            control::LimitEntry {
                name: name.into(),
                value,
                usage: usage.map(|u| u.to_string()).unwrap_or_default(),
                percent: match (usage, limit) {
                    (Some(u), Some(l)) if l > 0 => u as f64 * 100.0 / l as f64,
                    _ => -1.0,
                },
                source: if self.policy.runtime_limits.contains(name) {
                    "runtime"
                } else {
                    "config"
                }
                .into(),
            }
        };
        let count = |name: &str, v: u32, usage: u64| {
            entry(name, v.to_string(), Some(usage), Some(v.into()))
        };
        let rss = crate::metrics::rss_bytes();
        let mut out = vec![
            count(
                "max_connections",
                l.max_connections,
                u64::from(inbound + outbound),
            ),
            count("max_inbound", l.max_inbound, inbound.into()),
            count("max_outbound", l.max_outbound, outbound.into()),
            count(
                "max_pending_inbound",
                l.max_pending_inbound,
                self.policy.pending_inbound.len() as u64,
            ),
            count(
                "max_per_peer",
                l.max_per_peer,
                self.peers.max_per_peer() as u64,
            ),
            entry(
                "max_negotiating_inbound_streams",
                l.max_negotiating_inbound_streams.to_string(),
                None,
                None,
            ),
            entry(
                "max_outbound_streams",
                l.max_outbound_streams.to_string(),
                None,
                None,
            ),
            entry("idle_timeout", l.idle_timeout.0.to_string(), None, None),
            entry(
                "stream_idle_timeout",
                l.stream_idle_timeout.0.to_string(),
                None,
                None,
            ),
        ];
        let mut mem = entry(
            "max_memory",
            l.max_memory.0.to_string(),
            Some(rss),
            Some(l.max_memory.0 .0),
        );
        mem.usage = ByteSize(rss).to_string();
        out.push(mem);
        control::LimitList { limits: out }
    }

    pub(super) fn set_limit(&mut self, name: &str, value: &str) -> Result<(), ApiError> {
        let bad = |m: String| ApiError::new(ErrorCode::BadRequest, m);
        let count = || -> Result<u32, ApiError> {
            value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| bad(format!("{value:?} is not a positive whole number")))
        };
        let l = &mut self.config.limits;
        match name {
            "max_connections" => l.max_connections = count()?,
            "max_inbound" => l.max_inbound = count()?,
            "max_outbound" => l.max_outbound = count()?,
            "max_pending_inbound" => l.max_pending_inbound = count()?,
            "max_per_peer" => l.max_per_peer = count()?,
            "max_memory" => {
                let v: ByteSize = value.parse().map_err(|e| bad(format!("{value:?}: {e}; e.g. 512MiB")))?;
                if v.0 < 16 << 20 {
                    return Err(bad("max_memory must be at least 16MiB".into()));
                }
                l.max_memory.0 = v;
                self.swarm.behaviour_mut().memory_limits =
                    libp2p::memory_connection_limits::Behaviour::with_max_bytes(usize::try_from(v.0).unwrap_or(usize::MAX));
            }
            "max_negotiating_inbound_streams" | "max_outbound_streams" | "idle_timeout" | "stream_idle_timeout" => {
                return Err(bad(format!(
                    "{name} cannot change on a running node; set limits.{name} in the config file and restart"
                )))
            }
            _ => {
                return Err(bad(format!(
                    "unknown limit {name:?}; see p2pctl limits for the names"
                )))
            }
        }
        *self.swarm.behaviour_mut().connection_limits.limits_mut() =
            behaviour::connection_limits(&self.config);
        self.p2p.set_limits(&self.config.limits);
        self.policy.runtime_limits.insert(name.to_string());
        Ok(())
    }

    pub(super) fn rate_allows(&mut self, peer: &PeerId) -> bool {
        let trusted = self.is_trusted(peer);
        let ok = self.policy.rate.allow(peer, trusted, Instant::now());
        if !ok {
            self.count_rejected("rate_limit");
        }
        ok
    }

    pub(super) fn count_rejected(&self, reason: &str) {
        self.policy
            .rejected_total
            .get_or_create(&RejectLabels {
                reason: reason.into(),
            })
            .inc();
    }
}
