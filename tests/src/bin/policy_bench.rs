//! Peer-policy figures on real daemons over loopback, each as the median (min–max) of
//! interleaved runs with its ratio to a baseline measured in the same run:
//! - a burst of 10,000 messages of 100 B published back to back through one control connection
//!   and received by a subscriber on a second node, against the same number of request/answer
//!   round trips over a bare Unix socket pair;
//! - the time a peer from 127.0.0.3 needs to connect while 300 stalled sockets from 127.0.0.9
//!   hold their handshakes open, against the same connect without the flood.
//!
//! Usage: policy_bench [RUNS] (default 3). `scripts/bench-policy.sh` builds and runs it.

use p2pd_e2e::{bin, connect_from, socket_addr, wait_until, Node, NodeOpts, Subscriber, Transport};
use std::time::{Duration, Instant};

const MESSAGES: usize = 10_000;

fn tcp(ip: &str, bootstrap: Vec<String>, is_bootstrap: bool) -> NodeOpts {
    NodeOpts {
        transport: Transport::Tcp,
        bootstrap,
        is_bootstrap,
        ip: Some(ip.into()),
        ..Default::default()
    }
}

/// Messages per second through two daemons, publisher to subscriber.
fn pubsub_burst() -> f64 {
    let a = Node::start("a", tcp("127.0.0.1", vec![], true));
    let b = Node::start(
        "b",
        tcp("127.0.0.1", vec![a.multiaddr(Transport::Tcp)], false),
    );
    let topic = "bench";
    let sub = Subscriber::start(&b, topic);
    let b_id = b.peer_id();
    assert!(wait_until(Duration::from_secs(15), || a
        .ctl_json(&["pubsub", "peers", topic])
        .to_string()
        .contains(&b_id)));
    let started = Instant::now();
    let out = std::process::Command::new(bin("publish_many"))
        .arg(&a.socket)
        .args([topic, &MESSAGES.to_string(), "100"])
        .output()
        .expect("publish_many");
    assert!(out.status.success());
    let all = wait_until(Duration::from_secs(300), || {
        sub.lines.lock().map(|l| l.len()).unwrap_or(0) >= MESSAGES
    });
    assert!(all, "not every message arrived");
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// Milliseconds for `p2pctl connect` from 127.0.0.3, with or without the flood.
fn connect_ms(flood: bool) -> f64 {
    let v = Node::start("victim", tcp("127.0.0.1", vec![], false));
    let c = Node::start("client", tcp("127.0.0.3", vec![], false));
    let addr = v.multiaddr(Transport::Tcp);
    let dst = socket_addr(&addr);
    let _held: Vec<_> = if flood {
        (0..300)
            .map(|_| connect_from([127, 0, 0, 9], dst))
            .collect()
    } else {
        Vec::new()
    };
    let started = Instant::now();
    let out = c.ctl(&["connect", &addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64() * 1000.0
}

fn summary(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let (mut burst, mut unix, mut flooded, mut calm) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs.max(1) {
        unix.push(p2pd_e2e::unix_round_trips(MESSAGES).0);
        burst.push(pubsub_burst());
        calm.push(connect_ms(false));
        flooded.push(connect_ms(true));
    }
    let rows = [
        (
            "pub/sub burst 10k x 100 B, msg/s",
            summary(&mut burst),
            "Unix-socket round trips/s",
            summary(&mut unix),
        ),
        (
            "connect during 300-socket flood, ms",
            summary(&mut flooded),
            "connect without flood, ms",
            summary(&mut calm),
        ),
    ];
    println!(
        "{:<40} {:>24}  {:<28} {:>24}  {:>7}",
        "figure", "median (min-max)", "baseline (same run)", "median (min-max)", "ratio"
    );
    for (name, (m, lo, hi), base, (bm, blo, bhi)) in rows {
        println!(
            "{name:<40} {:>24}  {base:<28} {:>24}  {:>7.3}",
            format!("{m:.1} ({lo:.1}-{hi:.1})"),
            format!("{bm:.1} ({blo:.1}-{bhi:.1})"),
            m / bm
        );
    }
    println!("runs: {runs}, interleaved; loopback only");
}
