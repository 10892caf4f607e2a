//! A network under churn: N nodes on distinct loopback addresses (127.0.1.x), joined through
//! two bootstrap nodes, every node subscribed to one topic; then waves in which 20% of the
//! ordinary nodes are stopped and started again on their data dirs *without* bootstrap peers
//! (they rejoin from the routing table they saved). Measured, not asserted: time to converge,
//! routing-table sizes, `dht find-peer` and `dht get` success and latency, gossip delivery and
//! latency among live nodes, rejoin time, RSS. `scripts/churn.sh` runs the full size on a
//! release build; a CI-sized run asserts delivery and find-peer success.

use crate::{bin, clean_command, wait_until, Node, NodeOpts, Transport};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "churn";

/// What one run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub nodes: usize,
    pub waves: usize,
    pub converge: Duration,
    pub routing_tables: Vec<u64>,
    pub find_peer: Vec<Option<Duration>>,
    pub dht_get: Vec<Option<Duration>>,
    /// Per message: live subscribers it should reach, latencies of those it did.
    pub gossip: Vec<(usize, Vec<Duration>)>,
    pub rejoin: Vec<Duration>,
    pub rss_kib: Vec<u64>,
}

/// `p2pctl pubsub sub` on one node, recording when each message arrived.
struct Listener {
    child: Child,
    got: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Listener {
    fn start(node: &Node) -> Listener {
        let mut child = clean_command(&bin("p2pctl"), &node.dir)
            .arg("--socket")
            .arg(&node.socket)
            .args(["--json", "pubsub", "sub", TOPIC])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pubsub sub");
        let stdout = child.stdout.take().expect("stdout");
        let got = Arc::new(Mutex::new(HashMap::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                if let Some(text) = serde_json::from_str(&line)
                    .ok()
                    .and_then(|v: serde_json::Value| crate::message_text(&v))
                {
                    sink.lock().expect("lock").entry(text).or_insert(at);
                }
            }
        });
        Listener { child, got }
    }

