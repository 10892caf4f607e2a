//! NAT traversal: what AutoNAT found and how, relay reservations taken while the node is
//! private, and the results of hole punching (DCUtR) on relayed connections.
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
use std::time::{Duration, Instant};

/// Relays a private node holds reservations on at once.
pub const WANT_RELAYS: usize = 2;
/// How long after a relay refused or dropped the reservation it (or another) is asked again.
pub const RETRY: Duration = Duration::from_secs(30);

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

    /// How the NAT status was learnt, in words for `p2pctl status`.
    pub fn source(&self, status: &autonat::NatStatus, confidence: usize) -> String {
        let p = &self.probes;
        match status {
            autonat::NatStatus::Public(addr) => format!(
                "AutoNAT: peers dialled {addr} back ({} of {} probes; confidence {confidence})",
                p.public,
                p.public + p.private
            ),
            autonat::NatStatus::Private => format!(
                "AutoNAT: peers could not dial this node back ({} of {} probes; confidence {confidence})",
                p.private,
                p.public + p.private
            ),
            autonat::NatStatus::Unknown => match &p.last_error {
                Some(e) => format!("AutoNAT: no answer yet ({e})"),
                None => "AutoNAT: no probe yet".into(),
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
                tracing::info!(event = "nat_status", old = ?old, new = ?new, "NAT status changed");
                match new {
                    autonat::NatStatus::Private => self.reserve_relays(),
                    autonat::NatStatus::Public(_) => {
                        for l in self.nat.give_up() {
                            self.swarm.remove_listener(l);
                        }
                        self.p2p.nat.reservations.set(0);
                    }
                    autonat::NatStatus::Unknown => {}
                }
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

    pub(super) fn is_private(&self) -> bool {
        matches!(
            self.swarm.behaviour().autonat.nat_status(),
            autonat::NatStatus::Private
        )
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
            "AutoNAT: no probe yet"
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
            "AutoNAT: peers could not dial this node back (2 of 2 probes; confidence 1)"
        );
    }
}
