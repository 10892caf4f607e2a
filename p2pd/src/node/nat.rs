//! NAT traversal: what AutoNAT found and how, relay reservations taken while the node is
//! private, and the results of hole punching (DCUtR) on relayed connections.
//!
//! Two AutoNATs run side by side. v1 asks peers to dial the node back and keeps a node-wide
//! public/private answer with a confidence; v2 tests each candidate address (what peers
//! observe) on its own, confirms the reachable ones as external addresses, and answers other
//! nodes' tests. The node is public when v1 says so or v2 confirmed an address, private when
//! v1 says so or v2 found only unreachable addresses, and unknown before either answers.
//!
//! A node AutoNAT finds private asks up to [`WANT_RELAYS`] relays for a reservation: those in
//! `network.relays` first, then connected peers that offer relaying (circuit relay v2 `hop`,
//! seen in identify). The reservation is a listener on `RELAY/p2p-circuit`; the relay client
//! confirms its address as an external address once the relay accepts, so identify and the
//! DHT announce it. When the node turns public the reservations are given up. Relays that
//! refuse or drop are asked again after [`RETRY`].

use super::Node;
use crate::metrics::{DirectionLabels, NatMetrics};
use libp2p::core::transport::ListenerId;
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::{autonat, dcutr, relay, Multiaddr, PeerId};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

/// Relays a private node holds reservations on at once.
pub const WANT_RELAYS: usize = 2;
/// How long after a relay refused or dropped the reservation it (or another) is asked again.
pub const RETRY: Duration = Duration::from_secs(30);

/// Addresses AutoNAT v2 tested that are remembered, the most recently tested ones (behind a
/// symmetric NAT every peer observes another port).
pub const MAX_TESTED: usize = 32;

/// How long an AutoNAT v2 result counts towards the node-wide answer. v2 tests an address once;
/// after a network change a stale "reachable" would keep a node that is now behind a NAT from
/// asking relays, so past this only v1 (which probes again every 15 minutes) decides.
pub const TESTED_FRESH: Duration = Duration::from_secs(30 * 60);

/// Whether peers can dial this node, from both AutoNATs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    #[default]
    Unknown,
    Public,
    Private,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Unknown => "unknown",
            Reach::Public => "public",
            Reach::Private => "private",
        }
    }
}

/// What AutoNAT v2 found about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tested {
    pub reachable: bool,
    /// The peer that dialled back (or could not).
    pub by: PeerId,
    pub error: Option<String>,
    pub at: SystemTime,
}

/// The NAT traversal state the node keeps.
#[derive(Debug, Default)]
pub struct Nat {
    /// `network.relays`: (relay, address to dial it).
    configured: Vec<(PeerId, Multiaddr)>,
    /// Reservations asked for: the listener, the relay and the `/p2p-circuit` address.
    asked: HashMap<ListenerId, (PeerId, Multiaddr)>,
    /// Relays that accepted, with when.
    accepted: BTreeMap<PeerId, Instant>,
    /// Relays not asked again before the instant.
    backoff: HashMap<PeerId, Instant>,
    probes: Probes,
    /// AutoNAT v2's results by address.
    tested: BTreeMap<Multiaddr, Tested>,
    /// The answer last acted on (relays reserved or given up).
    reach: Reach,
    pub punches: Punches,
}

/// AutoNAT probes of this node so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probes {
    pub public: u32,
    pub private: u32,
    pub last_error: Option<String>,
}

/// Hole-punching results so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Punches {
    pub succeeded: u32,
    pub failed: u32,
    pub last_error: Option<String>,
}

impl Nat {
    pub fn new(relays: impl IntoIterator<Item = Multiaddr>) -> Self {
        let configured = relays
            .into_iter()
            .filter_map(|a| {
                Some((
                    crate::addr::peer_id_of(&a)?,
                    crate::addr::without_peer_id(&a),
                ))
            })
            .collect();
        Nat {
            configured,
            ..Default::default()
        }
    }