    fn at(&self, data: &str) -> Option<Instant> {
        self.got.lock().expect("lock").get(data).copied()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Member {
    node: Node,
    opts: NodeOpts,
    listener: Option<Listener>,
}

/// Node `i` listens on 127.0.1.(i+1); its dials leave from 127.0.0.1, the loopback route's
/// source address, so every peer arrives from one address. The per-address limits (16 inbound
/// connections, 4 new ones a second) would rightly refuse the 17th node of a network that size
/// from one host: loopback is trusted here, as in the benchmarks.
fn opts(i: usize, bootstrap: Vec<String>, is_bootstrap: bool) -> NodeOpts {
    NodeOpts {
        transport: Transport::Tcp,
        ip: Some(format!("127.0.1.{}", i + 1)),
        bootstrap,
        is_bootstrap,
        env: vec![("P2P_TRUST__ADDRESSES".into(), "127.0.0.0/8".into())],
        ..Default::default()
    }
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A deterministic pseudo-random sequence (no dependency, same run to run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn routing_table(n: &Node) -> u64 {
    let out = n.ctl(&["--json", "status"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["routing_table_size"].as_u64())
        .unwrap_or(0)
}

impl Report {
    pub fn table(&self) -> String {
        let ok = |v: &[Option<Duration>]| v.iter().filter(|d| d.is_some()).count();
        let lat = |v: &[Option<Duration>]| v.iter().flatten().copied().collect::<Vec<_>>();
        let expected: usize = self.gossip.iter().map(|(n, _)| n).sum();
        let delivered: Vec<Duration> = self.gossip.iter().flat_map(|(_, l)| l.clone()).collect();
        let mut rt = self.routing_tables.clone();
        rt.sort();
        let mut rss = self.rss_kib.clone();
        rss.sort();
        let fp = lat(&self.find_peer);
        let get = lat(&self.dht_get);
        let mut out = String::new();
        out.push_str(&format!(
            "nodes {} (2 bootstrap), waves {} of 20% stopped and restarted without bootstrap\n",
            self.nodes, self.waves
        ));
        out.push_str(&format!(
            "converge (every routing table >= {}): {:.1} s\n",
            converge_target(self.nodes),
            self.converge.as_secs_f64()
        ));
        out.push_str(&format!(
            "routing table size: min {} median {} max {}\n",
            rt.first().unwrap_or(&0),
            rt.get(rt.len() / 2).unwrap_or(&0),
            rt.last().unwrap_or(&0)
        ));
        out.push_str(&format!(
            "find-peer (live peers): {}/{} ok, p50 {} p99 {} (p2pctl process included)\n",
            ok(&self.find_peer),
            self.find_peer.len(),
            ms(percentile(&fp, 0.5)),
            ms(percentile(&fp, 0.99))
        ));
        out.push_str(&format!(
            "dht get: {}/{} ok, p50 {} p99 {}\n",
            ok(&self.dht_get),
            self.dht_get.len(),
            ms(percentile(&get, 0.5)),
            ms(percentile(&get, 0.99))
        ));
        out.push_str(&format!(
            "gossip (live subscribers): {}/{} delivered ({:.1}%), p50 {} p99 {}\n",
            delivered.len(),
            expected,
            100.0 * delivered.len() as f64 / expected.max(1) as f64,
            ms(percentile(&delivered, 0.5)),
            ms(percentile(&delivered, 0.99))
        ));
        out.push_str(&format!(
            "rejoin from the saved routing table: p50 {} max {}\n",
            ms(percentile(&self.rejoin, 0.5)),
            ms(percentile(&self.rejoin, 1.0))
        ));
        out.push_str(&format!(
            "RSS per node: median {:.1} MiB max {:.1} MiB\n",
            *rss.get(rss.len() / 2).unwrap_or(&0) as f64 / 1024.0,
            *rss.last().unwrap_or(&0) as f64 / 1024.0
        ));
        out
    }

    /// Messages that missed a live subscriber, and find-peer lookups that failed.
    pub fn misses(&self) -> (usize, usize) {
        let lost = self.gossip.iter().map(|(n, l)| n - l.len()).sum();
        let failed = self.find_peer.iter().filter(|d| d.is_none()).count();
        (lost, failed)
    }
}

fn converge_target(n: usize) -> u64 {
    (n as u64 - 1).min(8)
}

/// Runs the scenario with `n` nodes (at least 5) and `waves` churn waves.
pub fn run(n: usize, waves: usize, log: &mut dyn FnMut(&str)) -> Report {
    assert!(n >= 5, "at least 5 nodes");
    let mut report = Report {
        nodes: n,
        waves,
        ..Default::default()
    };
    let started = Instant::now();
    let mut members: Vec<Member> = Vec::new();
    for i in 0..2 {
        let o = opts(i, vec![], true);
        let node = Node::start(&format!("boot{i}"), o.clone());
        members.push(Member {
            node,
            opts: o,
            listener: None,
        });
    }
    let boots: Vec<String> = members
        .iter()
        .map(|m| m.node.multiaddr(Transport::Tcp))
        .collect();
    // The bootstrap nodes know each other.
    let _ = members[1].node.ctl(&["connect", &boots[0]]);
    for i in 2..n {
        let o = opts(i, boots.clone(), false);
        let node = Node::start(&format!("n{i}"), o.clone());
        members.push(Member {
            node,
            opts: o,
            listener: None,
        });
    }
    let target = converge_target(n);
    let converged = wait_until(Duration::from_secs(120), || {
        members.iter().all(|m| routing_table(&m.node) >= target)
    });
    report.converge = started.elapsed();
    log(&format!(
        "{n} nodes up; converged: {converged} in {:.1} s",
        report.converge.as_secs_f64()
    ));
    for m in &mut members {
        m.listener = Some(Listener::start(&m.node));
    }
    let ids: Vec<String> = members.iter().map(|m| m.node.peer_id()).collect();
    let mut rng = Lcg(42);
    let mut message = 0;
    for wave in 0..=waves {
        if wave > 0 {
            // 20% of the ordinary nodes stop (saving their routing table) and come back
            // without bootstrap peers.
            let k = ((n - 2) / 5).max(1);
            let mut chosen = Vec::new();
            while chosen.len() < k {
                let i = 2 + rng.below(n - 2);
                if !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
            for &i in &chosen {
                let m = &mut members[i];
                m.listener = None;
                m.node.stop();
            }
            // While they are down: the live ones still find each other and gossip.
            measure(
                &mut report,
                &members,
                &ids,
                &chosen,
                &mut rng,
                &mut message,
                log,
            );
            for &i in &chosen {
                let m = &mut members[i];
                let mut o = m.opts.clone();
                o.bootstrap.clear();
                let t = Instant::now();
                m.node.spawn(&o);
                let back = wait_until(Duration::from_secs(30), || {
                    !m.node.peers().is_empty() && routing_table(&m.node) > 0
                });
                report.rejoin.push(t.elapsed());
                log(&format!(
                    "wave {wave}: n{i} rejoined: {back} in {:.2} s",
                    t.elapsed().as_secs_f64()
                ));
                m.listener = Some(Listener::start(&m.node));
            }
        }
        measure(
            &mut report,
            &members,
            &ids,
            &[],
            &mut rng,
            &mut message,
            log,
        );
    }
    report.routing_tables = members.iter().map(|m| routing_table(&m.node)).collect();
    report.rss_kib = members.iter().map(|m| m.node.rss_kib()).collect();
    report
}

/// Waits until every live subscriber gets a probe message (the mesh formed), then measures
/// gossip, find-peer and dht get among the live nodes (`down` are stopped).
fn measure(
    report: &mut Report,
    members: &[Member],
    ids: &[String],
    down: &[usize],
    rng: &mut Lcg,
    message: &mut usize,
    log: &mut dyn FnMut(&str),
) {
    let live: Vec<usize> = (0..members.len()).filter(|i| !down.contains(i)).collect();
    let publisher = |i: usize, data: &str| members[i].node.ctl(&["pubsub", "pub", TOPIC, data]);
    // Ready when a probe from the first live node reaches every live subscriber.
    let ready = wait_until(Duration::from_secs(60), || {
        *message += 1;
        let probe = format!("probe {message}");
        let _ = publisher(live[0], &probe);
        wait_until(Duration::from_secs(2), || {
            live.iter().all(|&i| {
                i == live[0]
                    || members[i]
                        .listener
                        .as_ref()
                        .is_some_and(|l| l.at(&probe).is_some())
            })
        })
    });
    log(&format!(
        "{} live nodes; gossip mesh ready: {ready}",
        live.len()
    ));

    let mut sent = Vec::new();
    for _ in 0..10 {
        *message += 1;
        let from = live[rng.below(live.len())];
        let data = format!("m {message}");
        let at = Instant::now();
        let _ = publisher(from, &data);
        sent.push((from, data, at));
    }
    // Every live subscriber has every message, or 10 s passed (what is missing then is lost).
    wait_until(Duration::from_secs(10), || {
        sent.iter().all(|(from, data, _)| {
            live.iter().all(|&i| {
                i == *from
                    || members[i]
                        .listener
                        .as_ref()
                        .is_some_and(|l| l.at(data).is_some())
            })
        })
    });
    for (from, data, at) in sent {
        let receivers: Vec<usize> = live.iter().copied().filter(|&i| i != from).collect();
        let lat: Vec<Duration> = receivers
            .iter()
            .filter_map(|&i| members[i].listener.as_ref()?.at(&data))
            .map(|t| t.saturating_duration_since(at))
            .collect();
        report.gossip.push((receivers.len(), lat));
    }

    for _ in 0..10 {
        let (a, b) = (live[rng.below(live.len())], live[rng.below(live.len())]);
        if a == b {
            continue;
        }
        let t = Instant::now();
        let out = members[a]
            .node
            .ctl_within("20s", &["--json", "dht", "find-peer", &ids[b]]);
        let found = out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v["addrs"].as_array().map(|a| !a.is_empty()))
                .unwrap_or(false);
        report.find_peer.push(found.then(|| t.elapsed()));
    }

    *message += 1;
    let key = format!("churn-key-{message}");
    let putter = live[rng.below(live.len())];
    let put = members[putter]
        .node
        .ctl_within("20s", &["dht", "put", &key, "v"]);
    if put.status.success() {
        for _ in 0..5 {
            let g = live[rng.below(live.len())];
            let t = Instant::now();
            let out = members[g].node.ctl_within("20s", &["dht", "get", &key]);
            report
                .dht_get
                .push(out.status.success().then(|| t.elapsed()));
        }
    } else {
        log(&format!(
            "dht put failed: {}",
            String::from_utf8_lossy(&put.stderr).trim()
        ));
        report.dht_get.push(None);
    }
}
