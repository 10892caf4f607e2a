//! The peer policy never punishes an honest peer: a busy publisher, a mesh where messages arrive
//! twice, a foreign implementation that restarts its sequence numbers lower. And it still stops
//! a peer that floods far above its rate, while a good peer loses nothing.

use p2pd_e2e::{bin, wait_until, Node, NodeOpts, Reaper, Subscriber, Transport};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

fn tcp(bootstrap: Vec<String>) -> NodeOpts {
    NodeOpts {
        transport: Transport::Tcp,
        bootstrap,
        ..Default::default()
    }
}

fn bootstrap(name: &str, env: Vec<(String, String)>) -> Node {
    Node::start(
        name,
        NodeOpts {
            is_bootstrap: true,
            env,
            ..tcp(vec![])
        },
    )
}

fn bans(node: &Node) -> serde_json::Value {
    node.ctl_json(&["bans"])["bans"].clone()
}

/// Waits until `node` sees `peer` subscribed to `topic`.
fn sees_subscriber(node: &Node, topic: &str, peer: &str) {
    assert!(
        wait_until(Duration::from_secs(15), || node
            .ctl_json(&["pubsub", "peers", topic])
            .to_string()
            .contains(peer)),
        "{} never saw {peer} on {topic}",
        node.name
    );
}

/// Publishes `count` messages of `size` bytes back to back through one control connection.
fn publish_many(node: &Node, topic: &str, count: usize, size: usize) -> serde_json::Value {
    let out = Command::new(bin("publish_many"))
        .arg(&node.socket)
        .args([topic, &count.to_string(), &size.to_string()])
        .output()
        .expect("run publish_many");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("publish_many prints JSON")
}

/// Distinct payloads a subscriber received that start with `prefix`, and all it received.
fn received(sub: &Subscriber, prefix: &str) -> (BTreeSet<String>, usize) {
    let lines = sub.lines.lock().expect("lock");
    let mine: Vec<String> = lines
        .iter()
        .filter_map(p2pd_e2e::message_text)
        .filter(|d| d.starts_with(prefix))
        .collect();
    let n = mine.len();
    (mine.into_iter().collect(), n)
}

fn all_arrive(sub: &Subscriber, prefix: &str, n: usize, within: Duration) -> bool {
    wait_until(within, || received(sub, prefix).0.len() >= n)
}

/// 10,000 messages of 100 B published back to back with the default config all reach a
/// subscriber on a second node, exactly once, and nobody is banned.
#[test]
fn ten_thousand_messages_back_to_back_arrive_and_nobody_is_banned() {
    let a = bootstrap("a", vec![]);
    let b = Node::start("b", tcp(vec![a.multiaddr(Transport::Tcp)]));
    let topic = "busy";
    let sub = Subscriber::start(&b, topic);
    sees_subscriber(&a, topic, &b.peer_id());

    let r = publish_many(&a, topic, 10_000, 100);
    assert_eq!(r["published"], 10_000, "{r}");
    assert!(
        all_arrive(&sub, "msg-", 10_000, Duration::from_secs(120)),
        "{} of 10000 arrived",
        received(&sub, "msg-").0.len()
    );
    assert_eq!(
        received(&sub, "msg-").1,
        10_000,
        "duplicates were delivered"
    );
    assert_eq!(bans(&a), serde_json::json!([]));
    assert_eq!(bans(&b), serde_json::json!([]));
}

