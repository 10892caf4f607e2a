//! AutoNAT dial-backs and the per-peer connection limit.
//!
//! An AutoNAT test is a connection of its own: the tested node asks a peer to dial it back, and
//! the peer opens a new connection to the address under test (v1 once per probe, v2 once per
//! address). Two nodes testing each other over the connection they share need several at once
//! — two p2pd nodes with TCP and QUIC addresses, up to six beside the shared one — and with
//! `limits.max_per_peer` counting them, honest tests failed and public nodes were reported
//! unreachable. So the guard lets a peer hold up to [`DIAL_BACKS_PER_PEER`] dial-back
//! connections beyond `limits.max_per_peer`: outbound ones only when our AutoNAT server asked
//! for that very dial, inbound ones only from a peer our AutoNAT client asked to dial back in
//! the last [`EXPECT_FOR`]. A peer cannot use this to open connections to us at will, and what
//! it can make us dial for it is bounded too.
//!
//! [`Marked`] wraps an AutoNAT behaviour and records both: every dial it makes is a dial-back
//! (an AutoNAT behaviour dials for nothing else), every request it sends to a peer's handler
//! expects one. It can also keep candidate addresses outside global IP space from it (what
//! `network.autonat_private_addrs = false` means for AutoNAT v2, as `only_global_ips` does
//! for v1): a peer on the same LAN dialling a private address back says nothing about the
//! node's NAT.

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Dial-back connections a peer may hold beyond `limits.max_per_peer`.
pub const DIAL_BACKS_PER_PEER: u32 = 4;
/// How long after asking a peer to dial back its connection is let in as a dial-back.
pub const EXPECT_FOR: Duration = Duration::from_secs(30);
/// Peers with dial-backs expected, and our own dial-backs in progress, at most (AutoNAT asks
/// a handful of peers at a time; this only bounds the bookkeeping).
const MAX_TRACKED: usize = 1024;

/// The dial-backs in flight, shared by the AutoNAT behaviours and the guard.
#[derive(Debug, Clone, Default)]
pub struct DialBacks(Arc<Mutex<Tracked>>);

#[derive(Debug, Default)]
struct Tracked {
    /// Dials our AutoNAT server makes.
    dialing: HashSet<ConnectionId>,
    /// Peers asked to dial us back: how many dial-backs, until when.
    expected: HashMap<PeerId, (u32, Instant)>,
}

impl DialBacks {
    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Our AutoNAT server dials `id` back.
    pub fn dialing(&self, id: ConnectionId) {
        let mut t = self.lock();
        if t.dialing.len() < MAX_TRACKED {
            t.dialing.insert(id);
        }
    }

    /// Whether `id` is one of our dial-backs.
    pub fn is_dialing(&self, id: ConnectionId) -> bool {
        self.lock().dialing.contains(&id)
    }

    /// Whether `id` is one of our dial-backs; forgets it.
    pub fn take_dialing(&self, id: ConnectionId) -> bool {
        self.lock().dialing.remove(&id)
    }

    /// Our AutoNAT client asked `peer` to dial us back.
    pub fn asked(&self, peer: PeerId, now: Instant) {
        let mut t = self.lock();
        t.expected.retain(|_, (_, until)| *until > now);
        if t.expected.len() >= MAX_TRACKED && !t.expected.contains_key(&peer) {
            return;
        }
        let e = t.expected.entry(peer).or_insert((0, now));
        e.0 = (e.0 + 1).min(DIAL_BACKS_PER_PEER);
        e.1 = now + EXPECT_FOR;
    }

    /// Whether an inbound connection from `peer` is a dial-back we asked for; counts it.
    pub fn take_expected(&self, peer: &PeerId, now: Instant) -> bool {
        let mut t = self.lock();
        let Some((left, until)) = t.expected.get_mut(peer) else {
            return false;
        };
        if *until <= now || *left == 0 {
            t.expected.remove(peer);
            return false;
        }
        *left -= 1;
        if *left == 0 {
            t.expected.remove(peer);
        }
        true
    }
}

/// An AutoNAT behaviour whose dials are recorded as dial-backs and whose requests to peers as
/// dial-backs expected. Derefs to the behaviour.
pub struct Marked<B> {
    inner: B,
    dial_backs: DialBacks,
    only_global: bool,
}

impl<B> Marked<B> {
    pub fn new(inner: B, dial_backs: DialBacks) -> Self {
        Marked {
            inner,
            dial_backs,
            only_global: false,
        }
    }

