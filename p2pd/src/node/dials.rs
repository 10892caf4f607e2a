//! Dials a local client waits for (`p2pctl connect`): each is answered once the peer has
//! identified itself on the new connection — a peer that accepts the handshake and then closes
//! at once (it banned us, or is full) is a failure, not a connection. A dial from the listen
//! port (libp2p's default, for NAT traversal) that collides with a connection on the same
//! address pair (EADDRINUSE, e.g. both peers dialling each other at once) is tried once more
//! from a new port.

use super::{ApiError, Code, Connected, Reply};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;

/// A dial in progress: who waits, where to, and whether it already came from a new port.
struct Dialling {
    reply: Reply<Connected>,
    target: Multiaddr,
    new_port: bool,
}

/// A dial to make again from a new port.
pub struct Retry {
    pub reply: Reply<Connected>,
    pub target: Multiaddr,
}

#[derive(Default)]
pub struct Dials {
    /// Dialling: no connection yet.
    dialling: HashMap<ConnectionId, Dialling>,
    /// Connected, waiting for identify to confirm the peer kept the connection.
    confirming: HashMap<ConnectionId, (Reply<Connected>, Connected)>,
    /// Peers the node's own dials were made again for from a new port this second: at most
    /// once each, whatever the errors.
    redialled: std::collections::HashSet<PeerId>,
}

impl Dials {
    /// `reply` waits for dial `id` to `target` (`new_port`: not from the listen port).
    pub fn started(
        &mut self,
        id: ConnectionId,
        target: Multiaddr,
        new_port: bool,
        reply: Reply<Connected>,
    ) {
        self.dialling.insert(
            id,
            Dialling {
                reply,
                target,
                new_port,
            },
        );
    }

    /// Connection `id` is up; its answer waits for identify.
    pub fn established(&mut self, id: ConnectionId, peer: PeerId, address: &Multiaddr) {
        if let Some(Dialling { reply, .. }) = self.dialling.remove(&id) {
            let answer = Connected {
                peer,
                address: address.clone(),
                already_connected: false,
            };
            self.confirming.insert(id, (reply, answer));
        }
    }

    /// The peer answered identify (or identify failed, which still means it kept the
    /// connection): the client gets its connection.
    pub fn identified(&mut self, id: ConnectionId) {
        if let Some((reply, answer)) = self.confirming.remove(&id) {
            let _ = reply.send(Ok(answer));
        }
    }

    /// Connection `id` closed before identify: the peer refused us after the handshake.
    pub fn closed(&mut self, id: ConnectionId, peer: &PeerId) {
        if let Some((reply, _)) = self.confirming.remove(&id) {
            let _ = reply.send(Err(ApiError::new(
                Code::Failed,
                format!("{peer} closed the connection right after the handshake; it may have banned this node or be at its connection limit"),
            )));
        }
    }

    /// Dial `id` failed; `why` is the error chain. A collision of a listen-port dial is handed
    /// back to be tried from a new port; anything else is the caller's error.
    pub fn failed(&mut self, id: ConnectionId, why: &str) -> Option<Retry> {
        let d = self.dialling.remove(&id)?;
        if !d.new_port && collided(why) {
            return Some(Retry {
                reply: d.reply,
                target: d.target,
            });
        }
        let _ = d.reply.send(Err(ApiError::new(
            Code::Failed,
            format!("dial failed: {why}"),
        )));
        None
    }

    /// Dials still waiting (either stage).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.dialling.len() + self.confirming.len()
    }
}

/// Whether a dial failed on EADDRINUSE: dialling from the listen port to an address pair that
/// is taken (the peer dialled us at the same moment, or the last connection between the two
/// ports is still in TIME_WAIT, which lasts a minute after a disconnect). The transports box
/// the OS error behind `Either`s whose `source()` skips it, so the text of the error chain is
/// what is left to recognise.
pub fn collided(why: &str) -> bool {
    why.contains(&format!(
        "(os error {})",
        nix::errno::Errno::EADDRINUSE as i32
    ))
}