    /// Relays to ask now, with the `/p2p-circuit` address to listen on: configured ones first,
    /// then `offering` (connected peers that relay, with an address this node dialled), none
    /// already asked or backing off, up to [`WANT_RELAYS`] in all.
    pub fn to_ask(
        &self,
        now: Instant,
        offering: impl IntoIterator<Item = (PeerId, Multiaddr)>,
    ) -> Vec<(PeerId, Multiaddr)> {
        let room = WANT_RELAYS.saturating_sub(self.asked.len());
        let asked = |p: &PeerId| self.asked.values().any(|(r, _)| r == p);
        let waiting = |p: &PeerId| self.backoff.get(p).is_some_and(|t| *t > now);
        let mut picked: Vec<(PeerId, Multiaddr)> = Vec::new();
        let candidates = self.configured.iter().cloned().chain(offering);
        for (peer, addr) in candidates {
            if picked.len() >= room {
                break;
            }
            if asked(&peer) || waiting(&peer) || picked.iter().any(|(p, _)| *p == peer) {
                continue;
            }
            let circuit = crate::addr::without_peer_id(&addr)
                .with(Protocol::P2p(peer))
                .with(Protocol::P2pCircuit);
            picked.push((peer, circuit));
        }
        picked
    }

    pub fn asked(&mut self, listener: ListenerId, relay: PeerId, circuit: Multiaddr) {
        self.asked.insert(listener, (relay, circuit));
    }

    /// A relay accepted (or renewed) the reservation; true when it is new.
    pub fn accepted(&mut self, relay: PeerId, now: Instant) -> bool {
        self.accepted.insert(relay, now).is_none()
    }

    /// A listener closed: when it was a reservation, the relay is forgotten and backs off.
    /// Returns the relay.
    pub fn closed(&mut self, listener: ListenerId, now: Instant) -> Option<PeerId> {
        let (relay, _) = self.asked.remove(&listener)?;
        self.accepted.remove(&relay);
        self.backoff.insert(relay, now + RETRY);
        Some(relay)
    }

    /// Every reservation's listener, given up (the node turned public).
    pub fn give_up(&mut self) -> Vec<ListenerId> {
        self.accepted.clear();
        self.asked.drain().map(|(l, _)| l).collect()
    }

    /// The relays holding a reservation for this node.
    pub fn reservations(&self) -> usize {
        self.accepted.len()
    }

    /// The `/p2p-circuit` addresses of the accepted reservations.
    pub fn relay_addrs(&self) -> Vec<Multiaddr> {
        let mut v: Vec<Multiaddr> = self
            .asked
            .values()
            .filter(|(r, _)| self.accepted.contains_key(r))
            .map(|(_, a)| a.clone())
            .collect();
        v.sort();
        v
    }

    pub fn probed(&mut self, result: Result<bool, String>) {
        match result {
            Ok(true) => self.probes.public += 1,
            Ok(false) => self.probes.private += 1,
            Err(e) => self.probes.last_error = Some(e),
        }
    }

    /// AutoNAT v2 tested `addr`. Only the [`MAX_TESTED`] most recent addresses are kept.
    pub fn tested(&mut self, addr: Multiaddr, result: Tested) {
        self.tested.insert(addr, result);
        while self.tested.len() > MAX_TESTED {
            let oldest = self
                .tested
                .iter()
                .min_by_key(|(_, t)| t.at)
                .map(|(a, _)| a.clone());
            match oldest {
                Some(a) => self.tested.remove(&a),
                None => break,
            };
        }
    }

    /// AutoNAT v2's results, by address.
    pub fn tested_addrs(&self) -> &BTreeMap<Multiaddr, Tested> {
        &self.tested
    }

    /// The node-wide answer from v1's `status` and v2's results of the last [`TESTED_FRESH`].
    pub fn reach(&self, status: &autonat::NatStatus, now: SystemTime) -> Reach {
        let fresh = || {
            self.tested
                .values()
                .filter(move |t| now.duration_since(t.at).map_or(true, |d| d < TESTED_FRESH))
        };
        if matches!(status, autonat::NatStatus::Public(_)) || fresh().any(|t| t.reachable) {
            Reach::Public
        } else if matches!(status, autonat::NatStatus::Private) || fresh().next().is_some() {
            Reach::Private
        } else {
            Reach::Unknown
        }
    }

