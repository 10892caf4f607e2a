//! The data-plane benchmark suite: real daemons on loopback (release build), every figure the
//! median (min–max) of interleaved runs beside a baseline measured in the same run on the same
//! data, and their ratio. It prints; it never asserts a timing.
//!
//! Usage: bench [--quick] [RUNS] [--only GROUP,...]   (`scripts/bench.sh` builds and runs it;
//! RUNS defaults to 3, --quick is one run with small sizes, to prove the suite works; groups:
//! stream, block, pubsub, connect, rss, control)

use p2pd_e2e::{
    bin, clean_command, unix_round_trips, wait_until, Node, NodeOpts, NotifySocket, Transport,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;

struct Sizes {
    stream: usize,
    block: usize,
    burst: usize,
    paced: usize,
    peers: Vec<usize>,
    round_trips: usize,
    /// Bans in the list at the end, and how many changes are timed at each end.
    bans: (usize, usize),
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                stream: 64 << 20,
                block: 16 << 20,
                burst: 2_000,
                paced: 200,
                peers: vec![50],
                round_trips: 200,
                bans: (5_000, 200),
            }
        } else {
            Sizes {
                stream: 1 << 30,
                block: 256 << 20,
                // Long enough (several seconds) that a per-peer rate limit below what the node
                // carries would show as lost messages, not hide inside its burst allowance.
                burst: 100_000,
                paced: 1_000,
                peers: vec![50, 500],
                round_trips: 2_000,
                bans: (100_000, 1_000),
            }
        }
    }
}

/// One row of the table: a figure and the baseline it is compared with, one sample per run.
struct Row {
    name: String,
    unit: &'static str,
    values: Vec<f64>,
    baseline: &'static str,
    base: Vec<f64>,
}

fn median_range(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let med = if s.is_empty() {
        f64::NAN
    } else {
        s[s.len() / 2]
    };
    (
        med,
        s.first().copied().unwrap_or(f64::NAN),
        s.last().copied().unwrap_or(f64::NAN),
    )
}

fn fmt(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn print_table(rows: &[Row], runs: usize) {
    println!(
        "\n{:<44} {:>22} {:>10} {:<34} {:>8}",
        "figure", "median (min-max)", "unit", "baseline (median, same run)", "ratio"
    );
    for r in rows {
        let (m, lo, hi) = median_range(&r.values);
        let (b, _, _) = median_range(&r.base);
        let ratio = if r.base.is_empty() { f64::NAN } else { m / b };
        println!(
            "{:<44} {:>22} {:>10} {:<34} {:>8}",
            r.name,
            format!("{} ({}-{})", fmt(m), fmt(lo), fmt(hi)),
            r.unit,
            if r.base.is_empty() {
                "-".to_string()
            } else {
                format!("{} {}", r.baseline, fmt(b))
            },
            if ratio.is_finite() {
                format!("{ratio:.3}")
            } else {
                "-".into()
            }
        );
    }
    println!("\n{runs} interleaved run(s); ratio = median / baseline median.");
}

fn opts(transport: Transport) -> NodeOpts {
    NodeOpts {
        transport,
        // Trusted loopback: the per-address limits would otherwise (rightly) cap 500 peers
        // from one address.
        env: vec![
            ("RUST_LOG".into(), "info".into()),
            ("P2P_TRUST__ADDRESSES".into(), "127.0.0.0/8".into()),
        ],
        ..Default::default()
    }
}

/// A file of `size` pseudo-random (incompressible) bytes.
fn data_file(dir: &Path, size: usize) -> PathBuf {
    let path = dir.join(format!("data-{size}"));
    if path.metadata().is_ok_and(|m| m.len() as usize == size) {
        return path;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create data"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).expect("write data");
        left -= n;
    }
    f.flush().expect("flush");
    path
}

/// User+system CPU seconds of a process so far.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds of reaped children so far (the p2pctl processes).
fn children_cpu_s() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

/// MiB/s of a raw loopback TCP copy of the file (kernel to kernel, no encryption).
fn raw_tcp(file: &Path) -> f64 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let size = file.metadata().expect("size").len();
    // Read as the streams' sink reads (1 MiB at a time): `io::copy` into `io::sink()` reads
    // 8 KiB at a time, which on hosts with costly system calls made the baseline slower than
    // what it is compared with.
    let reader = std::thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        drain(s)
    });
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    std::io::copy(&mut std::fs::File::open(file).expect("open"), &mut s).expect("copy");
    drop(s);
    assert_eq!(reader.join().expect("reader"), size);
    size as f64 / MIB / start.elapsed().as_secs_f64()
}

