//! The policy component on its own, driven through the same hooks the swarm calls: bans, trust,
//! limits, per-address accounting and eviction, without a network or a process.

use super::*;
use crate::config::values::{IpRange, Text};
use libp2p::core::ConnectedPoint;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, ListenFailure};
use libp2p::swarm::{ConnectionId, FromSwarm, ListenError};

struct Harness {
    policy: Policy,
    next: usize,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn addr(ip: &str, port: u16) -> Multiaddr {
    format!("/ip4/{ip}/tcp/{port}").parse().unwrap()
}

impl Harness {
    fn new(config: Config) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(bans::FILE_NAME);
        let store = BanStore::start(
            path.clone(),
            BanList::default(),
            store::tests::ignore_failures(),
        );
        let mut registry = prometheus_client::registry::Registry::default();
        let policy = Policy::new(
            &config,
            BanList::default(),
            store,
            SharedRules::default(),
            PolicyMetrics::register(&mut registry),
        );
        Harness {
            policy,
            next: 0,
            _dir: dir,
            path,
        }
    }

    fn id(&mut self) -> ConnectionId {
        self.next += 1;
        ConnectionId::new_unchecked(self.next)
    }

    /// An inbound connection from `ip` reaching the pending stage; the id if admitted.
    fn pending(&mut self, ip: &str) -> Result<ConnectionId, String> {
        let id = self.id();
        self.policy
            .handle_pending_inbound_connection(id, &addr("127.0.0.1", 4001), &addr(ip, 5000))
            .map(|()| id)
            .map_err(|e| crate::node::error_chain(&e))
    }

    /// The pending connection `id` from `ip` completes its handshake as `peer`.
    fn establish(&mut self, id: ConnectionId, ip: &str, peer: PeerId) -> Result<(), String> {
        let (local, remote) = (addr("127.0.0.1", 4001), addr(ip, 5000));
        match self
            .policy
            .handle_established_inbound_connection(id, peer, &local, &remote)
        {
            Ok(_) => {
                let endpoint = ConnectedPoint::Listener {
                    local_addr: local,
                    send_back_addr: remote,
                };
                self.policy.on_swarm_event(FromSwarm::ConnectionEstablished(
                    ConnectionEstablished {
                        peer_id: peer,
                        connection_id: id,
                        endpoint: &endpoint,
                        failed_addresses: &[],
                        other_established: 0,
                    },
                ));
                Ok(())
            }
            Err(e) => {
                self.fail(id, ip);
                Err(crate::node::error_chain(&e))
            }
        }
    }

    fn fail(&mut self, id: ConnectionId, ip: &str) {
        let (local, remote) = (addr("127.0.0.1", 4001), addr(ip, 5000));
        self.policy
            .on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
                local_addr: &local,
                send_back_addr: &remote,
                error: &ListenError::Aborted,
                connection_id: id,
                peer_id: None,
            }));
    }

    fn close(&mut self, id: ConnectionId, ip: &str, peer: PeerId) {
        let endpoint = ConnectedPoint::Listener {
            local_addr: addr("127.0.0.1", 4001),
            send_back_addr: addr(ip, 5000),
        };
        self.policy
            .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id: peer,
                connection_id: id,
                endpoint: &endpoint,
                cause: None,
                remaining_established: 0,
            }));
    }
}

fn ban(target: &str) -> Ban {
    Ban {
        target: target.parse().unwrap(),
        reason: "test".into(),
        created_unix: now_unix(),
        expires_unix: None,
        created_by: "uid 0".into(),
    }
}