    /// Records `now` as the answer acted on; the previous one when it changed.
    pub fn reach_changed(&mut self, now: Reach) -> Option<Reach> {
        let old = std::mem::replace(&mut self.reach, now);
        (old != now).then_some(old)
    }

    /// How the NAT status was learnt, in words for `p2pctl status`: v2's per-address results
    /// first (when it has any), then v1's answer.
    pub fn source(&self, status: &autonat::NatStatus, confidence: usize) -> String {
        let v1 = self.v1_source(status, confidence);
        match self.v2_source() {
            Some(v2) => format!("{v2}; {v1}"),
            None => v1,
        }
    }

    fn v2_source(&self) -> Option<String> {
        if self.tested.is_empty() {
            return None;
        }
        let (reachable, unreachable): (Vec<_>, Vec<_>) =
            self.tested.iter().partition(|(_, t)| t.reachable);
        let listed = |v: &[(&Multiaddr, &Tested)]| {
            let mut s = v
                .iter()
                .take(2)
                .map(|(a, _)| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if v.len() > 2 {
                s.push_str(&format!(" and {} more", v.len() - 2));
            }
            s
        };
        Some(if reachable.is_empty() {
            let why = unreachable
                .iter()
                .max_by_key(|(_, t)| t.at)
                .and_then(|(_, t)| t.error.as_deref())
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            format!(
                "AutoNAT v2: peers could not dial {} back{why}",
                listed(&unreachable)
            )
        } else {
            let by = reachable
                .iter()
                .max_by_key(|(_, t)| t.at)
                .map(|(_, t)| t.by.to_string())
                .unwrap_or_default();
            format!(
                "AutoNAT v2: {} reachable (dialled back by {by})",
                listed(&reachable)
            )
        })
    }

    fn v1_source(&self, status: &autonat::NatStatus, confidence: usize) -> String {
        let p = &self.probes;
        match status {
            autonat::NatStatus::Public(addr) => format!(
                "AutoNAT v1: peers dialled {addr} back ({} of {} probes; confidence {confidence})",
                p.public,
                p.public + p.private
            ),
            autonat::NatStatus::Private => format!(
                "AutoNAT v1: peers could not dial this node back ({} of {} probes; confidence {confidence})",
                p.private,
                p.public + p.private
            ),
            autonat::NatStatus::Unknown => match &p.last_error {
                Some(e) => format!("AutoNAT v1: no answer yet ({e})"),
                None => "AutoNAT v1: no probe yet".into(),
            },
        }
    }
}

/// Words for a failed AutoNAT probe.
fn probe_error(e: &autonat::OutboundProbeError) -> String {
    match e {
        autonat::OutboundProbeError::NoServer => {
            "no connected peer can probe it; connect to public peers".into()
        }
        autonat::OutboundProbeError::NoAddresses => "no address to probe".into(),
        autonat::OutboundProbeError::OutboundRequest(e) => format!("the probe failed: {e}"),
        autonat::OutboundProbeError::Response(e) => format!("the peer could not probe: {e:?}"),
    }
}

impl Node {
    pub(super) fn on_autonat(&mut self, ev: autonat::Event) {
        let m = &self.p2p.nat;
        match ev {
            autonat::Event::StatusChanged { old, new } => {
                tracing::debug!(old = ?old, new = ?new, "AutoNAT v1 status changed");
                self.nat_changed();
            }
            autonat::Event::OutboundProbe(autonat::OutboundProbeEvent::Response { .. }) => {
                NatMetrics::count(&m.probes, "public");
                self.nat.probed(Ok(true));
            }
            autonat::Event::OutboundProbe(autonat::OutboundProbeEvent::Error {
                error: autonat::OutboundProbeError::Response(autonat::ResponseError::DialError),
                ..
            }) => {
                NatMetrics::count(&m.probes, "private");
                self.nat.probed(Ok(false));
            }
            autonat::Event::OutboundProbe(autonat::OutboundProbeEvent::Error { error, .. }) => {
                NatMetrics::count(&m.probes, "error");
                tracing::debug!(error = %probe_error(&error), "AutoNAT probe failed");
                self.nat.probed(Err(probe_error(&error)));
            }
            _ => {}
        }
    }