/// Reads `s` to its end 1 MiB at a time; how many bytes came.
fn drain(mut s: impl Read) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while let Ok(k) = s.read(&mut buf) {
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    n
}

/// A Unix socket that counts what each connection brings until EOF.
struct Sink {
    path: PathBuf,
    done: std::sync::mpsc::Receiver<u64>,
}

fn sink(dir: &Path) -> Sink {
    let path = dir.join(format!("sink-{}.sock", rand_suffix()));
    let l = std::os::unix::net::UnixListener::bind(&path).expect("bind sink");
    let (tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { break };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(drain(s));
            });
        }
    });
    Sink { path, done }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Stream forwarding: `p2pctl stream open` on B pipes the file to A's `stream serve` sink.
/// Returns (MiB/s, CPU-s per GiB of both daemons and the client).
fn stream(transport: Transport, file: &Path, dir: &Path) -> (f64, f64) {
    let a = Node::start("bench-sa", opts(transport));
    let b = Node::start("bench-sb", opts(transport));
    let sink = sink(dir);
    let proto = "/bench/stream/1";
    let serve = a.ctl(&["stream", "serve", proto, &sink.path.display().to_string()]);
    assert!(
        serve.status.success(),
        "{}",
        String::from_utf8_lossy(&serve.stderr)
    );
    let connect = b.ctl(&["connect", &a.multiaddr(transport)]);
    assert!(
        connect.status.success(),
        "{}",
        String::from_utf8_lossy(&connect.stderr)
    );
    let size = file.metadata().expect("size").len();
    let (cpu_a, cpu_b, cpu_c) = (cpu_s(a.pid()), cpu_s(b.pid()), children_cpu_s());
    let start = Instant::now();
    let st = clean_command(&bin("p2pctl"), &b.dir)
        .arg("--socket")
        .arg(&b.socket)
        .args(["stream", "open", &a.peer_id(), proto])
        .stdin(std::fs::File::open(file).expect("open"))
        .stdout(Stdio::null())
        .status()
        .expect("p2pctl stream open");
    assert!(st.success(), "stream open failed");
    let got = sink
        .done
        .recv_timeout(Duration::from_secs(600))
        .expect("sink");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, size, "the sink got {got} of {size} bytes");
    let cpu = (cpu_s(a.pid()) - cpu_a) + (cpu_s(b.pid()) - cpu_b) + (children_cpu_s() - cpu_c);
    (
        size as f64 / MIB / secs,
        cpu / (size as f64 / (1024.0 * MIB)),
    )
}

/// Block exchange: `block put` of the file on A, `block get` on B to /dev/null (written while
/// it is fetched), and on C into a pipe this process drains (written once checked whole).
/// Returns MiB/s of each.
fn blocks(file: &Path) -> (f64, f64, f64) {
    let a = Node::start("bench-ba", opts(Transport::Tcp));
    let b = Node::start("bench-bb", opts(Transport::Tcp));
    let c = Node::start("bench-bc", opts(Transport::Tcp));
    let size = file.metadata().expect("size").len() as f64;
    let start = Instant::now();
    let put = a.ctl_within("600s", &["block", "put", &file.display().to_string()]);
    let put_rate = size / MIB / start.elapsed().as_secs_f64();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let hash = String::from_utf8_lossy(&put.stdout)
        .split_whitespace()
        .next()
        .expect("hash")
        .to_string();
    // `block get` of the block from A on `node`, connected to A first.
    let get_from_a = |node: &Node| {
        assert!(node
            .ctl(&["connect", &a.multiaddr(Transport::Tcp)])
            .status
            .success());
        let mut cmd = clean_command(&bin("p2pctl"), &node.dir);
        cmd.arg("--socket")
            .arg(&node.socket)
            .args(["--timeout", "600s", "block", "get", &hash]);
        cmd
    };
    let mut cmd = get_from_a(&b);
    let start = Instant::now();
    let st = cmd.stdout(Stdio::null()).status().expect("block get");
    let get_rate = size / MIB / start.elapsed().as_secs_f64();
    assert!(st.success(), "block get failed:\n{}", b.log());
    let mut cmd = get_from_a(&c);
    let start = Instant::now();
    let mut get = cmd.stdout(Stdio::piped()).spawn().expect("block get");
    let mut out = get.stdout.take().expect("pipe");
    let (mut buf, mut got) = (vec![0u8; 1 << 20], 0);
    while let Ok(n @ 1..) = std::io::Read::read(&mut out, &mut buf) {
        got += n;
    }
    let st = get.wait().expect("block get");
    let pipe_rate = size / MIB / start.elapsed().as_secs_f64();
    assert!(
        st.success() && got as f64 == size,
        "block get into a pipe failed:\n{}",
        c.log()
    );
    (put_rate, get_rate, pipe_rate)
}