impl Dials {
    /// Whether one of the node's own dials to `peer` may be made again from a new port now.
    pub fn may_redial(&mut self, peer: PeerId) -> bool {
        self.redialled.insert(peer)
    }

    /// Once a second: redials may happen again.
    pub fn tick(&mut self) {
        self.redialled.clear();
    }

    /// Whether a local client waits for dial `id`.
    pub fn waits_for(&self, id: ConnectionId) -> bool {
        self.dialling.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn start(d: &mut Dials, id: usize) -> oneshot::Receiver<Result<Connected, ApiError>> {
        let (reply, rx) = oneshot::channel();
        let target = "/ip4/192.0.2.1/tcp/1".parse().unwrap();
        d.started(ConnectionId::new_unchecked(id), target, false, reply);
        rx
    }

    #[test]
    fn a_dial_is_answered_once_the_peer_identifies() {
        let mut d = Dials::default();
        let mut rx = start(&mut d, 1);
        let (peer, addr) = (PeerId::random(), "/ip4/192.0.2.1/tcp/1".parse().unwrap());
        let id = ConnectionId::new_unchecked(1);
        d.established(id, peer, &addr);
        assert!(rx.try_recv().is_err(), "answered before identify");
        d.identified(id);
        let c = rx.try_recv().unwrap().unwrap();
        assert_eq!(
            (c.peer, c.address, c.already_connected),
            (peer, addr, false)
        );
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_close_before_identify_and_a_failed_dial_are_errors() {
        let mut d = Dials::default();
        let mut closed = start(&mut d, 1);
        let mut failed = start(&mut d, 2);
        let peer = PeerId::random();
        d.established(
            ConnectionId::new_unchecked(1),
            peer,
            &"/ip4/192.0.2.1/tcp/1".parse().unwrap(),
        );
        d.closed(ConnectionId::new_unchecked(1), &peer);
        let e = closed.try_recv().unwrap().unwrap_err();
        assert!(e.message.contains("right after the handshake"), "{e}");
        assert!(d
            .failed(ConnectionId::new_unchecked(2), "connection refused")
            .is_none());
        let e = failed.try_recv().unwrap().unwrap_err();
        assert_eq!(e.message, "dial failed: connection refused");
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn events_for_connections_nobody_waits_for_change_nothing() {
        let mut d = Dials::default();
        let mut rx = start(&mut d, 1);
        let other = ConnectionId::new_unchecked(9);
        d.established(
            other,
            PeerId::random(),
            &"/ip4/192.0.2.1/tcp/1".parse().unwrap(),
        );
        d.identified(other);
        d.closed(other, &PeerId::random());
        assert!(d.failed(other, "x").is_none());
        assert!(rx.try_recv().is_err());
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn the_nodes_own_dials_are_redialled_once_a_second_at_most() {
        let mut d = Dials::default();
        let p = PeerId::random();
        assert!(d.may_redial(p));
        assert!(!d.may_redial(p));
        d.tick();
        assert!(d.may_redial(p));
    }

    #[test]
    fn a_listen_port_collision_is_tried_once_more_from_a_new_port() {
        let mut d = Dials::default();
        let mut rx = start(&mut d, 1);
        let in_use = "Multiple dial errors occurred: Address already in use (os error 98)";
        let retry = d
            .failed(ConnectionId::new_unchecked(1), in_use)
            .expect("a retry");
        assert_eq!(retry.target.to_string(), "/ip4/192.0.2.1/tcp/1");
        assert!(rx.try_recv().is_err(), "the caller still waits");
        // The second dial comes from a new port: its failure is final.
        d.started(
            ConnectionId::new_unchecked(2),
            retry.target,
            true,
            retry.reply,
        );
        assert!(d.failed(ConnectionId::new_unchecked(2), in_use).is_none());
        assert!(rx
            .try_recv()
            .unwrap()
            .unwrap_err()
            .message
            .contains("os error 98"));
    }
}
