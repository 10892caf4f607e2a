//! Peer policy on real nodes: bans, CIDR bans, runtime limits, rate limits and automatic bans.

use p2pd_e2e::{wait_until, Node, NodeOpts, Subscriber, Transport};
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

fn listed(node: &Node, what: &str) -> bool {
    node.ctl_json(&["bans"]).to_string().contains(what)
}

#[test]
fn ban_closes_refuses_and_survives_restart() {
    let mut a = Node::start(
        "a",
        NodeOpts {
            is_bootstrap: true,
            ..tcp(vec![])
        },
    );
    let a_addr = a.multiaddr(Transport::Tcp);
    let b = Node::start("b", tcp(vec![a_addr.clone()]));
    let b_id = b.peer_id();
    assert!(wait_until(Duration::from_secs(10), || a
        .peers()
        .contains(&b_id)));

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
    let bans = a.ctl_json(&["bans"]);
    assert_eq!(bans[0]["reason"], "misbehaving in test", "{bans}");
    assert_eq!(bans[0]["created_by"], "uid 0", "{bans}");

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
    let body = http_get(&metrics, "/metrics");
    assert!(
        body.contains("p2p_blacklist_total{action=\"ban\",kind=\"ip\"} 1"),
        "{body}"
    );
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// Opens a TCP connection from `src` to `dst` and starts multistream-select: an accepted
/// connection answers, a refused one is closed before any handshake byte is sent back.
fn multistream_answer(src: [u8; 4], dst: std::net::SocketAddr) -> usize {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    let local = std::net::SocketAddrV4::new(src.into(), 0);
    bind(fd.as_raw_fd(), &SockaddrIn::from(local)).expect("bind source address");
    let std::net::SocketAddr::V4(dst) = dst else {
        panic!("IPv4 expected")
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst)).expect("connect");
    let mut s = std::net::TcpStream::from(fd);
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

fn socket_addr(multiaddr: &str) -> std::net::SocketAddr {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    format!("{}:{}", parts[2], parts[4])
        .parse()
        .expect("ip4/tcp multiaddr")
}

#[test]
fn cidr_ban_refuses_one_loopback_address_and_not_another() {
    let a = Node::start(
        "a",
        NodeOpts {
            is_bootstrap: true,
            ..tcp(vec![])
        },
    );
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
    let a = Node::start(
        "a",
        NodeOpts {
            is_bootstrap: true,
            ..tcp(vec![])
        },
    );
    let a_addr = a.multiaddr(Transport::Tcp);
    let b = Node::start("b", tcp(vec![a_addr.clone()]));
    let c = Node::start("c", tcp(vec![a_addr.clone()]));
    let ids = [b.peer_id(), c.peer_id()];
    assert!(wait_until(Duration::from_secs(10), || ids
        .iter()
        .all(|i| a.peers().contains(i))));
    let limits = a.ctl_json(&["limits", "set", "max_inbound", "1"]);
    let inbound = limits
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

/// A peer flooding far above its bucket has most of it dropped and ends up banned; a
/// well-behaved peer on the same topic loses nothing.
#[test]
fn flooding_peer_is_rate_limited_and_banned_while_a_good_peer_is_not() {
    let v = Node::start(
        "victim",
        NodeOpts {
            env: vec![
                ("P2P_RATE_LIMIT__CAPACITY".into(), "10".into()),
                ("P2P_RATE_LIMIT__REFILL_PER_SEC".into(), "5".into()),
            ],
            is_bootstrap: true,
            ..tcp(vec![])
        },
    );
    let topic = "limited";
    let sub = Subscriber::start(&v, topic);
    let good = Node::start("good", tcp(vec![v.multiaddr(Transport::Tcp)]));
    let v_id = v.peer_id();
    assert!(wait_until(Duration::from_secs(10), || good
        .ctl_json(&["pubsub", "peers", topic])
        .to_string()
        .contains(&v_id)));

    let mut flood = std::process::Command::new(env!("CARGO_BIN_EXE_hostile_gossip"))
        .args([v.multiaddr(Transport::Tcp).as_str(), topic, "flood", "300"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the flooder");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flood.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("flooder id");
    let flooder = line.trim().to_string();
    let banned = wait_until(Duration::from_secs(15), || listed(&v, &flooder));
    let _ = flood.kill();
    let _ = flood.wait();
    assert!(
        banned,
        "the flooder was not banned: {}",
        v.ctl_json(&["bans"])
    );
    assert!(v.ctl_json(&["bans"]).to_string().contains("automatic"));
    let flooded = sub
        .lines
        .lock()
        .expect("lock")
        .iter()
        .filter(|m| m["data"].as_str().is_some_and(|d| d.starts_with("flood-")))
        .count();
    assert!(
        flooded <= 30,
        "{flooded} of 300 flood messages were delivered"
    );

    for i in 0..5 {
        let msg = format!("good-{i}");
        assert!(good.ctl(&["pubsub", "pub", topic, &msg]).status.success());
        assert!(
            wait_until(Duration::from_secs(10), || sub.count(&msg) == 1),
            "{msg} was lost"
        );
    }
}