/// ms per `ban` (one change, acknowledged once durable) over the first `window` bans of an
/// empty list, and over the last `window` of a list grown to `total` (the middle imported).
fn ban_costs(total: usize, window: usize) -> (f64, f64) {
    let node = Node::start("bench-bans", opts(Transport::Tcp));
    let target = |i: usize| -> p2pctl::BanTarget {
        let a = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32);
        a.to_string().parse().expect("target")
    };
    rt().block_on(async {
        let mut c = p2pctl::Client::connect(&node.socket)
            .await
            .expect("connect");
        let timed = async |from: usize, c: &mut p2pctl::Client| {
            let t = Instant::now();
            for i in from..from + window {
                c.ban(&target(i), None, Some("bench")).await.expect("ban");
            }
            t.elapsed().as_secs_f64() * 1e3 / window as f64
        };
        let first = timed(0, &mut c).await;
        let middle: Vec<_> = (window..total - window).map(target).collect();
        let r = c
            .ban_import(&middle, None, Some("bench"))
            .await
            .expect("import");
        assert!(r.rejected.is_empty(), "{:?}", r.rejected.first());
        let last = timed(total - window, &mut c).await;
        (first, last)
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn now_ns() -> u64 {
    rand_suffix()
}

/// Waits until `publisher` sees the subscriber's node in the topic's mesh.
fn wait_mesh(publisher: &Node, topic: &str, peer: &str) {
    assert!(
        wait_until(Duration::from_secs(30), || publisher
            .ctl_json(&["pubsub", "peers", topic])
            .to_string()
            .contains(peer)),
        "no mesh"
    );
}

/// Pub/sub: a burst of `n` 100-byte messages from A, received on B, published through one
/// control connection with 256 requests in flight. Messages/s end to end, nothing lost.
fn pubsub_burst(n: usize) -> f64 {
    let a = Node::start("bench-pa", opts(Transport::Tcp));
    let b = Node::start("bench-pb", opts(Transport::Tcp));
    assert!(b
        .ctl(&["connect", &a.multiaddr(Transport::Tcp)])
        .status
        .success());
    let topic = "bench-burst";
    let rt = rt();
    rt.block_on(async {
        let sub = p2pctl::Client::connect(&b.socket).await.expect("connect");
        let mut sub = sub.pubsub_subscribe(topic).await.expect("subscribe");
        wait_mesh(&a, topic, &b.peer_id());
        let mut publisher = p2pctl::Client::connect(&a.socket).await.expect("connect");
        let start = Instant::now();
        // Pipelined, as `p2pctl pubsub pub --lines` does: 256 publishes in flight.
        let send = async {
            let messages = (0..n).map(|i| {
                let mut data = format!("{i}").into_bytes();
                data.resize(100, b'.');
                data
            });
            let sent = publisher
                .pubsub_publish_many(topic, messages, 256)
                .await
                .expect("publish");
            assert_eq!(sent, n);
        };
        let recv = async {
            let mut got = 0;
            while got < n {
                match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                    Ok(Some(Ok(_))) => got += 1,
                    _ => break,
                }
            }
            got
        };
        let ((), got) = tokio::join!(send, recv);
        assert_eq!(got, n, "{got} of {n} messages arrived");
        n as f64 / start.elapsed().as_secs_f64()
    })
}

/// Paced pub/sub latency (p50, p99 in ms): one message every 2 ms from the first node of a
/// line of `hops + 1` nodes, received on the last (the ends are kept apart by a ban).
fn pubsub_paced(n: usize, hops: usize) -> (f64, f64) {
    let nodes: Vec<Node> = (0..=hops)
        .map(|i| Node::start(&format!("bench-l{i}"), opts(Transport::Tcp)))
        .collect();
    for w in nodes.windows(2) {
        assert!(w[1]
            .ctl(&["connect", &w[0].multiaddr(Transport::Tcp)])
            .status
            .success());
    }
    let (first, last) = (&nodes[0], &nodes[hops]);
    if hops > 1 {
        let first_id = first.peer_id();
        assert!(last
            .ctl(&["ban", &first_id, "--reason", "bench: keep the line"])
            .status
            .success());
    }
    let topic = "bench-paced";
    rt().block_on(async {
        let mut subs = Vec::new();
        for n in &nodes[1..] {
            let c = p2pctl::Client::connect(&n.socket).await.expect("connect");
            subs.push(c.pubsub_subscribe(topic).await.expect("subscribe"));
        }
        let mut sub = subs.pop().expect("last");
        wait_mesh(first, topic, &nodes[1].peer_id());
        if hops > 1 {
            wait_mesh(&nodes[hops - 1], topic, &last.peer_id());
        }
        let mut publisher = p2pctl::Client::connect(&first.socket)
            .await
            .expect("connect");
        let send = async {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            for _ in 0..n {
                tick.tick().await;
                let mut data = now_ns().to_string().into_bytes();
                data.resize(100, b' ');
                publisher
                    .pubsub_publish(topic, data)
                    .await
                    .expect("publish");
            }
        };
        let recv = async {
            let mut lat = Vec::new();
            while lat.len() < n {
                match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                    Ok(Some(Ok(m))) => {
                        let sent: u64 =
                            String::from_utf8_lossy(&m.data).trim().parse().unwrap_or(0);
                        lat.push(now_ns().saturating_sub(sent) as f64 / 1e6);
                    }
                    _ => break,
                }
            }
            lat
        };
        let ((), mut lat) = tokio::join!(send, recv);
        assert_eq!(lat.len(), n, "messages were lost");
        lat.sort_by(f64::total_cmp);
        (lat[n / 2], lat[(n * 99 / 100).min(n - 1)])
    })
}

