//! NAT traversal, end to end, in a lab of network namespaces (tests/src/lab.rs): a public relay
//! on the lab's internet segment and nodes behind cone and symmetric NAT routers. Needs root,
//! iproute2 and nftables (scripts/test.sh installs them).
//!
//! Every node listens on port 4001 (TCP and QUIC) in its own namespace, AutoNAT is told the
//! lab's documentation-range "internet" counts (network.autonat_private_addrs), and the relay
//! announces its address (network.external), which is what makes it offer relaying.

use p2pd_e2e::lab::{Host, Lab, NatKind};
use p2pd_e2e::{wait_until, Node, NodeOpts};
use serde_json::Value;
use std::time::{Duration, Instant};

const LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"];

/// Long enough for AutoNAT's first probe (5 s after start) and a retry.
const NAT_DEADLINE: Duration = Duration::from_secs(60);

fn node(name: &str, host: &Host, bootstrap: Option<&Node>, env: &[(&str, String)]) -> Node {
    let bootstrap = bootstrap
        .map(|b| vec![tcp_addr(b, &public_ip_of(b))])
        .unwrap_or_default();
    node_on(name, host, &LISTEN, bootstrap, env)
}

/// A lab node listening on `listen` and bootstrapping from `bootstrap`.
fn node_on(
    name: &str,
    host: &Host,
    listen: &[&str],
    bootstrap: Vec<String>,
    env: &[(&str, String)],
) -> Node {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    env.push(("P2P_NETWORK__AUTONAT_PRIVATE_ADDRS".into(), "true".into()));
    Node::start(
        name,
        NodeOpts {
            netns: Some(host.ns.clone()),
            listen: listen.iter().map(|s| s.to_string()).collect(),
            bootstrap,
            env,
            ..Default::default()
        },
    )
}

/// The relay: public, announcing its address.
fn relay(host: &Host) -> Node {
    let external = format!("/ip4/{}/tcp/4001", host.ip);
    node("relay", host, None, &[("P2P_EXTERNAL_ADDRS", external)])
}

fn public_ip_of(n: &Node) -> String {
    // The relay's external address names its public IP.
    let s = n.status();
    let ext = s["external_addrs"].as_array().cloned().unwrap_or_default();
    ext.iter()
        .filter_map(|a| a.as_str())
        .find_map(|a| {
            a.strip_prefix("/ip4/")
                .and_then(|r| r.split('/').next())
                .map(String::from)
        })
        .unwrap_or_else(|| panic!("{} has no external address: {s}", n.name))
}

fn tcp_addr(n: &Node, ip: &str) -> String {
    format!("/ip4/{ip}/tcp/4001/p2p/{}", n.peer_id())
}

fn quic_addr(n: &Node, ip: &str) -> String {
    format!("/ip4/{ip}/udp/4001/quic-v1/p2p/{}", n.peer_id())
}

/// What the nodes behind the NATs listen on and reach the relay over.
#[derive(Clone, Copy)]
enum Over {
    TcpAndQuic,
    QuicOnly,
}

fn nat_status(n: &Node) -> Value {
    n.status()
}

fn wait_for_nat(n: &Node, want: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(NAT_DEADLINE, || {
        last = nat_status(n);
        last["nat_status"] == want
    });
    assert!(
        ok,
        "{}: NAT status never became {want}: {last}\n{}",
        n.name,
        n.log()
    );
    last
}