#[tokio::test]
async fn pending_and_established_limits_per_address() {
    let mut config = Config::default();
    config.limits.max_pending_inbound_per_ip = 2;
    config.limits.max_inbound_per_ip = 3;
    config.limits.max_pending_inbound = 5;
    config.trust.addresses = vec![Text("127.0.0.1".parse::<IpRange>().unwrap())];
    let mut h = Harness::new(config);

    // Two handshakes at a time from one address; the third waits its turn.
    let a = h.pending("127.0.0.9").unwrap();
    let b = h.pending("127.0.0.9").unwrap();
    let e = h.pending("127.0.0.9").unwrap_err();
    assert!(e.contains("max_pending_inbound_per_ip"), "{e}");
    // Another address is not affected.
    let c = h.pending("127.0.0.3").unwrap();
    h.fail(a, "127.0.0.9");
    let d = h.pending("127.0.0.9").unwrap();
    assert_eq!(h.policy.pending_usage(), (3, 2));

    // Established inbound connections per address.
    for (id, ip) in [(b, "127.0.0.9"), (d, "127.0.0.9"), (c, "127.0.0.3")] {
        h.establish(id, ip, PeerId::random()).unwrap();
    }
    let x = h.pending("127.0.0.9").unwrap();
    let peer = PeerId::random();
    h.establish(x, "127.0.0.9", peer).unwrap();
    assert_eq!(h.policy.inbound_per_ip_usage(), 3);
    let e = h.pending("127.0.0.9").unwrap_err();
    assert!(e.contains("max_inbound_per_ip"), "{e}");
    h.close(x, "127.0.0.9", peer);
    assert_eq!(h.policy.inbound_per_ip_usage(), 2);
    h.pending("127.0.0.9").unwrap();

    // The global pending limit holds others out, but not a trusted address.
    for i in 10..14 {
        let _ = h.pending(&format!("127.0.0.{i}"));
    }
    let e = h.pending("127.0.0.20").unwrap_err();
    assert!(e.contains("max_pending_inbound"), "{e}");
    for _ in 0..10 {
        h.pending("127.0.0.1")
            .expect("a trusted address bypasses the pending limits");
    }
}

#[tokio::test]
async fn a_peer_gets_room_beyond_max_per_peer_only_for_autonat_dial_backs() {
    use super::dialback::DIAL_BACKS_PER_PEER;
    use libp2p::core::transport::PortUse;
    use libp2p::core::Endpoint;
    let mut config = Config::default();
    config.limits.max_per_peer = 2;
    // The harness's addresses are loopback ones.
    config.network.autonat_private_addrs = true;
    let mut h = Harness::new(config);
    let peer = PeerId::random();
    let dial_backs = h.policy.dial_backs();
    let inbound = |h: &mut Harness, n: u8| {
        let ip = format!("127.0.1.{n}");
        let id = h.pending(&ip).unwrap();
        h.establish(id, &ip, peer).map(|()| id)
    };

    inbound(&mut h, 1).unwrap();
    inbound(&mut h, 2).unwrap();
    let e = inbound(&mut h, 3).unwrap_err();
    assert!(e.contains("limits.max_per_peer"), "{e}");

    // Our AutoNAT client asked the peer to dial back (twice): two more connections, no third.
    dial_backs.asked(peer, std::time::Instant::now());
    dial_backs.asked(peer, std::time::Instant::now());
    let back = inbound(&mut h, 4).expect("the dial-back asked for");
    inbound(&mut h, 5).expect("the second dial-back asked for");
    assert!(
        inbound(&mut h, 6).is_err(),
        "nothing more than was asked for"
    );

    // Our AutoNAT server dials the peer back: that dial has room, another dial does not.
    let dial = |h: &mut Harness, ours: bool| {
        let id = h.id();
        if ours {
            dial_backs.dialing(id);
        }
        let target = addr("127.0.2.1", 4001);
        h.policy
            .handle_pending_outbound_connection(
                id,
                Some(peer),
                std::slice::from_ref(&target),
                Endpoint::Dialer,
            )
            .map_err(|e| crate::node::error_chain(&e))?;
        h.policy
            .handle_established_outbound_connection(
                id,
                peer,
                &target,
                Endpoint::Dialer,
                PortUse::New,
            )
            .map_err(|e| crate::node::error_chain(&e))?;
        let endpoint = ConnectedPoint::Dialer {
            address: target,
            role_override: Endpoint::Dialer,
            port_use: PortUse::New,
        };
        h.policy
            .on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: peer,
                connection_id: id,
                endpoint: &endpoint,
                failed_addresses: &[],
                other_established: 0,
            }));
        Ok::<_, String>(id)
    };
    let e = dial(&mut h, false).unwrap_err();
    assert!(e.contains("limits.max_per_peer"), "{e}");
    dial(&mut h, true).expect("our own dial-back");
    dial(&mut h, true).expect("our own dial-back");
    // The peer holds max_per_peer + DIAL_BACKS_PER_PEER now: not one more, even a dial-back.
    assert_eq!(DIAL_BACKS_PER_PEER, 4);
    assert!(dial(&mut h, true).is_err());

    // A dial-back that ends frees its own room, not the counted one.
    h.close(back, "127.0.1.4", peer);
    assert!(dial(&mut h, false).is_err());
    dial(&mut h, true).expect("room for a dial-back again");
}