/// Connection setup from B to A in ms: the first of a fresh B process, then a warm one.
fn connection_setup(transport: Transport) -> (f64, f64) {
    let a = Node::start("bench-ca", opts(transport));
    let target: p2pctl::Multiaddr = a.multiaddr(transport).parse().expect("multiaddr");
    let a_id = a.peer_id();
    let a_peer: p2pctl::PeerId = a_id.parse().expect("peer id");
    let b = Node::start("bench-cb", opts(transport));
    rt().block_on(async {
        let mut c = p2pctl::Client::connect(&b.socket).await.expect("connect");
        let t = Instant::now();
        let within = Some(Duration::from_secs(10));
        c.connect_peer(&target, within)
            .await
            .expect("first connect");
        let first = t.elapsed().as_secs_f64() * 1e3;
        c.disconnect_peer(&a_peer).await.expect("disconnect");
        let gone = async {
            for _ in 0..200 {
                let p = c.peers(false).await.expect("peers");
                if !p.peers.iter().any(|x| x.peer_id == a_id) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        };
        assert!(gone.await, "did not disconnect");
        let t = Instant::now();
        c.connect_peer(&target, within).await.expect("warm connect");
        (first, t.elapsed().as_secs_f64() * 1e3)
    })
}

/// RSS of an idle node (KiB), and KiB per connected peer with `n` peers.
fn rss_per_peer(n: usize) -> (f64, f64) {
    let mut o = opts(Transport::Tcp);
    o.env
        .push(("P2P_MAX_CONNECTIONS".into(), (2 * n).max(400).to_string()));
    let hub = Node::start("bench-hub", o);
    let idle = hub.rss_kib() as f64;
    let mut flood = std::process::Command::new(bin("conn_flood"))
        .args([
            &hub.multiaddr(Transport::Tcp),
            &n.to_string(),
            &n.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("conn_flood");
    let connected = || hub.status()["connected_peers"].as_u64().unwrap_or(0) as usize;
    let all = wait_until(Duration::from_secs(120), || connected() >= n);
    let peers = connected();
    // Let identify and the first exchanges finish before reading the resident size.
    let settled = Instant::now();
    let mut last = hub.rss_kib();
    wait_until(Duration::from_secs(10), || {
        let now = hub.rss_kib();
        let stable = now == last && settled.elapsed() > Duration::from_secs(2);
        last = now;
        stable
    });
    let rss = hub.rss_kib() as f64;
    let _ = flood.kill();
    let _ = flood.wait();
    if !all {
        eprintln!("bench: only {peers} of {n} peers connected");
    }
    (idle, (rss - idle) / peers.max(1) as f64)
}

/// ms from exec to READY=1 (sd_notify), and to exit of `/bin/true` for comparison.
fn time_to_ready(dir: &Path) -> f64 {
    let notify = NotifySocket::new();
    let d = tempfile::tempdir_in(dir).expect("tempdir");
    let start = Instant::now();
    let mut child = clean_command(&bin("p2pd"), d.path())
        .env("NOTIFY_SOCKET", &notify.path)
        .env("RUST_LOG", "info")
        .arg("--data-dir")
        .arg(d.path().join("data"))
        .arg("--control-socket")
        .arg(d.path().join("c.sock"))
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("p2pd");
    let ready = notify.expect("READY=1", Duration::from_secs(30));
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.is_some(), "no READY=1");
    ms
}

fn exec_ms(program: &Path, args: &[&str]) -> f64 {
    let start = Instant::now();
    let st = std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("exec");
    assert!(st.success(), "{} failed", program.display());
    start.elapsed().as_secs_f64() * 1e3
}

/// Control round trips on one open connection (per second).
fn control_round_trips(node: &Node, n: usize) -> f64 {
    rt().block_on(async {
        let mut c = p2pctl::Client::connect(&node.socket)
            .await
            .expect("connect");
        let start = Instant::now();
        for _ in 0..n {
            c.status().await.expect("status");
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let only: Vec<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|g| g.split(',').map(String::from).collect())
        .unwrap_or_default();
    let want = |g: &str| only.is_empty() || only.iter().any(|o| o == g);
    let sizes = Sizes::new(quick);
    let dir = tempfile::tempdir().expect("tempdir");
    let stream_file = data_file(dir.path(), sizes.stream);
    let block_file = data_file(dir.path(), sizes.block);
    let true_bin = PathBuf::from("/bin/true");

    let mut rows: Vec<Row> = Vec::new();
    let mut row = |name: String, unit: &'static str, baseline: &'static str| {
        rows.push(Row {
            name,
            unit,
            values: vec![],
            baseline,
            base: vec![],
        });
        rows.len() - 1
    };
    let s_mib = sizes.stream >> 20;
    let b_mib = sizes.block >> 20;
    let tcp_rate = row(
        format!("stream {s_mib} MiB over TCP"),
        "MiB/s",
        "raw TCP copy",
    );
    let tcp_cpu = row("  CPU, both daemons + client".into(), "CPU-s/GiB", "");
    let quic_rate = row(
        format!("stream {s_mib} MiB over QUIC"),
        "MiB/s",
        "raw TCP copy",
    );
    let quic_cpu = row("  CPU, both daemons + client".into(), "CPU-s/GiB", "");
    let put = row(format!("block put {b_mib} MiB"), "MiB/s", "raw TCP copy");
    let get = row(
        format!("block get {b_mib} MiB (other node)"),
        "MiB/s",
        "raw TCP copy",
    );
    let get_pipe = row(
        "  same, into a pipe (checked first)".into(),
        "MiB/s",
        "raw TCP copy",
    );
    let burst = row(
        format!("pubsub burst, {} x 100 B, 2 nodes", sizes.burst),
        "msg/s",
        "Unix round trips/s",
    );
    let p50_2 = row("pubsub paced p50, 2 nodes".into(), "ms", "Unix one-way");
    let p99_2 = row("pubsub paced p99, 2 nodes".into(), "ms", "Unix one-way");
    let p50_3 = row("pubsub paced p50, line of 3".into(), "ms", "Unix one-way");
    let p99_3 = row("pubsub paced p99, line of 3".into(), "ms", "Unix one-way");
    let first_tcp = row(
        "first connection, fresh process, TCP".into(),
        "ms",
        "warm connection",
    );
    let first_quic = row(
        "first connection, fresh process, QUIC".into(),
        "ms",
        "warm connection",
    );
    let idle = row("idle RSS".into(), "KiB", "");
    let per_peer: Vec<(usize, usize)> = sizes
        .peers
        .iter()
        .map(|&n| {
            (
                n,
                row(format!("RSS per connected peer, {n} peers"), "KiB", ""),
            )
        })
        .collect();
    let ready = row("exec to READY=1".into(), "ms", "/bin/true exec");
    let ctl_rt = row(
        "control round trips, open connection".into(),
        "req/s",
        "Unix round trips/s",
    );
    let ctl_exec = row(
        "p2pctl status, whole process".into(),
        "ms",
        "/bin/true exec",
    );
    let ban_last = row(
        format!("ban, one change, last {} of {}", sizes.bans.1, sizes.bans.0),
        "ms",
        "first changes",
    );

    for run in 1..=runs {
        eprintln!("bench: run {run} of {runs}");
        if want("stream") {
            let raw = raw_tcp(&stream_file);
            let (r, c) = stream(Transport::Tcp, &stream_file, dir.path());
            rows[tcp_rate].values.push(r);
            rows[tcp_rate].base.push(raw);
            rows[tcp_cpu].values.push(c);
            let (r, c) = stream(Transport::Quic, &stream_file, dir.path());
            rows[quic_rate].values.push(r);
            rows[quic_rate].base.push(raw_tcp(&stream_file));
            rows[quic_cpu].values.push(c);
        }

        if want("block") {
            let raw = raw_tcp(&block_file);
            let (p, g, piped) = blocks(&block_file);
            rows[put].values.push(p);
            rows[put].base.push(raw);
            rows[get].values.push(g);
            rows[get].base.push(raw);
            rows[get_pipe].values.push(piped);
            rows[get_pipe].base.push(raw);
        }

        if want("pubsub") {
            let (uds_rate, uds_one_way) = unix_round_trips(sizes.burst);
            rows[burst].values.push(pubsub_burst(sizes.burst));
            rows[burst].base.push(uds_rate);
            let (a, b) = pubsub_paced(sizes.paced, 1);
            rows[p50_2].values.push(a);
            rows[p99_2].values.push(b);
            let (a, b) = pubsub_paced(sizes.paced, 2);
            rows[p50_3].values.push(a);
            rows[p99_3].values.push(b);
            for i in [p50_2, p99_2, p50_3, p99_3] {
                rows[i].base.push(uds_one_way);
            }
        }

        if want("connect") {
            let (first, warm) = connection_setup(Transport::Tcp);
            rows[first_tcp].values.push(first);
            rows[first_tcp].base.push(warm);
            let (first, warm) = connection_setup(Transport::Quic);
            rows[first_quic].values.push(first);
            rows[first_quic].base.push(warm);
        }

        if want("rss") {
            for &(n, i) in &per_peer {
                let (idle_kib, kib) = rss_per_peer(n);
                rows[i].values.push(kib);
                if n == sizes.peers[0] {
                    rows[idle].values.push(idle_kib);
                }
            }
        }

        if want("control") {
            rows[ready].values.push(time_to_ready(dir.path()));
            rows[ready].base.push(exec_ms(&true_bin, &[]));
            let node = Node::start("bench-ctl", opts(Transport::Tcp));
            rows[ctl_rt]
                .values
                .push(control_round_trips(&node, sizes.round_trips));
            rows[ctl_rt]
                .base
                .push(unix_round_trips(sizes.round_trips).0);
            let sock = node.socket.display().to_string();
            rows[ctl_exec]
                .values
                .push(exec_ms(&bin("p2pctl"), &["--socket", &sock, "status"]));
            rows[ctl_exec].base.push(exec_ms(&true_bin, &[]));
        }

        if want("bans") {
            let (first, last) = ban_costs(sizes.bans.0, sizes.bans.1);
            rows[ban_last].values.push(last);
            rows[ban_last].base.push(first);
        }
    }
    rows.retain(|r| !r.values.is_empty());
    print_table(&rows, runs);
}
