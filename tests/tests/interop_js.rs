//! Interop with js-libp2p (from npm, on the machine's Node.js): the js peer dials p2pd and p2pd
//! dials it, over TCP and over QUIC-v1; ping and identify succeed both ways.

use p2pd_e2e::{wait_until, Node, NodeOpts, Subscriber, Transport};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

struct JsPeer {
    child: Child,
    stdin: ChildStdin,
    events: Receiver<Value>,
    seen: Vec<Value>,
}

impl JsPeer {
    fn start() -> JsPeer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/js");
        assert!(
            dir.join("node_modules").exists(),
            "js-libp2p is not installed: run `npm install --prefix tests/interop/js` (scripts/test.sh does)"
        );
        let mut child = Command::new("node")
            .arg("peer.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node (Node.js 20+ is required)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        JsPeer {
            child,
            stdin,
            events,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred` (also among those already seen).
    fn expect(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "js peer: no {what} within {within:?}; events: {:?}",
            self.seen
        );
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to js peer");
    }
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn js_addr(listening: &Value, part: &str) -> String {
    listening["addrs"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .find(|x| x.contains(part))
        })
        .unwrap_or_else(|| panic!("js peer has no {part} address: {listening}"))
        .to_string()
}

/// The js peer's entry in `p2pctl peers -v`, once it has an agent (identify) and a latency (ping).
fn identified_and_pinged(node: &Node, js_id: &str) -> Option<Value> {
    let peers = node.ctl_json(&["peers", "-v"]);
    peers["peers"].as_array()?.iter().find_map(|p| {
        let done = p["peer_id"] == js_id
            && p["agent"]
                .as_str()
                .is_some_and(|a| a.starts_with("js-libp2p"))
            && p["latency_us"].as_u64().is_some_and(|us| us > 0);
        done.then(|| p.clone())
    })
}

#[test]
fn js_libp2p_interop_both_ways_over_tcp_and_quic() {
    let node = Node::start("interop", NodeOpts::default());
    let p2pd_id = node.peer_id();
    let mut js = JsPeer::start();
    let listening = js.expect("listening", Duration::from_secs(30), |v| {
        v["event"] == "listening"
    });
    let js_id = listening["peer_id"].as_str().expect("peer_id").to_string();

    // js dials p2pd: its ping gets an answer and its identify reports p2pd's agent.
    for t in [Transport::Tcp, Transport::Quic] {
        let addr = node.multiaddr(t);
        js.send(&format!("dial {addr}"));
        let ev = js.expect(&format!("ping over {t:?}"), Duration::from_secs(20), |v| {
            v["addr"] == addr.as_str() && (v["event"] == "pinged" || v["event"] == "error")
        });
        assert_eq!(ev["event"], "pinged", "js ping over {t:?} failed: {ev}");
        let id = js.expect("identify of p2pd", Duration::from_secs(10), |v| {
            v["event"] == "identified" && v["peer_id"] == p2pd_id.as_str()
        });
        assert!(
            id["agent"].as_str().is_some_and(|a| a.starts_with("p2pd/")),
            "{id}"
        );
        assert!(id.to_string().contains("/ipfs/kad/1.0.0"), "{id}");
    }

    // p2pd dials js: p2pctl connect, then identify and ping from p2pd's side.
    for (t, part) in [(Transport::Tcp, "/tcp/"), (Transport::Quic, "/quic-v1")] {
        let out = node.ctl(&["disconnect", &js_id]);
        assert!(out.status.success() || node.peers().is_empty());
        assert!(
            wait_until(Duration::from_secs(10), || !node.peers().contains(&js_id)),
            "js peer still connected"
        );
        let addr = js_addr(&listening, part);
        let out = node.ctl(&["connect", &addr]);
        assert!(
            out.status.success(),
            "p2pctl connect {addr} over {t:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut entry = None;
        assert!(
            wait_until(Duration::from_secs(20), || {
                entry = identified_and_pinged(&node, &js_id);
                entry.is_some()
            }),
            "p2pd did not identify and ping the js peer over {t:?}: {}",
            node.ctl_json(&["peers", "-v"])
        );
        let entry = entry.expect("entry");
        assert!(
            entry["connections"].to_string().contains(part),
            "{t:?}: {entry}"
        );
        assert!(
            entry["protocols"].to_string().contains("/ipfs/ping/1.0.0"),
            "{entry}"
        );
    }
    js.send("quit");
}

/// Gossipsub messages cross between js-libp2p and p2pd both ways, with no p2pd-only envelope:
/// the payload, author and sequence number arrive as sent.
#[test]
fn js_libp2p_gossipsub_messages_cross_both_ways() {
    let node = Node::start("gossip", NodeOpts::default());
    let p2pd_id = node.peer_id();
    let topic = "interop-topic";
    let sub = Subscriber::start(&node, topic);
    let mut js = JsPeer::start();
    let listening = js.expect("listening", Duration::from_secs(30), |v| {
        v["event"] == "listening"
    });
    let js_id = listening["peer_id"].as_str().expect("peer_id").to_string();
    js.send(&format!("sub {topic}"));
    let addr = node.multiaddr(Transport::Tcp);
    js.send(&format!("dial {addr}"));
    js.expect("ping", Duration::from_secs(20), |v| v["event"] == "pinged");
    assert!(
        wait_until(Duration::from_secs(15), || node
            .ctl_json(&["pubsub", "peers", topic])
            .to_string()
            .contains(&js_id)),
        "p2pd never saw the js peer subscribe"
    );

    // js -> p2pd. Retried until the js side knows p2pd's subscription too.
    let mut n = 0;
    let got = wait_until(Duration::from_secs(15), || {
        n += 1;
        js.send(&format!("pub {topic} from-js-{n}"));
        sub.lines
            .lock()
            .expect("lock")
            .iter()
            .any(|m| m["from"] == js_id.as_str())
    });
    assert!(got, "no js message reached p2pd; js events: {:?}", js.seen);
    let lines = sub.lines.lock().expect("lock").clone();
    let m = lines
        .iter()
        .find(|m| m["from"] == js_id.as_str())
        .expect("message");
    assert!(
        p2pd_e2e::message_text(m).is_some_and(|d| d.starts_with("from-js-")),
        "{m}"
    );
    assert!(m["seq_no"].as_u64().is_some_and(|s| s > 0), "{m}");

    // p2pd -> js.
    let out = node.ctl(&["pubsub", "pub", topic, "from-p2pd"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = js.expect("message from p2pd", Duration::from_secs(15), |v| {
        v["event"] == "message" && v["data"] == "from-p2pd"
    });
    assert_eq!(ev["from"], p2pd_id.as_str(), "{ev}");
    assert_eq!(ev["topic"], topic);
    js.send("quit");
}