#[tokio::test]
async fn autonat_dial_backs_go_only_to_global_addresses_unless_the_network_is_private() {
    use libp2p::core::Endpoint;
    for private_ok in [false, true] {
        let mut config = Config::default();
        config.network.autonat_private_addrs = private_ok;
        let mut h = Harness::new(config);
        let dial_backs = h.policy.dial_backs();
        let peer = PeerId::random();
        let dial = |h: &mut Harness, target: &str, ours: bool| {
            let id = h.id();
            if ours {
                dial_backs.dialing(id);
            }
            h.policy
                .handle_pending_outbound_connection(
                    id,
                    Some(peer),
                    &[target.parse().unwrap()],
                    Endpoint::Dialer,
                )
                .map(|_| ())
                .map_err(|e| crate::node::error_chain(&e))
        };
        for inside in ["/ip4/127.0.0.1/tcp/9100", "/ip4/192.168.1.1/tcp/22"] {
            let r = dial(&mut h, inside, true);
            if private_ok {
                r.unwrap();
            } else {
                let e = r.unwrap_err();
                assert!(e.contains("autonat_private_addrs"), "{e}");
            }
            dial(&mut h, inside, false).expect("the node's own dials are not dial-backs");
        }
        dial(&mut h, "/ip4/8.8.8.8/tcp/4001", true).expect("a global address");
    }
}

#[tokio::test]
async fn new_connections_per_address_are_rate_limited() {
    let mut config = Config::default();
    config.limits.inbound_burst_per_ip = 5;
    config.limits.inbound_rate_per_ip = 1;
    let mut h = Harness::new(config);
    for _ in 0..5 {
        let id = h.pending("192.0.2.1").unwrap();
        h.fail(id, "192.0.2.1");
    }
    let e = h.pending("192.0.2.1").unwrap_err();
    assert!(e.contains("inbound_rate_per_ip"), "{e}");
    h.pending("192.0.2.2").unwrap();
}

#[tokio::test]
async fn bans_refuse_close_persist_and_lift() {
    let mut h = Harness::new(Config::default());
    let peer = PeerId::random();
    let id = h.pending("198.51.100.7").unwrap();
    h.establish(id, "198.51.100.7", peer).unwrap();

    let (a, written) = store::ack_channel();
    assert_eq!(
        h.policy.ban(ban("198.51.100.0/24"), Some(a)),
        1,
        "the covered connection is closed"
    );
    written.await.unwrap().unwrap();
    let on_disk = BanList::load(&h.path);
    assert_eq!(on_disk.len(), 1, "acknowledged, so on disk");
    let e = h.pending("198.51.100.8").unwrap_err();
    assert!(e.contains("banned"), "{e}");
    let dial: Multiaddr = "/ip4/198.51.100.9/udp/1/quic-v1".parse().unwrap();
    assert!(
        h.policy.refuses_addr(&dial).is_some(),
        "dials are refused too"
    );

    let p = PeerId::random();
    h.policy.ban(ban(&p.to_string()), None);
    let id = h.pending("203.0.113.1").unwrap();
    let e = h.establish(id, "203.0.113.1", p).unwrap_err();
    assert!(e.contains("banned"), "{e}");

    let (a, written) = store::ack_channel();
    assert!(h
        .policy
        .unban(&"198.51.100.0/24".parse().unwrap(), a)
        .is_some());
    written.await.unwrap().unwrap();
    assert!(h.policy.refuses_addr(&dial).is_none());
    h.pending("198.51.100.8").unwrap();
    assert_eq!(BanList::load(&h.path).len(), 1);
}

