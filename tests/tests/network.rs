//! Discovery and persistence across real nodes on 127.0.0.1.

use p2pd_e2e::{wait_until, Node, NodeOpts, Transport};
use std::collections::BTreeSet;
use std::time::Duration;

fn three_nodes(transport: Transport) -> [Node; 3] {
    let a = Node::start(
        "a",
        NodeOpts {
            transport,
            is_bootstrap: true,
            ..Default::default()
        },
    );
    let boot = a.multiaddr(transport);
    let joiner = |name| {
        Node::start(
            name,
            NodeOpts {
                transport,
                bootstrap: vec![boot.clone()],
                ..Default::default()
            },
        )
    };
    let b = joiner("b");
    let c = joiner("c");
    [a, b, c]
}

fn assert_full_mesh(nodes: &[Node; 3]) {
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id()).collect();
    for (i, n) in nodes.iter().enumerate() {
        let others: BTreeSet<String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.clone())
            .collect();
        let ok = wait_until(Duration::from_secs(10), || others.is_subset(&n.peers()));
        assert!(
            ok,
            "{} lists {:?}, expected {:?}",
            n.name,
            n.peers(),
            others
        );
    }
}

/// B and C bootstrap only from A; C must learn of B through the DHT.
#[test]
fn three_nodes_find_each_other_over_tcp() {
    let nodes = three_nodes(Transport::Tcp);
    assert_full_mesh(&nodes);
    let peers = nodes[2].ctl_json(&["peers"]);
    assert!(peers.to_string().contains("/tcp/"), "{peers}");
}

#[test]
fn three_nodes_find_each_other_over_quic() {
    let nodes = three_nodes(Transport::Quic);
    assert_full_mesh(&nodes);
    let peers = nodes[2].ctl_json(&["peers"]);
    assert!(peers.to_string().contains("/quic-v1"), "{peers}");
    assert!(!peers.to_string().contains("/tcp/"), "{peers}");
}

/// A restarted node keeps its PeerId and reconnects to the peers in its saved routing table,
/// with no bootstrap peers configured.
#[test]
fn restarted_node_keeps_identity_and_reconnects() {
    let mut nodes = three_nodes(Transport::Both);
    assert_full_mesh(&nodes);
    let id = nodes[1].peer_id();
    let table = nodes[1].data_dir().join("routing_table.json");
    let status = nodes[1].stop();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    let saved = std::fs::read_to_string(&table).expect("routing table saved at shutdown");
    for other in [&nodes[0], &nodes[2]] {
        assert!(
            saved.contains(&other.peer_id()),
            "saved table lacks {}: {saved}",
            other.name
        );
    }

    nodes[1].spawn(&NodeOpts::default());
    assert_eq!(nodes[1].peer_id(), id, "PeerId changed across restart");
    let want: BTreeSet<String> = [nodes[0].peer_id(), nodes[2].peer_id()].into();
    let ok = wait_until(Duration::from_secs(10), || {
        want.is_subset(&nodes[1].peers())
    });
    assert!(
        ok,
        "restarted node lists {:?}, expected {want:?}",
        nodes[1].peers()
    );
}

/// rustls writes session secrets to the file `SSLKEYLOGFILE` names (libp2p's TLS configuration
/// asks it to): a p2pd started with it set, by mistake or by an attacker who controls the
/// environment, still writes no secret of its TCP or QUIC sessions anywhere.
#[test]
fn no_tls_secret_is_written_whatever_the_environment_says() {
    let keys = tempfile::tempdir().expect("tempdir");
    let keylog = keys.path().join("keys.log");
    let opts = |transport| NodeOpts {
        transport,
        env: vec![("SSLKEYLOGFILE".into(), keylog.display().to_string())],
        ..Default::default()
    };
    for transport in [Transport::Tcp, Transport::Quic] {
        let a = Node::start("keylog-a", opts(transport));
        let b = Node::start("keylog-b", opts(transport));
        assert!(b
            .ctl(&["connect", &a.multiaddr(transport)])
            .status
            .success());
        let ok = wait_until(Duration::from_secs(10), || {
            a.peers().contains(&b.peer_id()) && b.peers().contains(&a.peer_id())
        });
        assert!(ok, "{transport:?}: no connection\n{}\n{}", a.log(), b.log());
        assert!(
            !keylog.exists(),
            "{transport:?}: TLS secrets were written to {}",
            keylog.display()
        );
    }
}

