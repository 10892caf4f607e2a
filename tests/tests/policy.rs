//! Peer policy on real nodes: bans, CIDR bans, runtime limits, rate limits and automatic bans.

use p2pd_e2e::{
    connect_from, http_get, socket_addr, wait_until, Node, NodeOpts, Reaper, Transport,
};
use std::time::Duration;

fn tcp(bootstrap: Vec<String>) -> NodeOpts {
    NodeOpts {
        transport: Transport::Tcp,
        bootstrap,
        ..Default::default()
    }
}

fn on(ip: &str, bootstrap: Vec<String>) -> NodeOpts {
    NodeOpts {
        ip: Some(ip.into()),
        ..tcp(bootstrap)
    }
}

/// A bootstrap node over TCP, named "a".
fn bootstrap_node() -> Node {
    Node::start(
        "a",
        NodeOpts {
            is_bootstrap: true,
            ..tcp(vec![])
        },
    )
}

fn listed(node: &Node, what: &str) -> bool {
    node.ctl_json(&["bans"]).to_string().contains(what)
}

#[test]
fn ban_closes_refuses_and_survives_restart() {
    let mut a = bootstrap_node();
    let a_addr = a.multiaddr(Transport::Tcp);
    let b = Node::start("b", tcp(vec![a_addr.clone()]));
    let b_id = b.peer_id();
    assert!(wait_until(Duration::from_secs(10), || a
        .peers()
        .contains(&b_id)));

    // `connect` to a connected peer says so, with the connection's real address.
    let again = b.ctl_json(&[
        "connect",
        &format!("/ip4/127.0.0.1/tcp/1/p2p/{}", a.peer_id()),
    ]);
    assert_eq!(again["already_connected"], true, "{again}");
    assert_ne!(again["address"], "/ip4/127.0.0.1/tcp/1", "{again}");

    let out = a.ctl(&["ban", &b_id, "--reason", "misbehaving in test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(1), || !a.peers().contains(&b_id)),
        "the banned peer's connection is still open after 1 s"
    );
    let retry = b.ctl(&["connect", &a_addr]);
    assert_eq!(retry.status.code(), Some(1), "a banned peer reconnected");
    // And A's own dial to the banned peer fails with the ban and its reason.
    let dial = a.ctl(&["connect", &b.multiaddr(Transport::Tcp)]);
    let err = String::from_utf8_lossy(&dial.stderr);
    assert_eq!(dial.status.code(), Some(1));
    assert!(
        err.contains("banned") && err.contains("misbehaving in test"),
        "{err}"
    );
    let bans = a.ctl_json(&["bans"]);
    assert_eq!(bans["bans"][0]["reason"], "misbehaving in test", "{bans}");
    assert_eq!(bans["bans"][0]["created_by"], "uid 0", "{bans}");

    // Durable: still banned after a restart.
    assert!(a.stop().success());
    a.spawn(&NodeOpts {
        is_bootstrap: true,
        ..tcp(vec![])
    });
    assert!(listed(&a, &b_id), "ban lost across restart");
    let a_addr = a.multiaddr(Transport::Tcp);
    assert_eq!(b.ctl(&["connect", &a_addr]).status.code(), Some(1));

    // Unban: the peer may come back.
    assert!(a.ctl(&["unban", &b_id]).status.success());
    let back = b.ctl(&["connect", &a_addr]);
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );

    // A timed ban ends by itself.
    assert!(a.ctl(&["ban", "192.0.2.1", "--for", "2s"]).status.success());
    assert!(listed(&a, "192.0.2.1"));
    assert!(
        wait_until(Duration::from_secs(5), || !listed(&a, "192.0.2.1")),
        "timed ban did not end"
    );
    let metrics = a.status()["metrics_addr"]
        .as_str()
        .expect("metrics")
        .to_string();
    let body = http_get(&metrics, "/metrics").body;
    assert!(
        body.contains("p2p_blacklist_total{action=\"ban\",kind=\"ip\"} 1"),
        "{body}"
    );
}

/// Opens a TCP connection from `src` to `dst` and starts multistream-select: an accepted
/// connection answers, a refused one is closed before any handshake byte is sent back.
fn multistream_answer(src: [u8; 4], dst: std::net::SocketAddr) -> usize {
    use std::io::{Read, Write};
    let mut s = connect_from(src, dst);
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(b"\x13/multistream/1.0.0\n");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("no answer and no close from {src:?}: {e}"),
    }
}