    /// AutoNAT v2 tested one of this node's addresses.
    pub(super) fn on_autonat_v2(&mut self, ev: autonat::v2::client::Event) {
        let reachable = ev.result.is_ok();
        let error = ev.result.err().map(|e| e.to_string());
        NatMetrics::count(
            &self.p2p.nat.address_tests,
            if reachable {
                "reachable"
            } else {
                "unreachable"
            },
        );
        if reachable {
            tracing::info!(event = "autonat_v2", address = %ev.tested_addr, server = %ev.server, reachable, "a peer dialled this address back: it is reachable");
        } else {
            tracing::info!(event = "autonat_v2", address = %ev.tested_addr, server = %ev.server, reachable, error = error.as_deref().unwrap_or_default(), "a peer could not dial this address back");
        }
        self.nat.tested(
            ev.tested_addr,
            Tested {
                reachable,
                by: ev.server,
                error,
                at: SystemTime::now(),
            },
        );
        self.nat_changed();
    }

    /// This node tested another node's address for it.
    pub(super) fn on_autonat_v2_server(&mut self, ev: autonat::v2::server::Event) {
        let ok = ev.result.is_ok();
        NatMetrics::count(&self.p2p.nat.dial_backs, if ok { "ok" } else { "failed" });
        tracing::debug!(peer_id = %ev.client, address = %ev.tested_addr, ok, "dialled a peer back for its AutoNAT v2 test");
    }

    /// The node-wide answer now, from both AutoNATs.
    pub(super) fn reach(&self) -> Reach {
        self.nat.reach(
            &self.swarm.behaviour().autonat.nat_status(),
            SystemTime::now(),
        )
    }

    /// Acts on a change of the node-wide answer: a private node asks relays for reservations,
    /// a public one gives them up. Called on AutoNAT's events and every tick (v2's results age).
    pub(super) fn nat_changed(&mut self) {
        let now = self.reach();
        let Some(old) = self.nat.reach_changed(now) else {
            return;
        };
        let autonat = &self.swarm.behaviour().autonat;
        let source = self.nat.source(&autonat.nat_status(), autonat.confidence());
        tracing::info!(event = "nat_status", old = old.as_str(), new = now.as_str(), source = %source, "NAT status changed");
        match now {
            Reach::Private => self.reserve_relays(),
            Reach::Public => {
                for l in self.nat.give_up() {
                    self.swarm.remove_listener(l);
                }
                self.p2p.nat.reservations.set(0);
            }
            Reach::Unknown => {}
        }
    }

    pub(super) fn is_private(&self) -> bool {
        self.reach() == Reach::Private
    }

    /// While private: asks relays for reservations until [`WANT_RELAYS`] are asked.
    pub(super) fn reserve_relays(&mut self) {
        if !self.is_private() {
            return;
        }
        let hop = relay::HOP_PROTOCOL_NAME;
        let offering: Vec<_> = self.peers.offering(hop.as_ref()).collect();
        for (relay, circuit) in self.nat.to_ask(Instant::now(), offering) {
            match self.swarm.listen_on(circuit.clone()) {
                Ok(l) => {
                    tracing::info!(event = "relay_reserve", relay = %relay, address = %circuit, "asking a relay for a reservation (this node is behind a NAT)");
                    self.nat.asked(l, relay, circuit);
                }
                Err(e) => {
                    tracing::warn!(relay = %relay, address = %circuit, error = %e, "cannot ask the relay for a reservation")
                }
            }
        }
    }

    /// A listener closed: a reservation lost is asked for again later. True when the listener
    /// was a relay reservation (and its end has been logged).
    pub(super) fn on_listener_closed(&mut self, listener: ListenerId) -> bool {
        let Some(relay) = self.nat.closed(listener, Instant::now()) else {
            return false;
        };
        tracing::warn!(event = "relay_reservation_lost", relay = %relay, "the relay reservation ended; another relay is asked");
        NatMetrics::count(&self.p2p.nat.reservation_results, "failed");
        self.p2p
            .nat
            .reservations
            .set(self.nat.reservations() as i64);
        self.reserve_relays();
        true
    }