/// The first of the node's addresses AutoNAT v2 found `reachable` (or not), once there is one.
fn wait_for_address_test(n: &Node, reachable: bool) -> Value {
    let mut last = Value::Null;
    let mut found = Value::Null;
    let ok = wait_until(NAT_DEADLINE, || {
        last = n.status();
        found = last["address_tests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["reachable"].as_bool().unwrap_or(false) == reachable)
            .cloned()
            .unwrap_or(Value::Null);
        !found.is_null()
    });
    assert!(
        ok,
        "{}: AutoNAT v2 found no address with reachable={reachable}: {last}\n{}",
        n.name,
        n.log()
    );
    found
}

/// The node's first relay reservation address, once it has one.
fn wait_for_reservation(n: &Node) -> String {
    let mut last = Value::Null;
    let ok = wait_until(NAT_DEADLINE, || {
        last = n.status();
        last["relay_addrs"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    assert!(
        ok,
        "{} got no relay reservation: {last}\n{}",
        n.name,
        n.log()
    );
    last["relay_addrs"][0]
        .as_str()
        .expect("an address")
        .to_string()
}

/// The addresses of `peer`'s connections as `n` sees them.
fn connections_to(n: &Node, peer: &str) -> Vec<String> {
    let v = n.ctl_json(&["peers"]);
    v["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["peer_id"] == peer)
        .flat_map(|p| p["connections"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["address"].as_str().map(String::from))
        .collect()
}

fn metric(n: &Node, series: &str) -> f64 {
    let text = n.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in {}'s metrics", n.name))
}

#[test]
fn nodes_learn_whether_they_are_behind_a_nat() {
    let mut lab = Lab::new();
    let (r, p, a) = (
        lab.public("relay"),
        lab.public("pub"),
        lab.behind_nat("a", NatKind::Cone),
    );
    let relay = relay(&r);
    let public = node("public", &p, Some(&relay), &[]);
    let private = node("private", &a, Some(&relay), &[]);

    let s = wait_for_nat(&private, "private");
    assert!(
        s["nat_source"]
            .as_str()
            .unwrap_or_default()
            .contains("could not dial this node back"),
        "{s}"
    );
    let s = wait_for_nat(&public, "public");
    let source = s["nat_source"].as_str().unwrap_or_default();
    assert!(source.contains(&format!("{}", p.ip)), "{s}");
    assert!(metric(&private, "p2p_autonat_probes_total{result=\"private\"}") >= 1.0);
    assert!(metric(&public, "p2p_autonat_probes_total{result=\"public\"}") >= 1.0);

    // AutoNAT v2 beside v1: the public node's own address is dialled back; the address the
    // NAT gave the private node is not.
    let t = wait_for_address_test(&public, true);
    let addr = t["address"].as_str().unwrap_or_default();
    assert!(addr.starts_with(&format!("/ip4/{}/", p.ip)), "{t}");
    let t = wait_for_address_test(&private, false);
    assert!(!t["error"].as_str().unwrap_or_default().is_empty(), "{t}");
    assert_eq!(private.status()["nat_status"], "private");
    let s = private.status();
    assert!(
        s["nat_source"]
            .as_str()
            .unwrap_or_default()
            .starts_with("AutoNAT v2: peers could not dial"),
        "{s}"
    );
    assert!(metric(&public, "p2p_autonat_v2_tests_total{result=\"reachable\"}") >= 1.0);
    assert!(
        metric(
            &private,
            "p2p_autonat_v2_tests_total{result=\"unreachable\"}"
        ) >= 1.0
    );
    let dial_backs = |n: &Node| {
        metric(n, "p2p_autonat_v2_dial_backs_total{result=\"ok\"}")
            + metric(n, "p2p_autonat_v2_dial_backs_total{result=\"failed\"}")
    };
    assert!(
        dial_backs(&relay) + dial_backs(&public) + dial_backs(&private) >= 2.0,
        "the nodes answered each other's AutoNAT v2 tests"
    );
    // The relay offers relaying because it announces an address; the others do not.
    assert_eq!(relay.status()["relay_serving"], true);
    assert_eq!(private.status()["relay_serving"], false);
}

#[test]
fn a_private_node_reserves_a_slot_on_a_relay_and_is_reachable_through_it() {
    let mut lab = Lab::new();
    let (r, p, a) = (
        lab.public("relay"),
        lab.public("pub"),
        lab.behind_nat("a", NatKind::Cone),
    );
    let relay = relay(&r);
    // No relay configured: the node finds that its bootstrap peer relays.
    let private = node("private", &a, Some(&relay), &[]);
    let circuit = wait_for_reservation(&private);
    let id = private.peer_id();
    // Over TCP or QUIC, whichever connection to the relay it had.
    assert!(circuit.starts_with(&format!("/ip4/{}/", r.ip)), "{circuit}");
    assert!(
        circuit.ends_with(&format!("/4001/p2p/{}/p2p-circuit", relay.peer_id()))
            || circuit.ends_with(&format!(
                "/4001/quic-v1/p2p/{}/p2p-circuit",
                relay.peer_id()
            )),
        "{circuit}"
    );
    // It announces the relayed address.
    let ext = private.status()["external_addrs"].to_string();
    assert!(ext.contains("/p2p-circuit"), "{ext}");
    assert_eq!(metric(&private, "p2p_relay_reservations"), 1.0);

    // A node that knows nothing but that address reaches it.
    let other = node("other", &p, None, &[]);
    let target = format!("{circuit}/p2p/{id}");
    let out = other.ctl_within("30s", &["connect", &target]);
    assert!(
        out.status.success(),
        "connect through the relay failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        private.log()
    );
    assert!(wait_until(Duration::from_secs(10), || {
        metric(
            &private,
            "p2p_relay_client_circuits_total{direction=\"in\"}",
        ) >= 1.0
    }));
}

/// A relay, node a behind a cone NAT and node b behind a `b_nat`, both with a reservation on
/// the relay (configured), and a connected to b through it. Fields drop in order: the nodes
/// before the lab.
struct Relayed {
    a: Node,
    b: Node,
    _relay: Node,
    b_id: String,
    /// When a asked for the connection.
    started: Instant,
    _lab: Lab,
}

fn relayed_pair(b_nat: NatKind, over: Over) -> Relayed {
    let mut lab = Lab::new();
    let (r, a, b) = (
        lab.public("relay"),
        lab.behind_nat("a", NatKind::Cone),
        lab.behind_nat("b", b_nat),
    );
    let relay = relay(&r);
    let (listen, to_relay): (&[&str], _) = match over {
        Over::TcpAndQuic => (&LISTEN, tcp_addr(&relay, &r.ip.to_string())),
        Over::QuicOnly => (&LISTEN[1..], quic_addr(&relay, &r.ip.to_string())),
    };
    let relays = [("P2P_NETWORK__RELAYS", to_relay.clone())];
    let na = node_on("a", &a, listen, vec![to_relay.clone()], &relays);
    let nb = node_on("b", &b, listen, vec![to_relay], &relays);
    wait_for_reservation(&na);
    let circuit_b = wait_for_reservation(&nb);
    let b_id = nb.peer_id();
    let started = Instant::now();
    let out = na.ctl_within("30s", &["connect", &format!("{circuit_b}/p2p/{b_id}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Relayed {
        a: na,
        b: nb,
        _relay: relay,
        b_id,
        started,
        _lab: lab,
    }
}

/// Two nodes behind cone NATs, relayed to each other, punch a hole: the direct connections
/// from a to b once one is there.
fn punched_through_cone_nats(over: Over) -> Vec<String> {
    // Every field bound: what a `..` leaves out is dropped at once (the relay, the lab).
    let Relayed {
        a: na,
        b: nb,
        b_id,
        started,
        _relay: _r,
        _lab: _l,
    } = relayed_pair(NatKind::Cone, over);
    let mut conns = Vec::new();
    let direct = wait_until(Duration::from_secs(60), || {
        conns = connections_to(&na, &b_id);
        conns.iter().any(|c| !c.contains("/p2p-circuit"))
    });
    assert!(
        direct,
        "no direct connection from a to b: {conns:?}\n{}\n{}",
        na.log(),
        nb.log()
    );
    let took = started.elapsed();
    eprintln!("relayed connection upgraded to direct in {took:?}: {conns:?}");
    let punched = |n: &Node| n.status()["hole_punch_succeeded"].as_u64().unwrap_or(0);
    assert!(wait_until(Duration::from_secs(10), || punched(&na)
        + punched(&nb)
        >= 1));
    let successes = metric(&na, "p2p_hole_punch_total{result=\"success\"}")
        + metric(&nb, "p2p_hole_punch_total{result=\"success\"}");
    assert!(successes >= 1.0);
    conns.retain(|c| !c.contains("/p2p-circuit"));
    conns
}

#[test]
fn two_nodes_behind_cone_nats_upgrade_a_relayed_connection_to_a_direct_one() {
    punched_through_cone_nats(Over::TcpAndQuic);
}

/// The same with QUIC alone (p2pd's own QUIC transport, quic.rs): the hole is punched with
/// the listeners' UDP sockets.
#[test]
fn over_quic_alone_two_nodes_behind_cone_nats_punch_a_direct_connection() {
    let direct = punched_through_cone_nats(Over::QuicOnly);
    assert!(
        direct
            .iter()
            .all(|c| c.contains("/udp/") && c.contains("/quic-v1")),
        "{direct:?}"
    );
}

#[test]
fn behind_a_symmetric_nat_the_connection_stays_relayed_and_diag_says_why() {
    let Relayed {
        a: na,
        b: ns,
        b_id: s_id,
        _relay: _r,
        _lab: _l,
        ..
    } = relayed_pair(NatKind::Symmetric, Over::TcpAndQuic);
    // Hole punching is tried and fails (on one side or both).
    let failed = |n: &Node| n.status()["hole_punch_failed"].as_u64().unwrap_or(0);
    let ok = wait_until(Duration::from_secs(90), || failed(&na) + failed(&ns) >= 1);
    assert!(
        ok,
        "no hole punch failure recorded\n{}\n{}",
        na.log(),
        ns.log()
    );
    let conns = connections_to(&na, &s_id);
    assert!(!conns.is_empty(), "the relayed connection is gone");
    assert!(
        conns.iter().all(|c| c.contains("/p2p-circuit")),
        "{conns:?}"
    );
    assert_eq!(
        metric(
            if failed(&na) > 0 { &na } else { &ns },
            "p2p_hole_punch_total{result=\"success\"}"
        ),
        0.0
    );

    let who = if failed(&ns) > 0 { &ns } else { &na };
    let out = who.ctl(&["diag"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let nat = text
        .lines()
        .skip_while(|l| !l.contains("NAT"))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(nat.contains("reachable through a relay"), "{text}");
    assert!(nat.contains("hole punching failed"), "{text}");
    assert!(nat.contains("a relay is being used"), "{text}");
    assert!(nat.contains("forward the listen port"), "{text}");
}
