//! Metrics and health endpoints on a running network.

use p2pd_e2e::{bin, clean_command, http_get, tcp_network, wait_until, Node, NodeOpts, Transport};
use std::time::Duration;

/// Every metric name of the operator contract.
const SPEC_METRICS: [&str; 11] = [
    "libp2p_connections_opened_total",
    "libp2p_connections_active",
    "libp2p_dht_query_duration_seconds",
    "libp2p_gossipsub_messages_received_total",
    "libp2p_gossipsub_peers",
    "libp2p_relay_connections_active",
    "process_resident_memory_bytes",
    "p2p_message_processing_seconds",
    "p2p_peer_dial_failures_total",
    "p2p_blacklist_total",
    "p2p_messages_total",
];

fn metrics(node: &Node) -> String {
    let addr = node.status()["metrics_addr"]
        .as_str()
        .expect("metrics_addr")
        .to_string();
    http_get(&addr, "/metrics").body
}

fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_spec_metric_is_exported_and_connections_agree_with_peers() {
    let nodes = tcp_network(3);
    for n in &nodes {
        let body = metrics(n);
        for name in SPEC_METRICS {
            assert!(
                body.lines().any(|l| l.starts_with(name)),
                "{} lacks {name}",
                n.name
            );
        }
        let peers = n.ctl_json(&["peers"]);
        let conns: usize = peers["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["connections"].as_array().map_or(0, |c| c.len()))
            .sum();
        let ok = wait_until(Duration::from_secs(5), || {
            sample(&metrics(n), "libp2p_connections_active") == Some(conns as f64)
        });
        assert!(
            ok,
            "{}: libp2p_connections_active {:?} vs {conns} connections in p2pctl peers",
            n.name,
            sample(&metrics(n), "libp2p_connections_active")
        );
        assert!(sample(&body, "process_resident_memory_bytes").is_some_and(|v| v > 1e6));
    }
    promtool_accepts(&metrics(&nodes[0]));
}

/// `promtool check metrics` (Debian's prometheus package; scripts/test.sh installs it).
fn promtool_accepts(response: &str) {
    use std::io::Write;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or(response);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (apt-get install prometheus; scripts/test.sh does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readiness_waits_for_the_routing_table_when_bootstrap_peers_are_configured() {
    // A bootstrap peer that is not there yet: not ready.
    let a = Node::start(
        "a",
        NodeOpts {
            transport: Transport::Tcp,
            is_bootstrap: true,
            ..Default::default()
        },
    );
    let a_addr = a.multiaddr(Transport::Tcp);
    let port = a_addr.split('/').nth(4).expect("port").to_string();
    let a_id = a.peer_id();
    let mut a = a;
    assert!(a.stop().success());
    let b = Node::start(
        "b",
        NodeOpts {
            transport: Transport::Tcp,
            bootstrap: vec![a_addr.clone()],
            ..Default::default()
        },
    );
    let m = b.status()["metrics_addr"]
        .as_str()
        .expect("metrics")
        .to_string();
    let ready = |n: &Node| {
        clean_command(&bin("p2pd"), &n.dir)
            .args(["health", "--url", &format!("http://{m}/health/ready")])
            .output()
            .expect("p2pd health")
            .status
            .code()
    };
    assert!(
        http_get(&m, "/health/ready").status == 503,
        "ready without any peer"
    );
    assert_eq!(ready(&b), Some(1));
    assert_eq!(http_get(&m, "/health/live").status, 200);

    // The bootstrap node comes back on the same address: ready.
    a.spawn(&NodeOpts {
        transport: Transport::Tcp,
        is_bootstrap: true,
        args: vec!["--listen".into(), format!("/ip4/127.0.0.1/tcp/{port}")],
        ..Default::default()
    });
    assert_eq!(a.peer_id(), a_id);
    assert!(b.ctl(&["connect", &a_addr]).status.success());
    assert!(
        wait_until(Duration::from_secs(10), || http_get(&m, "/health/ready")
            .ok()),
        "never ready"
    );
    assert_eq!(ready(&b), Some(0));
}

#[test]
fn diag_passes_on_a_healthy_node_and_fails_at_the_connection_limit() {
    let nodes = tcp_network(3);
    let healthy = nodes[2].ctl(&["diag"]);
    let report = String::from_utf8_lossy(&healthy.stdout);
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{report}{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert!(
        !report.contains("[FAIL]") && report.contains("[PASS] connections"),
        "{report}"
    );
    let json = nodes[2].ctl_json(&["diag"]);
    assert!(json.as_array().is_some_and(|a| a.len() >= 9), "{json}");

    let full = Node::start(
        "full",
        NodeOpts {
            transport: Transport::Tcp,
            is_bootstrap: true,
            env: vec![("P2P_LIMITS__MAX_INBOUND".into(), "2".into())],
            ..Default::default()
        },
    );
    let addr = full.multiaddr(Transport::Tcp);
    for n in &nodes[..2] {
        assert!(n.ctl(&["connect", &addr]).status.success());
    }
    let out = full.ctl(&["diag"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("[FAIL] connections"), "{report}");
    assert!(
        report.contains("fix:   raise limits.max_connections"),
        "{report}"
    );
}

/// Metric names a PromQL-bearing file refers to (libp2p_*, p2p_*, process_*).
fn referenced_metrics(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| {
            ["libp2p_", "p2p_", "process_"]
                .iter()
                .any(|p| t.starts_with(p))
        })
        .map(String::from)
        .collect()
}

/// The shipped dashboard and alert rules only use metrics a running network exports.
#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let nodes = tcp_network(2);
    let body = metrics(&nodes[0]);
    let mut exported = std::collections::BTreeSet::new();
    for l in body.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = l.split(' ');
        let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        exported.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard =
        std::fs::read_to_string(root.join("packaging/grafana/p2pd.json")).expect("dashboard");
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 7));
    let alerts =
        std::fs::read_to_string(root.join("packaging/prometheus/p2pd-alerts.yml")).expect("alerts");
    for (file, text) in [("dashboard", &dashboard), ("alert rules", &alerts)] {
        let missing: Vec<String> = referenced_metrics(text)
            .into_iter()
            .filter(|m| !exported.contains(m))
            .collect();
        assert!(
            missing.is_empty(),
            "the {file} uses metrics p2pd does not export: {missing:?}"
        );
    }
}