/// A dial from the listen port to a peer that is connected to us from its own listen port is
/// the same address pair as that connection: the dial goes from a new port instead (libp2p-tcp
/// does so on EADDRNOTAVAIL, the node on EADDRINUSE) and succeeds.
#[test]
fn a_dial_that_collides_with_an_existing_connection_goes_from_a_new_port() {
    let a = Node::start("a", NodeOpts::default());
    let b = Node::start("b", NodeOpts::default());
    let b_id = b.peer_id();
    // B dials A: the connection runs between the two listen ports.
    assert!(b
        .ctl(&["connect", &a.multiaddr(Transport::Tcp)])
        .status
        .success());
    // A dials B's address without its peer id (so it is not "already connected"): from A's
    // listen port that is the same address pair.
    let b_addr = b.multiaddr(Transport::Tcp);
    let bare = b_addr.split("/p2p/").next().expect("address");
    let out = a.ctl(&["--json", "connect", bare]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["peer_id"], b_id.as_str(), "{v}");
}

/// `ss`'s view of a process's UDP sockets: (local address, receive buffer, send buffer), in
/// the bytes the kernel accounts (twice the data it keeps).
fn udp_sockets_of(pid: u32) -> Vec<(String, u64, u64)> {
    let out = std::process::Command::new("ss")
        .args(["-H", "-u", "-a", "-n", "-m", "-p"])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("pid={pid},");
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mem = lines.next().unwrap_or_default();
        if !line.contains(&owner) {
            continue;
        }
        let field = |name: &str| -> u64 {
            mem.split(['(', ',', ')'])
                .find_map(|f| f.strip_prefix(name).and_then(|v| v.parse().ok()))
                .unwrap_or_else(|| panic!("no {name} in {mem:?}"))
        };
        let local = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_string();
        found.push((local, field("rb"), field("tb")));
    }
    found
}

fn sysctl(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
        .expect("net.core sysctl")
        .trim()
        .parse()
        .expect("a number")
}

/// QUIC's sockets get the buffers p2pd asks for, up to the kernel's maximum: the listener's,
/// and the socket a node without a QUIC listener opens to dial over QUIC. `p2pctl status`
/// reports what the kernel granted (`ss` agrees) and `p2pctl diag` warns when it is short.
#[test]
fn quic_sockets_get_the_buffers_they_ask_for() {
    let a = Node::start(
        "a",
        NodeOpts {
            transport: Transport::Quic,
            is_bootstrap: true,
            ..Default::default()
        },
    );
    let b = Node::start(
        "b",
        NodeOpts {
            transport: Transport::Tcp,
            ..Default::default()
        },
    );
    let wanted = a.status()["udp_buffer_wanted"]
        .as_u64()
        .expect("udp_buffer_wanted");
    assert_eq!(wanted, 4 << 20);
    let (recv, send) = (
        wanted.min(sysctl("rmem_max")),
        wanted.min(sysctl("wmem_max")),
    );
    assert_eq!(
        b.status()["udp_receive_buffer"].as_u64(),
        Some(0),
        "b has no UDP socket yet"
    );
    let out = b.ctl(&["connect", &a.multiaddr(Transport::Quic)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in [&a, &b] {
        let s = n.status();
        assert_eq!(
            s["udp_receive_buffer"].as_u64(),
            Some(recv),
            "{}: {s}",
            n.name
        );
        assert_eq!(s["udp_send_buffer"].as_u64(), Some(send), "{}: {s}", n.name);
        let sockets = udp_sockets_of(n.pid());
        assert!(!sockets.is_empty(), "{}: ss shows no UDP socket", n.name);
        for (local, rb, tb) in sockets {
            assert_eq!((rb, tb), (2 * recv, 2 * send), "{}: {local}", n.name);
        }
        let diag = n.ctl(&["diag"]);
        let report = String::from_utf8_lossy(&diag.stdout);
        let line = if recv < wanted || send < wanted {
            "[WARN] QUIC buffers"
        } else {
            "[PASS] QUIC buffers"
        };
        assert!(report.contains(line), "{}: {report}", n.name);
    }
}