    /// Candidate external addresses outside global IP space are not passed on.
    pub fn only_global(mut self, yes: bool) -> Self {
        self.only_global = yes;
        self
    }
}

impl<B> Deref for Marked<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B> DerefMut for Marked<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Marked<B> {
    type ConnectionHandler = B::ConnectionHandler;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::NewExternalAddrCandidate(c) = &event {
            if self.only_global && !crate::addr::is_global(c.addr) {
                return;
            }
        }
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<B::ToSwarm, THandlerInEvent<B>>> {
        let event = std::task::ready!(self.inner.poll(cx));
        match &event {
            ToSwarm::Dial { opts } => self.dial_backs.dialing(opts.connection_id()),
            ToSwarm::NotifyHandler { peer_id, .. } => {
                self.dial_backs.asked(*peer_id, Instant::now())
            }
            _ => {}
        }
        Poll::Ready(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        libp2p::identity::Keypair::ed25519_from_bytes([n; 32])
            .unwrap()
            .public()
            .to_peer_id()
    }

    #[test]
    fn an_inbound_dial_back_is_let_in_only_when_asked_for_and_only_as_often() {
        let d = DialBacks::default();
        let now = Instant::now();
        assert!(!d.take_expected(&peer(1), now), "never asked");
        d.asked(peer(1), now);
        d.asked(peer(1), now);
        assert!(d.take_expected(&peer(1), now));
        assert!(d.take_expected(&peer(1), now));
        assert!(!d.take_expected(&peer(1), now), "asked twice, let in twice");
        assert!(!d.take_expected(&peer(2), now), "another peer");

        for _ in 0..10 {
            d.asked(peer(1), now);
        }
        let let_in = (0..10).filter(|_| d.take_expected(&peer(1), now)).count();
        assert_eq!(let_in as u32, DIAL_BACKS_PER_PEER);

        d.asked(peer(3), now);
        assert!(
            !d.take_expected(&peer(3), now + EXPECT_FOR),
            "too late: not a dial-back any more"
        );
    }

    #[test]
    fn our_own_dial_backs_are_known_by_connection() {
        let d = DialBacks::default();
        let (a, b) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        d.dialing(a);
        assert!(!d.take_dialing(b));
        assert!(d.take_dialing(a));
        assert!(!d.take_dialing(a), "forgotten once taken");
    }

    /// Records the candidates it is told about.
    #[derive(Default)]
    struct Candidates(Vec<Multiaddr>);

    impl NetworkBehaviour for Candidates {
        type ConnectionHandler = libp2p::swarm::dummy::ConnectionHandler;
        type ToSwarm = std::convert::Infallible;

        fn handle_established_inbound_connection(
            &mut self,
            _: ConnectionId,
            _: PeerId,
            _: &Multiaddr,
            _: &Multiaddr,
        ) -> Result<THandler<Self>, ConnectionDenied> {
            Ok(libp2p::swarm::dummy::ConnectionHandler)
        }

        fn handle_established_outbound_connection(
            &mut self,
            _: ConnectionId,
            _: PeerId,
            _: &Multiaddr,
            _: Endpoint,
            _: PortUse,
        ) -> Result<THandler<Self>, ConnectionDenied> {
            Ok(libp2p::swarm::dummy::ConnectionHandler)
        }

        fn on_swarm_event(&mut self, event: FromSwarm) {
            if let FromSwarm::NewExternalAddrCandidate(c) = event {
                self.0.push(c.addr.clone());
            }
        }

        fn on_connection_handler_event(
            &mut self,
            _: PeerId,
            _: ConnectionId,
            event: THandlerOutEvent<Self>,
        ) {
            match event {}
        }

        fn poll(
            &mut self,
            _: &mut Context<'_>,
        ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
            Poll::Pending
        }
    }

    #[test]
    fn private_candidates_are_kept_from_autonat_unless_the_network_is_private() {
        let lan: Multiaddr = "/ip4/192.168.1.5/tcp/4001".parse().unwrap();
        let public: Multiaddr = "/ip4/8.8.8.8/tcp/4001".parse().unwrap();
        for (only_global, seen) in [
            (true, vec![public.clone()]),
            (false, vec![lan.clone(), public.clone()]),
        ] {
            let mut m =
                Marked::new(Candidates::default(), DialBacks::default()).only_global(only_global);
            for addr in [&lan, &public] {
                m.on_swarm_event(FromSwarm::NewExternalAddrCandidate(
                    libp2p::swarm::behaviour::NewExternalAddrCandidate { addr },
                ));
            }
            assert_eq!(m.0, seen, "only_global {only_global}");
        }
    }
}