#[test]
fn cidr_ban_refuses_one_loopback_address_and_not_another() {
    let a = bootstrap_node();
    assert!(a
        .ctl(&["ban", "127.0.0.2/32", "--reason", "test range"])
        .status
        .success());
    let target = socket_addr(&a.multiaddr(Transport::Tcp));
    assert!(
        multistream_answer([127, 0, 0, 3], target) > 0,
        "127.0.0.3 was refused"
    );
    assert_eq!(
        multistream_answer([127, 0, 0, 2], target),
        0,
        "127.0.0.2 was answered"
    );

    // Nor does A dial into the banned range; the neighbouring address is fine.
    let x = Node::start("x", on("127.0.0.2", vec![]));
    let y = Node::start("y", on("127.0.0.3", vec![]));
    let dial = a.ctl(&["connect", &x.multiaddr(Transport::Tcp)]);
    assert_eq!(
        dial.status.code(),
        Some(1),
        "dial to a banned address succeeded"
    );
    assert!(
        String::from_utf8_lossy(&dial.stderr).contains("banned"),
        "{}",
        String::from_utf8_lossy(&dial.stderr)
    );
    let ok = a.ctl(&["connect", &y.multiaddr(Transport::Tcp)]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn lowering_max_inbound_below_current_refuses_new_inbound_at_once() {
    let a = bootstrap_node();
    let a_addr = a.multiaddr(Transport::Tcp);
    let b = Node::start("b", tcp(vec![a_addr.clone()]));
    let c = Node::start("c", tcp(vec![a_addr.clone()]));
    let ids = [b.peer_id(), c.peer_id()];
    assert!(wait_until(Duration::from_secs(10), || ids
        .iter()
        .all(|i| a.peers().contains(i))));
    let limits = a.ctl_json(&["limits", "set", "max_inbound", "1"]);
    let inbound = limits["limits"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == "max_inbound"))
        .expect("max_inbound")
        .clone();
    assert_eq!(inbound["value"], "1");
    assert_eq!(inbound["source"], "runtime");
    let d = Node::start("d", tcp(vec![]));
    let refused = d.ctl(&["connect", &a_addr]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a new inbound connection was accepted over the limit"
    );
    assert!(
        ids.iter().all(|i| a.peers().contains(i)),
        "existing connections were dropped"
    );
    let bad = a.ctl(&["limits", "set", "max_inbound", "zero"]);
    assert_eq!(bad.status.code(), Some(1));
}

/// 2,000 connection attempts from 100 identities against max_inbound 64: established inbound
/// never exceeds 64, `status` keeps answering within 1 s, RSS stays under the memory ceiling,
/// and a trusted peer still gets in while the flood holds every inbound slot.
#[test]
fn connection_flood_is_bounded_and_a_trusted_peer_still_connects() {
    let trusted = Node::start("trusted", tcp(vec![]));
    let t_id = trusted.peer_id();
    let v = Node::start(
        "victim",
        NodeOpts {
            env: vec![
                ("P2P_LIMITS__MAX_INBOUND".into(), "64".into()),
                ("P2P_TRUST__PEERS".into(), t_id.clone()),
                // The flood comes from one address: lift the per-address limits so that it
                // reaches the global ones this test is about.
                ("P2P_LIMITS__MAX_INBOUND_PER_IP".into(), "100000".into()),
                (
                    "P2P_LIMITS__MAX_PENDING_INBOUND_PER_IP".into(),
                    "100000".into(),
                ),
                ("P2P_LIMITS__INBOUND_RATE_PER_IP".into(), "100000".into()),
                ("P2P_LIMITS__INBOUND_BURST_PER_IP".into(), "100000".into()),
            ],
            ..tcp(vec![])
        },
    );
    let v_addr = v.multiaddr(Transport::Tcp);
    let mut flood = Reaper(
        std::process::Command::new(env!("CARGO_BIN_EXE_conn_flood"))
            .args([v_addr.as_str(), "100", "2000"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the flood"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let out = flood.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        let _ = tx.send(line);
    });
    let ceiling_kib = 256 * 1024;
    let mut max_inbound = 0;
    let mut summary = None;
    let done = wait_until(Duration::from_secs(60), || {
        let status = v.ctl_within("1s", &["--json", "status"]);
        assert!(
            status.status.success(),
            "status did not answer within 1 s during the flood: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let s: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
        let inbound = s["connections_inbound"].as_u64().expect("inbound");
        assert!(
            inbound <= 64,
            "{inbound} inbound connections with max_inbound 64"
        );
        max_inbound = max_inbound.max(inbound);
        let rss = v.rss_kib();
        assert!(rss < ceiling_kib, "RSS {rss} KiB over the 256 MiB ceiling");
        summary = rx.try_recv().ok();
        summary.is_some()
    });
    assert!(done, "the flood did not finish");
    let summary: serde_json::Value =
        serde_json::from_str(summary.as_deref().unwrap_or("{}")).expect("summary");
    assert_eq!(summary["attempts"], 2000, "{summary}");
    assert_eq!(max_inbound, 64, "the flood never filled the inbound slots");

    // Every inbound slot is held by the flood; the trusted peer gets in anyway.
    let out = trusted.ctl(&["connect", &v_addr]);
    assert!(
        out.status.success(),
        "trusted peer refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(Duration::from_secs(5), || v
        .peers()
        .contains(&t_id)));
}

/// A trusted peer given with its address is dialled on its own and redialled after it drops.
#[test]
fn trusted_peer_is_kept_connected() {
    let t = Node::start("t", tcp(vec![]));
    let (t_id, t_addr) = (t.peer_id(), t.multiaddr(Transport::Tcp));
    let v = Node::start(
        "v",
        NodeOpts {
            env: vec![("P2P_TRUST__PEERS".into(), t_addr)],
            ..tcp(vec![])
        },
    );
    assert!(
        wait_until(Duration::from_secs(10), || v.peers().contains(&t_id)),
        "the trusted peer was never dialled"
    );
    let list = v.ctl_json(&["trust", "ls"]);
    assert_eq!(list["peers"][0]["source"], "config", "{list}");
    assert!(v.ctl(&["disconnect", &t_id]).status.success());
    assert!(
        wait_until(Duration::from_secs(10), || v.peers().contains(&t_id)),
        "the trusted peer was not redialled"
    );

    // Runtime trust is persisted with the bans and can be removed again.
    let other = Node::start("o", tcp(vec![]));
    let o_id = other.peer_id();
    assert!(v.ctl(&["trust", "add", &o_id]).status.success());
    let saved =
        || std::fs::read_to_string(v.data_dir().join("bans.json")).is_ok_and(|s| s.contains(&o_id));
    assert!(
        wait_until(Duration::from_secs(5), saved),
        "runtime trust not persisted"
    );
    let refused = v.ctl(&["trust", "rm", &t_id]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a configured trusted peer was removed at runtime"
    );
    assert!(v.ctl(&["trust", "rm", &o_id]).status.success());
}

/// CIDRs in network.dial_deny_cidrs are never dialled, and their addresses never enter the DHT.
#[test]
fn dial_filter_keeps_the_node_out_of_denied_ranges() {
    let a = Node::start(
        "a",
        NodeOpts {
            env: vec![("P2P_NETWORK__DIAL_DENY_CIDRS".into(), "127.0.0.4/32".into())],
            ..tcp(vec![])
        },
    );
    let denied = Node::start("denied", on("127.0.0.4", vec![]));
    let allowed = Node::start("allowed", on("127.0.0.5", vec![]));
    let out = a.ctl(&["connect", &denied.multiaddr(Transport::Tcp)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dial_deny_cidrs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(a
        .ctl(&["connect", &allowed.multiaddr(Transport::Tcp)])
        .status
        .success());
}

/// A TCP connection from `src` (a loopback address) to `dst` that sends `first` and then
/// nothing: the start of a handshake that never finishes.
fn stalled_socket(src: [u8; 4], dst: std::net::SocketAddr, first: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = connect_from(src, dst);
    let _ = s.write_all(first);
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// True once the daemon has closed `s` (end of stream or reset).
fn closed_by_peer(s: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Hundreds of raw sockets from 127.0.0.9 that never finish a handshake (nothing sent, or half
/// a multistream header): a peer from a trusted address (127.0.0.1) and an untrusted one from
/// 127.0.0.3 both connect during the flood, the daemon answers throughout, and every flood
/// socket is closed: at once when over the per-address limits, by the handshake timeout
/// otherwise.
#[test]
fn raw_socket_flood_from_one_address_locks_nobody_out() {
    let v = Node::start(
        "victim",
        NodeOpts {
            env: vec![("P2P_TRUST__ADDRESSES".into(), "127.0.0.1".into())],
            ..tcp(vec![])
        },
    );
    let trusted = Node::start("trusted", tcp(vec![]));
    let other = Node::start("other", on("127.0.0.3", vec![]));
    let v_addr = v.multiaddr(Transport::Tcp);
    let target = socket_addr(&v_addr);
    let started = std::time::Instant::now();
    let mut flood: Vec<std::net::TcpStream> = (0..300)
        .map(|i| {
            let first: &[u8] = if i % 2 == 0 {
                b""
            } else {
                b"\x13/multistream/1."
            };
            stalled_socket([127, 0, 0, 9], target, first)
        })
        .collect();
    for (name, node) in [("trusted", &trusted), ("untrusted", &other)] {
        let out = node.ctl(&["connect", &v_addr]);
        assert!(
            out.status.success(),
            "the {name} peer could not connect during the flood: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all_closed = wait_until(Duration::from_secs(30), || {
        let status = v.ctl_within("2s", &["status"]);
        assert!(status.status.success(), "status failed during the flood");
        flood.iter_mut().all(closed_by_peer)
    });
    let open = flood.iter_mut().map(closed_by_peer).filter(|c| !c).count();
    assert!(
        all_closed,
        "{open} flood sockets still open after {:?}",
        started.elapsed()
    );
    let body = http_get(
        v.status()["metrics_addr"].as_str().expect("metrics"),
        "/metrics",
    )
    .body;
    let refused = body
        .lines()
        .find(|l| l.starts_with("p2p_inbound_refused_total{reason=\"pending_per_ip\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        refused >= 250.0,
        "refused for pending_per_ip: {refused}\n{body}"
    );
    assert!(v.log().contains("inbound connection refused"));
}

/// After `ban 127.0.0.2`, a peer there that was in the routing table gets nothing from this
/// node any more: not a TCP connection, not a QUIC packet, during DHT queries that would find
/// its address through another peer.
#[test]
fn an_ip_ban_stops_every_dial_to_the_address() {
    let a = bootstrap_node();
    let a_addr = a.multiaddr(Transport::Tcp);
    let mut x = Node::start(
        "x",
        NodeOpts {
            ip: Some("127.0.0.2".into()),
            ..Default::default()
        },
    );
    let b = Node::start("b", tcp(vec![a_addr]));
    // A and B dial X, so their connections to it are with 127.0.0.2 (connections X dials
    // come from 127.0.0.1, the kernel's choice on loopback).
    for n in [&a, &b] {
        let out = n.ctl(&["connect", &x.multiaddr(Transport::Tcp)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let x_id = x.peer_id();
    let x_tcp = socket_addr(&x.multiaddr(Transport::Tcp));
    let x_quic = x.multiaddr(Transport::Quic);
    let x_udp: std::net::SocketAddr = {
        let p: Vec<&str> = x_quic.split('/').collect();
        format!("{}:{}", p[2], p[4]).parse().expect("udp addr")
    };
    assert!(wait_until(Duration::from_secs(15), || {
        a.status()["routing_table_size"].as_u64() >= Some(2)
            && b.ctl_json(&["dht", "closest", &x_id])
                .to_string()
                .contains(&x_id)
    }));

    assert!(a
        .ctl(&["ban", "127.0.0.2", "--reason", "leak test"])
        .status
        .success());
    assert!(
        wait_until(Duration::from_secs(5), || a.status()["routing_table_size"]
            .as_u64()
            == Some(1)),
        "the banned peer is still in the routing table"
    );
    // X goes away; listeners on its addresses count whatever still arrives.
    assert!(x.stop().success());
    let tcp = std::net::TcpListener::bind(x_tcp).expect("bind X's TCP port");
    let udp = std::net::UdpSocket::bind(x_udp).expect("bind X's UDP port");
    tcp.set_nonblocking(true).expect("nonblocking");
    udp.set_nonblocking(true).expect("nonblocking");
    let mut hits = 0;
    let mut count = || {
        while tcp.accept().is_ok() {
            hits += 1;
        }
        let mut buf = [0u8; 2048];
        while udp.recv_from(&mut buf).is_ok() {
            hits += 1;
        }
        hits
    };
    // B still knows X and hands its address out; A must not use it.
    for _ in 0..3 {
        let _ = a.ctl(&["dht", "find-peer", &x_id]);
        let _ = a.ctl(&["dht", "closest", &x_id]);
        let _ = a.ctl(&["dht", "get", "some-key"]);
    }
    assert_eq!(count(), 0, "DHT queries reached the banned address");
    let connect = a.ctl(&[
        "connect",
        &format!("/ip4/127.0.0.2/tcp/{}/p2p/{x_id}", x_tcp.port()),
    ]);
    assert_eq!(connect.status.code(), Some(1));
    let err = String::from_utf8_lossy(&connect.stderr);
    assert!(err.contains("banned") && err.contains("leak test"), "{err}");
    assert_eq!(count(), 0, "the connect reached the banned address");
}
