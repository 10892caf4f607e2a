//! A mixed load on a node for a while — control clients, peers joining and leaving, gossip and
//! blocks — with its RSS and open descriptors sampled, to see that they level off. Used by a
//! short test and, for as long as asked, by `scripts/soak.sh`.

use crate::{bin, clean_command, Node, NodeOpts, Subscriber, Transport};
use std::time::{Duration, Instant};

/// Identities the visitors take in turn.
const VISITORS: usize = 32;

/// One sample of the hub node.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Duration,
    pub rss_kib: u64,
    pub fds: usize,
    pub rounds: usize,
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Runs the load on a hub for `length`, sampling every `every`; returns the samples.
pub fn run(length: Duration, every: Duration) -> Vec<Sample> {
    let tcp = |bootstrap: Vec<String>| NodeOpts {
        transport: Transport::Tcp,
        bootstrap,
        ..Default::default()
    };
    let hub = Node::start(
        "soak-hub",
        NodeOpts {
            is_bootstrap: true,
            ..tcp(vec![])
        },
    );
    let boot = hub.multiaddr(Transport::Tcp);
    let steady = Node::start("soak-steady", tcp(vec![boot.clone()]));
    let topic = "soak";
    let _sub = Subscriber::start(&hub, topic);
    let block = steady.dir.join("block.bin");
    std::fs::write(&block, vec![7u8; 300 << 10]).expect("block file");
    // The visitors are peers that come back, as real churn is: a few dozen identities in turn.
    // State per identity ever met is bounded by design and tested on its own (replay windows:
    // 100,000 authors; gossipsub scores: 5 min; rate buckets: evicted when full again); with a
    // new identity every round the soak would only watch those fill towards their bounds.
    let keys: Vec<std::path::PathBuf> = (0..VISITORS)
        .map(|i| {
            let key = steady.dir.join(format!("visitor-{i}.key"));
            let out = clean_command(&bin("p2pd"), &steady.dir)
                .args(["keygen", "--out"])
                .arg(&key)
                .output()
                .expect("p2pd keygen");
            assert!(out.status.success(), "p2pd keygen: {out:?}");
            key
        })
        .collect();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = started;
    let mut rounds = 0;
    while started.elapsed() < length {
        // A peer joins, gossips, fetches a block and leaves.
        let visitor = Node::start_as(
            "soak-visitor",
            tcp(vec![boot.clone()]),
            &keys[rounds % VISITORS],
        );
        let _ = visitor.ctl(&["connect", &boot]);
        let _ = visitor.ctl(&["pubsub", "pub", topic, &format!("round {rounds}")]);
        let put = steady.ctl(&["block", "put", block.to_str().unwrap_or("")]);
        let hash = String::from_utf8_lossy(&put.stdout).trim().to_string();
        if !hash.is_empty() {
            let _ = clean_command(&bin("p2pctl"), &hub.dir)
                .args(["--socket"])
                .arg(&hub.socket)
                .args(["block", "get", &hash, "-o"])
                .arg(hub.dir.join("fetched.bin"))
                .output();
        }
        // Control clients come and go, some with bad requests.
        for args in [
            &["status"][..],
            &["peers", "-v"],
            &["bans"],
            &["limits"],
            &["pubsub", "topics"],
            &["dht", "get", "no-such-key"],
            &["ban", "192.0.2.250", "--for", "1s"],
            &[
                "disconnect",
                "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            ],
        ] {
            let _ = hub.ctl(args);
        }
        drop(visitor);
        rounds += 1;
        if Instant::now() >= next_sample {
            samples.push(Sample {
                at: started.elapsed(),
                rss_kib: hub.rss_kib(),
                fds: fds(hub.pid()),
                rounds,
            });
            next_sample += every;
        }
    }
    samples
}

/// Whether the samples level off: the last third grows no more than `slack` (a fraction) over
/// the middle third, for RSS and for descriptors.
pub fn levels_off(samples: &[Sample], slack: f64) -> Result<(), String> {
    let third = samples.len() / 3;
    if third == 0 {
        return Err(format!("too few samples ({})", samples.len()));
    }
    let (middle, last) = (&samples[third..2 * third], &samples[2 * third..]);
    let max = |s: &[Sample], f: fn(&Sample) -> f64| s.iter().map(f).fold(0.0, f64::max);
    for (what, f) in [
        ("RSS", (|s: &Sample| s.rss_kib as f64) as fn(&Sample) -> f64),
        ("open descriptors", |s: &Sample| s.fds as f64),
    ] {
        let (m, l) = (max(middle, f), max(last, f));
        if l > m * (1.0 + slack) + 8.0 {
            return Err(format!(
                "{what} still grows: at most {m} in the middle third, {l} in the last"
            ));
        }
    }
    Ok(())
}

/// The samples as a table.
pub fn table(samples: &[Sample]) -> String {
    let mut out = String::from("seconds  rounds  RSS KiB  open fds\n");
    for s in samples {
        out.push_str(&format!(
            "{:>7.0}  {:>6}  {:>7}  {:>8}\n",
            s.at.as_secs_f64(),
            s.rounds,
            s.rss_kib,
            s.fds
        ));
    }
    out
}
