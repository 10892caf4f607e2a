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