    pub(super) fn on_relay_client(&mut self, ev: relay::client::Event) {
        let m = &self.p2p.nat;
        match ev {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if self.nat.accepted(relay_peer_id, Instant::now()) {
                    tracing::info!(event = "relay_reservation", relay = %relay_peer_id, "a relay accepted the reservation: this node is reachable through it");
                }
                let result = if renewal { "renewed" } else { "accepted" };
                NatMetrics::count(&m.reservation_results, result);
                m.reservations.set(self.nat.reservations() as i64);
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "circuit through a relay opened");
                m.circuits
                    .get_or_create(&DirectionLabels {
                        direction: "out".into(),
                    })
                    .inc();
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer_id = %src_peer_id, "a peer reached this node through a relay");
                m.circuits
                    .get_or_create(&DirectionLabels {
                        direction: "in".into(),
                    })
                    .inc();
            }
        }
    }

    pub(super) fn on_dcutr(&mut self, ev: dcutr::Event) {
        self.metrics.record(&ev);
        let m = &self.p2p.nat;
        match ev.result {
            Ok(_) => {
                tracing::info!(event = "hole_punch", peer_id = %ev.remote_peer_id, result = "success", "the relayed connection was upgraded to a direct one (hole punching)");
                NatMetrics::count(&m.hole_punches, "success");
                self.nat.punches.succeeded += 1;
            }
            Err(e) => {
                let why = super::error_chain(&e);
                tracing::info!(event = "hole_punch", peer_id = %ev.remote_peer_id, result = "failure", error = %why, "hole punching failed; the connection stays relayed");
                NatMetrics::count(&m.hole_punches, "failure");
                self.nat.punches.failed += 1;
                self.nat.punches.last_error = Some(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(n: u8) -> (PeerId, Multiaddr) {
        let peer = libp2p::identity::Keypair::ed25519_from_bytes([n; 32])
            .unwrap()
            .public()
            .to_peer_id();
        let addr = format!("/ip4/198.51.100.{n}/tcp/4001").parse().unwrap();
        (peer, addr)
    }

    fn listener() -> ListenerId {
        ListenerId::next()
    }

    #[test]
    fn configured_relays_come_first_then_offering_peers_up_to_the_limit() {
        let (a, b, c) = (relay(1), relay(2), relay(3));
        let nat = Nat::new([a.1.clone().with(Protocol::P2p(a.0))]);
        let now = Instant::now();
        let picked = nat.to_ask(now, [b.clone(), c.clone()]);
        assert_eq!(picked.len(), WANT_RELAYS);
        assert_eq!(picked[0].0, a.0);
        assert_eq!(picked[1].0, b.0);
        assert_eq!(
            picked[0].1.to_string(),
            format!("/ip4/198.51.100.1/tcp/4001/p2p/{}/p2p-circuit", a.0)
        );
    }

    #[test]
    fn asked_relays_are_not_asked_twice_and_lost_ones_back_off() {
        let (a, b) = (relay(1), relay(2));
        let mut nat = Nat::default();
        let now = Instant::now();
        let la = listener();
        let picked = nat.to_ask(now, [a.clone()]);
        nat.asked(la, a.0, picked[0].1.clone());
        assert!(nat.to_ask(now, [a.clone()]).is_empty());
        assert!(nat.accepted(a.0, now));
        assert!(!nat.accepted(a.0, now), "a renewal is not new");
        assert_eq!(nat.reservations(), 1);
        assert_eq!(nat.relay_addrs(), vec![picked[0].1.clone()]);

        // The relay drops it: forgotten, and not asked again until RETRY passes.
        assert_eq!(nat.closed(la, now), Some(a.0));
        assert_eq!(nat.closed(la, now), None);
        assert_eq!(nat.reservations(), 0);
        let only_b = nat.to_ask(now, [a.clone(), b.clone()]);
        assert_eq!(only_b.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [b.0]);
        assert_eq!(
            nat.to_ask(now + RETRY + Duration::from_secs(1), [a.clone()])
                .len(),
            1
        );
    }

    #[test]
    fn giving_up_returns_every_listener() {
        let (a, b) = (relay(1), relay(2));
        let mut nat = Nat::default();
        let (la, lb) = (listener(), listener());
        nat.asked(la, a.0, a.1);
        nat.asked(lb, b.0, b.1);
        nat.accepted(a.0, Instant::now());
        let given: std::collections::HashSet<ListenerId> = nat.give_up().into_iter().collect();
        assert_eq!(given, [la, lb].into_iter().collect());
        assert_eq!(nat.reservations(), 0);
        assert!(nat.relay_addrs().is_empty());
    }

    #[test]
    fn the_source_says_how_the_status_was_learnt() {
        let mut nat = Nat::default();
        assert_eq!(
            nat.source(&autonat::NatStatus::Unknown, 0),
            "AutoNAT v1: no probe yet"
        );
        nat.probed(Err(
            "no connected peer can probe it; connect to public peers".into(),
        ));
        assert!(nat
            .source(&autonat::NatStatus::Unknown, 0)
            .contains("no connected peer can probe it"));
        nat.probed(Ok(false));
        nat.probed(Ok(false));
        assert_eq!(
            nat.source(&autonat::NatStatus::Private, 1),
            "AutoNAT v1: peers could not dial this node back (2 of 2 probes; confidence 1)"
        );
    }

    fn test(reachable: bool, secs: u64) -> Tested {
        Tested {
            reachable,
            by: relay(9).0,
            error: (!reachable).then(|| "server failed to establish a connection".into()),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn both_autonats_make_the_answer_and_a_reachable_address_wins() {
        let mut nat = Nat::default();
        let unknown = autonat::NatStatus::Unknown;
        let private = autonat::NatStatus::Private;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(nat.reach(&unknown, now), Reach::Unknown);
        assert_eq!(nat.reach(&private, now), Reach::Private);
        let public = autonat::NatStatus::Public("/ip4/198.51.100.7/tcp/4001".parse().unwrap());
        assert_eq!(nat.reach(&public, now), Reach::Public);

        // v2 alone: an unreachable address makes the node private...
        let mapped: Multiaddr = "/ip4/198.51.100.7/tcp/50123".parse().unwrap();
        nat.tested(mapped.clone(), test(false, 1));
        assert_eq!(nat.reach(&unknown, now), Reach::Private);
        let s = nat.source(&unknown, 0);
        assert!(
            s.starts_with(
                "AutoNAT v2: peers could not dial /ip4/198.51.100.7/tcp/50123 back: server failed"
            ),
            "{s}"
        );
        assert!(s.ends_with("; AutoNAT v1: no probe yet"), "{s}");

        // ...and one reachable address makes it public, whatever v1 says.
        let direct: Multiaddr = "/ip4/198.51.100.7/tcp/4001".parse().unwrap();
        nat.tested(direct, test(true, 2));
        assert_eq!(nat.reach(&private, now), Reach::Public);

        // A result that old no longer counts: v1 decides (after a network change v2 does not
        // test again).
        let later = now + TESTED_FRESH;
        assert_eq!(nat.reach(&private, later), Reach::Private);
        assert_eq!(nat.reach(&unknown, later), Reach::Unknown);
        let s = nat.source(&private, 1);
        assert!(
            s.starts_with(&format!(
                "AutoNAT v2: /ip4/198.51.100.7/tcp/4001 reachable (dialled back by {})",
                relay(9).0
            )),
            "{s}"
        );

        assert_eq!(nat.reach_changed(Reach::Public), Some(Reach::Unknown));
        assert_eq!(nat.reach_changed(Reach::Public), None);
    }

    #[test]
    fn only_the_most_recent_tested_addresses_are_kept() {
        let mut nat = Nat::default();
        for port in 0..(MAX_TESTED as u64 + 10) {
            let addr: Multiaddr = format!("/ip4/198.51.100.7/tcp/{}", 40000 + port)
                .parse()
                .unwrap();
            nat.tested(addr, test(false, port));
        }
        assert_eq!(nat.tested_addrs().len(), MAX_TESTED);
        let oldest = nat.tested_addrs().values().map(|t| t.at).min().unwrap();
        assert_eq!(oldest, SystemTime::UNIX_EPOCH + Duration::from_secs(10));
    }
}