#[tokio::test]
async fn trust_bypasses_per_address_limits_and_is_persisted() {
    let mut config = Config::default();
    config.limits.max_inbound_per_ip = 1;
    let mut h = Harness::new(config);
    let first = h.pending("192.0.2.5").unwrap();
    h.establish(first, "192.0.2.5", PeerId::random()).unwrap();

    let trusted = PeerId::random();
    let (a, written) = store::ack_channel();
    h.policy.trust(trusted, None, a);
    written.await.unwrap().unwrap();
    assert!(BanList::load(&h.path).trusted.contains(&trusted));
    // The pending stage still counts the address; once the id is known, trust wins.
    let mut config = Config::default();
    config.limits.max_inbound_per_ip = 2;
    h.policy.set_limits(&config.limits);
    let id = h.pending("192.0.2.5").unwrap();
    let other = h.pending("192.0.2.5").unwrap();
    h.establish(id, "192.0.2.5", trusted).unwrap();
    let e = h
        .establish(other, "192.0.2.5", PeerId::random())
        .unwrap_err();
    assert!(e.contains("max_inbound_per_ip"), "{e}");

    let (a, _) = store::ack_channel();
    assert_eq!(
        h.policy.untrust(&PeerId::random(), a),
        Err(Untrust::NotTrusted)
    );
    let (a, written) = store::ack_channel();
    h.policy.untrust(&trusted, a).unwrap();
    written.await.unwrap().unwrap();
    assert!(!h.policy.is_trusted(&trusted));
    assert!(BanList::load(&h.path).trusted.is_empty());
}

#[tokio::test]
async fn operator_edits_merge_without_losing_newer_changes() {
    let mut h = Harness::new(Config::default());
    let (a, w) = store::ack_channel();
    h.policy.ban(ban("192.0.2.1"), Some(a));
    w.await.unwrap().unwrap();
    // The operator removes that ban and adds one by hand...
    let mut file = BanList::load(&h.path);
    file.remove(&"192.0.2.1".parse().unwrap());
    file.add(ban("192.0.2.2"));
    file.save(&h.path).unwrap();
    // ...while a ban made through p2pctl is still on its way to disk.
    h.policy.ban(ban("192.0.2.3"), None);
    let edits = h.policy.state().store.edits().await;
    h.policy.apply_edits(edits, None);
    let mut now: Vec<String> = h
        .policy
        .active_bans()
        .map(|b| b.target.to_string())
        .collect();
    now.sort();
    assert_eq!(now, ["192.0.2.2", "192.0.2.3"]);
    h.policy.state().store.flush().await;
    assert_eq!(BanList::load(&h.path).len(), 2);
}

#[tokio::test]
async fn rate_state_of_many_identities_is_evicted() {
    let mut h = Harness::new(Config::default());
    for _ in 0..20_000 {
        assert_eq!(h.policy.admit(&PeerId::random()), Admit::Yes);
    }
    assert_eq!(h.policy.state().rate.tracked().0, 20_000);
    // One token's refill later, each entry is indistinguishable from a fresh one again.
    h.policy.sweep_at(Instant::now() + Duration::from_secs(1));
    let (len, cap) = h.policy.state().rate.tracked();
    assert_eq!(len, 0);
    assert!(cap <= 64, "{cap} slots kept after eviction");
}

/// The default buckets let an honest publisher at the rate p2pd is built to carry (20,000
/// messages a second, sustained for ten seconds, in one burst per millisecond) through without
/// a single drop or a point of score, and still stop a peer at ten times that.
#[test]
fn default_rate_limits_never_drop_an_honest_publisher_at_full_speed() {
    let (normal, trusted, threshold) = super::buckets(&Config::default());
    let mut rate = super::rate::RateLimiter::new(normal, trusted, threshold);
    let honest = PeerId::random();
    let t0 = Instant::now();
    for ms in 0..10_000u64 {
        let now = t0 + Duration::from_millis(ms);
        for _ in 0..20 {
            assert_eq!(
                rate.allow(&honest, false, now),
                super::rate::Admit::Yes,
                "dropped at {ms} ms"
            );
        }
    }
    assert_eq!(rate.score(&honest, t0 + Duration::from_secs(10)), 0.0);
    let flood = PeerId::random();
    let dropped = (0..10_000u64)
        .flat_map(|ms| std::iter::repeat_n(t0 + Duration::from_millis(ms), 200))
        .filter(|now| rate.allow(&flood, false, *now) != super::rate::Admit::Yes)
        .count();
    assert!(
        dropped > 1_000_000,
        "a 200,000/s flood kept {dropped} drops"
    );
}