/// A line A–B–C plus a direct A–C connection: every message reaches C on two paths, and the
/// second copy is nobody's offence.
#[test]
fn a_mesh_with_two_paths_delivers_everything_once_and_bans_nobody() {
    let a = bootstrap("a", vec![]);
    let b = Node::start("b", tcp(vec![a.multiaddr(Transport::Tcp)]));
    let c = Node::start("c", tcp(vec![b.multiaddr(Transport::Tcp)]));
    let out = c.ctl(&["connect", &a.multiaddr(Transport::Tcp)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let topic = "line";
    let sub_b = Subscriber::start(&b, topic);
    let sub_c = Subscriber::start(&c, topic);
    sees_subscriber(&a, topic, &c.peer_id());
    sees_subscriber(&a, topic, &b.peer_id());
    sees_subscriber(&b, topic, &c.peer_id());

    let r = publish_many(&a, topic, 10_000, 100);
    assert_eq!(r["published"], 10_000, "{r}");
    for (name, sub) in [("b", &sub_b), ("c", &sub_c)] {
        assert!(
            all_arrive(sub, "msg-", 10_000, Duration::from_secs(120)),
            "{name} got {} of 10000",
            received(sub, "msg-").0.len()
        );
        assert_eq!(received(sub, "msg-").1, 10_000, "{name} got duplicates");
    }
    for n in [&a, &b, &c] {
        assert_eq!(bans(n), serde_json::json!([]), "{} banned someone", n.name);
    }
    assert!(c.peers().contains(&a.peer_id()) && c.peers().contains(&b.peer_id()));

    // Every peer's scores are visible, in `peers -v` and as a metric; honest ones are not negative.
    let peers = c.ctl_json(&["peers", "-v"]);
    for p in peers["peers"].as_array().expect("peers") {
        let gossip = p["gossip_score"].as_f64().expect("gossip_score");
        assert!(gossip >= 0.0, "{p}");
        assert_eq!(p["policy_score"].as_f64(), Some(0.0), "{p}");
    }
    let metrics_addr = c.status()["metrics_addr"]
        .as_str()
        .expect("metrics")
        .to_string();
    let a_id = a.peer_id();
    assert!(wait_until(Duration::from_secs(5), || {
        p2pd_e2e::http_get(&metrics_addr, "/metrics")
            .body
            .contains(&format!("p2p_peer_score{{peer_id=\"{a_id}\"}}"))
    }));
}

fn hostile(
    target: &str,
    topic: &str,
    key: &std::path::Path,
    args: &[String],
    twice: bool,
) -> Reaper {
    let mut cmd = Command::new(bin("hostile_gossip"));
    let prefix = key
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    cmd.args([target, topic])
        .args(args)
        .env("HOSTILE_KEY", key)
        .env("HOSTILE_PREFIX", prefix)
        .stdout(Stdio::null());
    if twice {
        cmd.env("HOSTILE_TWICE", "1");
    }
    Reaper(cmd.spawn().expect("start hostile_gossip"))
}

fn sends(first_seq: u64, prefix: &str, n: u64) -> Vec<String> {
    std::iter::once("send".to_string())
        .chain((0..n).map(|i| format!("{}={prefix}{i}", first_seq + i)))
        .collect()
}

/// A correctly signing publisher that sends every message twice, then restarts with its
/// sequence numbers lower (as py-libp2p's clock-based numbering does): no new message is lost
/// to a penalty and it is never banned. Sequence numbers it reuses are dropped as replays.
#[test]
fn a_foreign_publisher_that_repeats_and_restarts_lower_is_never_punished() {
    let v = bootstrap("victim", vec![]);
    let topic = "foreign";
    let sub = Subscriber::start(&v, topic);
    let target = v.multiaddr(Transport::Tcp);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("foreign.key");

    let first = hostile(&target, topic, &key, &sends(1_000, "run1-", 40), true);
    assert!(
        all_arrive(&sub, "run1-", 40, Duration::from_secs(15)),
        "first run: {} of 40",
        received(&sub, "run1-").0.len()
    );
    drop(first);
    // Restarted: 1020..1059, of which 1020..1039 were used by the first run.
    let _second = hostile(&target, topic, &key, &sends(1_020, "run2-", 40), true);
    let fresh: BTreeSet<String> = (20..40).map(|i| format!("run2-{i}")).collect();
    assert!(
        wait_until(Duration::from_secs(15), || received(&sub, "run2-")
            .0
            .is_superset(&fresh)),
        "second run: {:?}",
        received(&sub, "run2-").0
    );
    // A later honest message from the same author still gets through: no penalty stuck.
    drop(_second);
    let _third = hostile(&target, topic, &key, &sends(2_000, "run3-", 5), false);
    assert!(all_arrive(&sub, "run3-", 5, Duration::from_secs(15)));
    assert_eq!(received(&sub, "run1-").1, 40, "duplicates were delivered");
    assert_eq!(bans(&v), serde_json::json!([]));
}

/// A peer publishing 100x the configured rate for a sustained period is rate-limited and then
/// banned; a peer at 2x is only rate-limited; a good peer loses nothing.
#[test]
fn sustained_flood_is_banned_while_a_fast_peer_is_only_limited() {
    let v = bootstrap(
        "victim",
        vec![
            ("P2P_RATE_LIMIT__CAPACITY".into(), "200".into()),
            ("P2P_RATE_LIMIT__REFILL_PER_SEC".into(), "20".into()),
        ],
    );
    let topic = "limited";
    let sub = Subscriber::start(&v, topic);
    let good = Node::start("good", tcp(vec![v.multiaddr(Transport::Tcp)]));
    sees_subscriber(&good, topic, &v.peer_id());
    let target = v.multiaddr(Transport::Tcp);
    let dir = tempfile::tempdir().expect("tempdir");
    let args = |rate: u32| vec!["sustain".to_string(), rate.to_string(), "60".to_string()];
    let abuser_key = dir.path().join("abuser.key");
    let fast_key = dir.path().join("fast.key");
    let _abuser = hostile(&target, topic, &abuser_key, &args(2_000), false);
    let _fast = hostile(&target, topic, &fast_key, &args(40), false);

    let mut sent = 0;
    let banned = wait_until(Duration::from_secs(60), || {
        let msg = format!("good-{sent}");
        if good.ctl(&["pubsub", "pub", topic, &msg]).status.success() {
            sent += 1;
        }
        bans(&v).as_array().is_some_and(|b| !b.is_empty())
    });
    if !banned {
        let m = p2pd_e2e::http_get(
            v.status()["metrics_addr"].as_str().expect("metrics"),
            "/metrics",
        )
        .body;
        let lines: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("p2p_messages") || l.contains("gossipsub_messages_received"))
            .collect();
        panic!(
            "the 100x flooder was not banned within 60 s:\n{}",
            lines.join("\n")
        );
    }
    let list = bans(&v);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert!(
        list[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("automatic")),
        "{list}"
    );
    for i in 0..sent {
        let msg = format!("good-{i}");
        assert!(
            wait_until(Duration::from_secs(10), || sub.count(&msg) == 1),
            "{msg} was lost"
        );
    }
    // The 2x peer keeps going after the flooder is gone, and is still not banned.
    let (before, _) = received(&sub, "fast-");
    assert!(wait_until(Duration::from_secs(10), || received(
        &sub, "fast-"
    )
    .0
    .len()
        > before.len() + 20));
    assert_eq!(bans(&v).as_array().map(Vec::len), Some(1), "{}", bans(&v));
}
