//! Pub/sub and the DHT through the control socket, across three real nodes.

use p2pd_e2e::{
    bin, clean_command, http_get, tcp_network, wait_until, Node, NodeOpts, Reaper, Subscriber,
    Transport,
};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn network() -> [Node; 3] {
    match <[Node; 3]>::try_from(tcp_network(3)) {
        Ok(nodes) => nodes,
        Err(_) => unreachable!("tcp_network(3) returns three nodes"),
    }
}

#[test]
fn published_message_reaches_every_subscriber_exactly_once() {
    let [a, b, c] = network();
    let topic = "news";
    let subs = [Subscriber::start(&b, topic), Subscriber::start(&c, topic)];
    let (b_id, c_id) = (b.peer_id(), c.peer_id());
    assert!(
        wait_until(Duration::from_secs(10), || {
            let v = a.ctl_json(&["pubsub", "peers", topic]);
            v.to_string().contains(&b_id) && v.to_string().contains(&c_id)
        }),
        "A never saw B and C subscribe"
    );
    for n in [&b, &c] {
        assert!(wait_until(Duration::from_secs(5), || n
            .ctl_json(&["pubsub", "topics"])
            .to_string()
            .contains(topic)));
    }
    let a_id = a.peer_id();
    for i in 0..3 {
        let out = a.ctl(&["pubsub", "pub", topic, &format!("hello-{i}")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (s, n) in subs.iter().zip([&b, &c]) {
        let ok = wait_until(Duration::from_secs(10), || {
            (0..3).all(|i| s.count(&format!("hello-{i}")) >= 1)
        });
        assert!(ok, "{} got {:?}", n.name, s.lines.lock().expect("lock"));
    }
    // A last message; anything duplicated would have arrived by the time it does.
    assert!(a.ctl(&["pubsub", "pub", topic, "last"]).status.success());
    for s in &subs {
        assert!(wait_until(Duration::from_secs(10), || s.count("last") >= 1));
        for i in 0..3 {
            assert_eq!(
                s.count(&format!("hello-{i}")),
                1,
                "{:?}",
                s.lines.lock().expect("lock")
            );
        }
        let lines = s.lines.lock().expect("lock");
        let seqs: Vec<u64> = lines.iter().filter_map(|m| m["seq_no"].as_u64()).collect();
        assert!(
            lines.iter().all(|m| m["from"] == a_id.as_str()),
            "{lines:?}"
        );
        assert!(
            seqs.windows(2).all(|w| w[0] != w[1]),
            "sequence numbers repeat: {seqs:?}"
        );
    }
    // Subscribers gone: B unsubscribes.
    drop(subs);
    assert!(wait_until(Duration::from_secs(5), || !b
        .ctl_json(&["pubsub", "topics"])
        .to_string()
        .contains(topic)));
}

#[test]
fn publishing_without_subscribers_says_why() {
    let node = Node::start("lonely", NodeOpts::default());
    let out = node.ctl(&["pubsub", "pub", "nobody-here", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connected peer is subscribed"));
}

#[test]
fn dht_put_get_and_find_peer_across_nodes() {
    let [a, b, c] = network();
    let out = b.ctl(&["dht", "put", "greeting", "hello dht"]);
    assert!(
        out.status.success(),
        "put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = c.ctl_json(&["dht", "get", "greeting"]);
    // bytes are base64 in JSON: "hello dht".
    assert_eq!(got["value"], "aGVsbG8gZGh0", "{got}");
    // Text ends with the newline a shell prompt needs.
    let raw = c.ctl(&["dht", "get", "greeting"]);
    assert_eq!(raw.stdout, b"hello dht\n");

    let missing = c.ctl(&["dht", "get", "no-such-key"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no value"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // C drops its connection to B, then finds B through the DHT.
    let b_id = b.peer_id();
    assert!(c.ctl(&["disconnect", &b_id]).status.success());
    assert!(wait_until(Duration::from_secs(5), || !c
        .peers()
        .contains(&b_id)));
    let found = c.ctl_json(&["dht", "find-peer", &b_id]);
    let b_port = b
        .multiaddr(Transport::Tcp)
        .split('/')
        .nth(4)
        .expect("port")
        .to_string();
    assert!(
        found["addrs"]
            .to_string()
            .contains(&format!("/tcp/{b_port}")),
        "{found}"
    );

    // Content ids as other implementations announce them: provided as CIDv0, found as CIDv1
    // and as the hex multihash (all the same multihash key).
    let v0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";
    let out = a.ctl(&["dht", "provide", v0]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("providing {v0}\n")
    );
    let v1 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby";
    let mh = "122046d44814b9c5af141c3aaab7c05dc5e844ead5f91f12858b021eba45768b4c0e";
    for key in [v0, v1, mh] {
        let providers = c.ctl_json(&["dht", "providers", key]);
        assert!(
            providers.to_string().contains(&a.peer_id()),
            "{key}: {providers}"
        );
    }
    // A raw key, as before, with --raw; without it, a clear refusal.
    assert!(a
        .ctl(&["dht", "provide", "--raw", "some-content"])
        .status
        .success());
    let providers = c.ctl_json(&["dht", "providers", "--raw", "some-content"]);
    assert!(providers.to_string().contains(&a.peer_id()), "{providers}");
    let refused = c.ctl(&["dht", "providers", "some-content"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--raw"));
    let closest = c.ctl_json(&["dht", "closest", "some-content"]);
    assert!(
        closest["peer_ids"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{closest}"
    );
}

/// The client library's example: connects, subscribes, publishes, and sees its own message.
#[test]
fn client_library_example_runs_against_a_node() {
    let node = Node::start("lib", NodeOpts::default());
    let example = bin("examples/watch_topic");
    let mut child = clean_command(&example, &node.dir)
        .arg(&node.socket)
        .arg("lib-topic")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the example (cargo builds examples with the tests)");
    let stdout = child.stdout.take().expect("stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push(line);
        }
    });
    let id = node.peer_id();
    let ok = wait_until(Duration::from_secs(10), || {
        let l = lines.lock().expect("lock");
        l.iter()
            .any(|x| x.starts_with("connected to") && x.contains(&id))
            && l.iter().any(|x| {
                x.contains(&id) && x.ends_with("hello from the example") && !x.contains(" #0:")
            })
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "example output: {:?}", lines.lock().expect("lock"));
}

/// A hostile peer sends, on the wire, a fresh message, the same again, one older than the replay
/// window, one tampered after signing, and another fresh one: only the two fresh ones arrive.
#[test]
fn replayed_old_and_tampered_messages_are_not_delivered() {
    let node = Node::start(
        "victim",
        NodeOpts {
            transport: Transport::Tcp,
            ..Default::default()
        },
    );
    let topic = "guarded";
    let sub = Subscriber::start(&node, topic);
    assert!(wait_until(Duration::from_secs(5), || node
        .ctl_json(&["pubsub", "topics"])
        .to_string()
        .contains(topic)));
    let mut hostile = std::process::Command::new(env!("CARGO_BIN_EXE_hostile_gossip"))
        .arg(node.multiaddr(Transport::Tcp))
        .arg(topic)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the hostile peer");
    let arrived = wait_until(Duration::from_secs(15), || sub.count("fresh-2") == 1);
    let _ = hostile.kill();
    let _ = hostile.wait();
    let got = sub.lines.lock().expect("lock").clone();
    assert!(arrived, "fresh-2 never arrived: {got:?}");
    assert_eq!(sub.count("fresh-1"), 1, "{got:?}");
    for bad in ["old", "tampered", "tampered-original"] {
        assert_eq!(sub.count(bad), 0, "{bad} was delivered: {got:?}");
    }
}

/// A message replayed after the receiver restarted (Gossipsub's duplicate cache is empty then)
/// is still refused: the replay windows are persisted. It is counted too.
#[test]
fn replay_is_refused_after_the_receiver_restarts() {
    let mut node = Node::start(
        "restarting",
        NodeOpts {
            transport: Transport::Tcp,
            ..Default::default()
        },
    );
    let topic = "durable";
    let key = node.dir.join("hostile.key");
    let send = |node: &Node, msgs: &[&str], until: &dyn Fn() -> bool| {
        let mut h = std::process::Command::new(env!("CARGO_BIN_EXE_hostile_gossip"))
            .env("HOSTILE_KEY", &key)
            .arg(node.multiaddr(Transport::Tcp))
            .arg(topic)
            .arg("send")
            .args(msgs)
            .stdout(Stdio::null())
            .spawn()
            .expect("hostile peer");
        let ok = wait_until(Duration::from_secs(15), until);
        let _ = h.kill();
        let _ = h.wait();
        ok
    };
    {
        let sub = Subscriber::start(&node, topic);
        assert!(wait_until(Duration::from_secs(5), || node
            .ctl_json(&["pubsub", "topics"])
            .to_string()
            .contains(topic)));
        assert!(
            send(&node, &["7000=original"], &|| sub.count("original") == 1),
            "the original never arrived"
        );
    }
    assert!(node.stop().success());
    node.spawn(&NodeOpts {
        transport: Transport::Tcp,
        ..Default::default()
    });
    let sub = Subscriber::start(&node, topic);
    assert!(wait_until(Duration::from_secs(5), || node
        .ctl_json(&["pubsub", "topics"])
        .to_string()
        .contains(topic)));
    assert!(
        send(&node, &["7000=original", "7001=marker"], &|| sub
            .count("marker")
            == 1),
        "the marker never arrived"
    );
    assert_eq!(
        sub.count("original"),
        0,
        "the replay was delivered after the restart"
    );
    let metrics = node.status()["metrics_addr"]
        .as_str()
        .expect("metrics")
        .to_string();
    let out = std::process::Command::new(bin("p2pd"))
        .args(["health", "--url", &format!("http://{metrics}/health/live")])
        .output()
        .expect("health");
    assert!(out.status.success());
    let body = http_get(&metrics, "/metrics").body;
    assert!(
        body.contains("p2p_messages_rejected_total{reason=\"replay\"} 1"),
        "{body}"
    );
}

/// `pubsub pub --lines` publishes each line as a message, pipelined; every one arrives once,
/// and a plain request on the same kind of connection still works after a batch.
#[test]
fn pipelined_publishes_all_arrive() {
    let [a, b, _c] = network();
    let topic = "bulk";
    let sub = Subscriber::start(&b, topic);
    let b_id = b.peer_id();
    assert!(wait_until(Duration::from_secs(10), || a
        .ctl_json(&["pubsub", "peers", topic])
        .to_string()
        .contains(&b_id)));
    let lines: String = (0..2000).map(|i| format!("line-{i}\n")).collect();
    let mut child = clean_command(&bin("p2pctl"), &a.dir)
        .arg("--socket")
        .arg(&a.socket)
        .args(["--json", "pubsub", "pub", "--lines", topic, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("p2pctl");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), lines.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["published"], 2000, "{v}");
    assert!(
        wait_until(Duration::from_secs(20), || sub
            .lines
            .lock()
            .map(|l| l.len() >= 2000)
            .unwrap_or(false)),
        "only {} arrived",
        sub.lines.lock().map(|l| l.len()).unwrap_or(0)
    );
    for i in [0, 999, 1999] {
        assert_eq!(sub.count(&format!("line-{i}")), 1);
    }
    assert!(a.ctl(&["status"]).status.success());
}

/// p2p_pubsub_dropped_total on `n`.
fn dropped_total(n: &Node) -> f64 {
    n.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("p2p_pubsub_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("p2p_pubsub_dropped_total is exported")
}

/// A subscriber that stops reading loses what no longer fits in its queue, and only that: the
/// drops are counted, the log says so once when they start and once, with the count, when the
/// subscriber reads again, and what is published after that reaches it.
#[test]
fn a_subscriber_that_stops_reading_loses_messages_counted_and_logged_once() {
    let n = Node::start("n", NodeOpts::default());
    let topic = "firehose";
    // `p2pctl pubsub sub` whose output nobody reads: once the pipe is full it stops reading
    // the control socket.
    let mut sub = Reaper(
        clean_command(&bin("p2pctl"), &n.dir)
            .arg("--socket")
            .arg(&n.socket)
            .args(["pubsub", "sub", topic])
            .stdout(Stdio::piped())
            .spawn()
            .expect("p2pctl pubsub sub"),
    );
    assert!(wait_until(Duration::from_secs(10), || n
        .ctl_json(&["pubsub", "topics"])
        .to_string()
        .contains(topic)));
    let lines: String = (0..60_000).map(|i| format!("m-{i}\n")).collect();
    let mut publisher = clean_command(&bin("p2pctl"), &n.dir)
        .arg("--socket")
        .arg(&n.socket)
        .args(["--timeout", "120s", "pubsub", "pub", "--lines", topic, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("p2pctl pubsub pub");
    std::io::Write::write_all(
        &mut publisher.stdin.take().expect("stdin"),
        lines.as_bytes(),
    )
    .expect("write");
    assert!(publisher.wait().expect("wait").success());
    let dropped = dropped_total(&n);
    assert!(
        dropped > 0.0,
        "60,000 messages fitted a subscriber that read none"
    );
    let too_slow = |log: &str| log.matches("a pub/sub subscriber is too slow").count();
    assert_eq!(too_slow(&n.log()), 1, "one line when the drops start");

    // The subscriber reads again: the backlog, then what comes after it.
    let out = sub.0.stdout.take().expect("stdout");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                seen.lock().expect("lines").push(line);
            }
        })
    };
    let got = |what: &str| {
        seen.lock()
            .expect("lines")
            .iter()
            .any(|l| l.ends_with(&format!(": {what}")))
    };
    let delivered = || seen.lock().expect("lines").len() as f64;
    assert!(
        wait_until(Duration::from_secs(60), || delivered() + dropped
            >= 60_000.0),
        "of 60,000 messages {} arrived and {dropped} were counted as dropped",
        delivered()
    );
    assert!(got("m-0"), "the oldest message, queued first, was not kept");
    assert!(n.ctl(&["pubsub", "pub", topic, "after"]).status.success());
    assert!(
        wait_until(Duration::from_secs(30), || got("after")),
        "a message published after the subscriber caught up never arrived"
    );
    let log = n.log();
    assert_eq!(too_slow(&log), 1, "{log}");
    assert!(
        log.contains("a slow pub/sub subscriber caught up")
            && log.contains(&format!("dropped={dropped}")),
        "the catch-up line with the count ({dropped}) is missing"
    );
    assert_eq!(
        delivered() + dropped,
        60_001.0,
        "every message was either delivered or counted as dropped"
    );
    assert_eq!(
        dropped_total(&n),
        dropped,
        "nothing dropped after the catch-up"
    );
    drop(sub);
    let _ = reader.join();
}
