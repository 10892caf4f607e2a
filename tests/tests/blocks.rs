//! Block exchange: a large block put on one node and fetched by another, and a provider serving
//! corrupted chunks.

use p2pd_e2e::{bin, clean_command, tcp_network, wait_until, Node, NodeOpts, Tmpfs, Transport};
use sha2::Digest;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// p2pctl with a long timeout, for transfers.
fn ctl_slow(node: &Node, args: &[&str]) -> Output {
    clean_command(&bin("p2pctl"), &node.dir)
        .arg("--socket")
        .arg(&node.socket)
        .args(["--timeout", "300s"])
        .args(args)
        .output()
        .expect("run p2pctl")
}

fn noise_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, &data).expect("write file");
    data
}

fn put(node: &Node, file: &Path) -> String {
    let out = ctl_slow(node, &["block", "put", &file.display().to_string()]);
    assert!(
        out.status.success(),
        "block put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `block get HASH -o FILE` on `node`, which must succeed; the bytes it wrote.
fn fetch(node: &Node, hash: &str) -> Vec<u8> {
    let out_path = node.dir.join("fetched.bin");
    let out = ctl_slow(
        node,
        &["block", "get", hash, "-o", &out_path.display().to_string()],
    );
    assert!(
        out.status.success(),
        "block get: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&out_path).expect("fetched")
}

/// `block get HASH` on `node` with standard output on `path`, a file that already holds a
/// header line (so the block must land after it, or be cut back to it).
fn get_after_header(node: &Node, hash: &str, path: &Path) -> Output {
    let mut out = std::fs::File::create(path).expect("output file");
    std::io::Write::write_all(&mut out, b"header\n").expect("header");
    clean_command(&bin("p2pctl"), &node.dir)
        .arg("--socket")
        .arg(&node.socket)
        .args(["--timeout", "300s", "block", "get", hash])
        .stdout(out)
        .output()
        .expect("run p2pctl")
}

/// How the first node of [`tcp_network`] is started again.
fn bootstrap_opts() -> NodeOpts {
    NodeOpts {
        transport: Transport::Tcp,
        is_bootstrap: true,
        ..Default::default()
    }
}

fn disconnect(from: &Node, peer: &Node) {
    let id = peer.peer_id();
    let _ = from.ctl(&["disconnect", &id]);
    assert!(wait_until(Duration::from_secs(5), || !from
        .peers()
        .contains(&id)));
}

#[test]
fn fifty_mib_block_crosses_the_network_intact() {
    let nodes = tcp_network(3);
    let (a, c) = (&nodes[0], &nodes[2]);
    let file = a.dir.join("big.bin");
    let data = noise_file(&file, 50 << 20, 7);
    let hash = put(a, &file);
    assert_eq!(hash, hex(&sha2::Sha256::digest(&data)));

    disconnect(c, a);
    assert!(fetch(c, &hash) == data, "fetched bytes differ");
    let stat = c.ctl_json(&["block", "stat", &hash]);
    assert_eq!(stat["size"], 50 << 20);
    assert_eq!(stat["chunks"], 50);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn corrupt_provider_is_detected_and_nothing_corrupt_is_stored() {
    let mut nodes = tcp_network(3);
    let file = nodes[0].dir.join("small.bin");
    let data = noise_file(&file, (3 << 20) + 123, 11);
    let hash = put(&nodes[0], &file);

    // B fetches an honest copy and becomes a provider; then its copy on disk rots.
    let out = ctl_slow(
        &nodes[1],
        &[
            "block",
            "get",
            &hash,
            "-o",
            &nodes[1].dir.join("b.bin").display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let on_disk = nodes[1].data_dir().join("blocks").join(&hash);
    let mut rotten = std::fs::read(&on_disk).expect("B's copy");
    for b in &mut rotten[(1 << 20) + 10..(1 << 20) + 20] {
        *b ^= 0xff;
    }
    std::fs::write(&on_disk, rotten).expect("corrupt B's copy");

    // Only the corrupt provider is reachable: it refuses to serve its rotten copy (or, were it
    // to, C would refuse the bytes); the fetch fails, clearly, and stores nothing.
    assert!(nodes[0].stop().success());
    let c = &nodes[2];
    let out_path = c.dir.join("fetched.bin");
    let out = ctl_slow(
        c,
        &["block", "get", &hash, "-o", &out_path.display().to_string()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        (err.contains("corrupt on this node") || err.contains("failed verification"))
            && err.contains("nothing was stored"),
        "{err}"
    );
    assert!(!out_path.exists(), "a partial file was left");
    assert_eq!(c.ctl(&["block", "stat", &hash]).status.code(), Some(1));
    let leftovers: Vec<_> = std::fs::read_dir(c.data_dir().join("blocks"))
        .expect("blocks dir")
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "C stored something: {leftovers:?}");

    // The honest provider comes back: the fetch fails over to it and succeeds.
    nodes[0].spawn(&bootstrap_opts());
    let c = &nodes[2];
    let a_id = nodes[0].peer_id();
    assert!(wait_until(Duration::from_secs(10), || nodes[0]
        .peers()
        .contains(&c.peer_id())
        || c.peers().contains(&a_id)));
    let out = ctl_slow(
        c,
        &["block", "get", &hash, "-o", &out_path.display().to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&out_path).expect("fetched") == data);
}

/// `block get` hands out a block while it is fetched only to outputs that can take it back, and
/// takes it back when the whole then fails its hash: a provider whose chunks match its own
/// manifest but not the block's hash (an honest store cannot serve that; this one's files are
/// forged while it is stopped).
#[test]
fn early_block_data_is_taken_back_when_the_whole_fails_its_hash() {
    let mut nodes = tcp_network(2);
    let file = nodes[0].dir.join("block.bin");
    let data = noise_file(&file, (3 << 20) + 123, 5);
    let hash = put(&nodes[0], &file);

    // Early delivery of an honest block: every byte, after what the output already held.
    let out_path = nodes[1].dir.join("out.bin");
    let got = get_after_header(&nodes[1], &hash, &out_path);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let back = std::fs::read(&out_path).expect("output");
    assert!(
        back[..7] == *b"header\n" && back[7..] == data,
        "early output differs"
    );
    // Stored now: asked early, it is read out of the store (and checked) as usual.
    assert!(
        fetch(&nodes[1], &hash) == data,
        "stored block read out differs"
    );

    // A's copy is forged: other bytes of the same length, metadata listing their chunks.
    assert!(nodes[0].stop().success());
    let blocks = nodes[0].data_dir().join("blocks");
    let forged = noise_file(&blocks.join(&hash), data.len(), 6);
    let meta_path = blocks.join(format!("{hash}.json"));
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).expect("metadata")).expect("json");
    meta["chunks"] = forged
        .chunks(1 << 20)
        .map(|c| hex(&sha2::Sha256::digest(c)))
        .collect();
    meta.as_object_mut()
        .expect("object")
        .remove("chunks_blake3");
    std::fs::write(&meta_path, serde_json::to_vec(&meta).expect("json")).expect("forge");
    nodes[0].spawn(&bootstrap_opts());
    let (a, b) = (&nodes[0], &nodes[1]);
    assert!(wait_until(Duration::from_secs(10), || a
        .peers()
        .contains(&b.peer_id())
        || b.peers().contains(&a.peer_id())));
    // B must fetch it again.
    for f in [hash.clone(), format!("{hash}.json")] {
        std::fs::remove_file(b.data_dir().join("blocks").join(f)).expect("remove B's copy");
    }
    assert_eq!(b.ctl(&["block", "stat", &hash]).status.code(), Some(1));

    // The client library: the forged chunks arrive, then the verdict.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut received = Vec::new();
    let verdict = rt.block_on(async {
        let mut client = p2pctl::Client::connect(&b.socket).await.expect("connect");
        client
            .block_get_early(&hash, Some(Duration::from_secs(60)), &mut received)
            .await
    });
    let e = verdict
        .expect_err("a forged block was accepted")
        .to_string();
    assert!(e.contains("nothing was stored"), "{e}");
    assert!(
        received.len() >= 1 << 20 && received == forged[..received.len()],
        "no forged chunk arrived early ({} bytes)",
        received.len()
    );
    assert_nothing_left(b, "after a forged block");

    // p2pctl to a file: cut back to what it held; with -o: no file; to a pipe: nothing at all.
    let got = get_after_header(b, &hash, &out_path);
    let err = String::from_utf8_lossy(&got.stderr);
    assert_eq!(got.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    let held = std::fs::read(&out_path).expect("output");
    assert!(
        held == b"header\n",
        "the output was not cut back: {} bytes",
        held.len()
    );
    // A file written over from its start (`1<>FILE`) cannot be cut back without losing what
    // it held: it gets only checked bytes, so here nothing.
    let kept = b.dir.join("kept.bin");
    std::fs::write(&kept, b"what the file held").expect("file");
    let over = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&kept)
        .expect("open");
    let got = clean_command(&bin("p2pctl"), &b.dir)
        .arg("--socket")
        .arg(&b.socket)
        .args(["--timeout", "300s", "block", "get", &hash])
        .stdout(over)
        .output()
        .expect("run p2pctl");
    assert_eq!(got.status.code(), Some(1));
    assert_eq!(std::fs::read(&kept).expect("file"), b"what the file held");
    let o = b.dir.join("o.bin");
    let got = ctl_slow(b, &["block", "get", &hash, "-o", &o.display().to_string()]);
    assert_eq!(got.status.code(), Some(1));
    assert!(!o.exists() && !o.with_extension("p2pctl-partial").exists());
    let got = ctl_slow(b, &["block", "get", &hash]);
    assert_eq!(got.status.code(), Some(1));
    assert!(got.stdout.is_empty(), "unchecked bytes reached a pipe");
    assert_nothing_left(b, "after forged blocks");
}

/// 16 uploads of the same bytes at once all succeed and leave one block (and no temp file).
#[test]
fn concurrent_identical_uploads_all_succeed_as_one_block() {
    let n = Node::start(
        "n",
        NodeOpts {
            transport: Transport::Tcp,
            ..Default::default()
        },
    );
    let file = n.dir.join("same.bin");
    let data = noise_file(&file, 3 << 20, 16);
    let want = hex(&sha2::Sha256::digest(&data));
    let uploads: Vec<_> = (0..16)
        .map(|_| {
            clean_command(&bin("p2pctl"), &n.dir)
                .arg("--socket")
                .arg(&n.socket)
                .args(["--timeout", "60s", "block", "put"])
                .arg(&file)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn p2pctl")
        })
        .collect();
    for u in uploads {
        let out = u.wait_with_output().expect("p2pctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    }
    let mut names: Vec<String> = std::fs::read_dir(n.data_dir().join("blocks"))
        .expect("blocks dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [want.clone(), format!("{want}.json")], "{names:?}");
}

/// Blocks moved aside on `n`, per `p2p_blocks_quarantined_total`.
fn quarantined(n: &Node) -> f64 {
    let addr = n.status()["metrics_addr"]
        .as_str()
        .expect("metrics")
        .to_string();
    p2pd_e2e::http_get(&addr, "/metrics")
        .body
        .lines()
        .find(|l| l.starts_with("p2p_blocks_quarantined_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// A stored block whose bytes no longer match its hash is never handed out: a flipped byte, a
/// truncated file, metadata with a wrong size or garbage metadata all make `block get` fail
/// clearly and move the block aside; a peer gets the block from another provider.
#[test]
fn corrupt_stored_blocks_are_quarantined_and_never_served() {
    let nodes = tcp_network(3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let file = b.dir.join("data.bin");
    let data = noise_file(&file, 3 << 20, 18);
    let blocks = b.data_dir().join("blocks");
    type Damage = fn(&Path, &Path);
    let damages: [(&str, Damage); 4] = [
        ("flipped byte", |d, _| {
            let mut bytes = std::fs::read(d).expect("data");
            bytes[1 << 20] ^= 0xff;
            std::fs::write(d, bytes).expect("write");
        }),
        ("truncated", |d, _| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d)
                .expect("open");
            f.set_len(3 << 19).expect("truncate");
        }),
        ("wrong size in metadata", |_, m| {
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(m).expect("meta")).expect("json");
            v["size"] = (1u64 << 20).into();
            std::fs::write(m, v.to_string()).expect("write");
        }),
        ("garbage metadata", |_, m| {
            std::fs::write(m, b"{not json").expect("write")
        }),
    ];
    for (i, (what, damage)) in damages.iter().enumerate() {
        let hash = put(b, &file);
        damage(&blocks.join(&hash), &blocks.join(format!("{hash}.json")));
        let out_path = b.dir.join("out.bin");
        let out = b.ctl_within(
            "10s",
            &["block", "get", &hash, "-o", &out_path.display().to_string()],
        );
        assert!(!out.status.success(), "{what}: block get succeeded");
        assert!(!out_path.exists(), "{what}: bytes were written");
        assert!(!blocks.join(&hash).exists(), "{what}: not moved aside");
        assert_eq!(quarantined(b), (i + 1) as f64, "{what}");
    }
    assert!(b.log().contains("moved it aside"));

    // `block verify` checks the whole store on demand.
    let hash = put(b, &file);
    let intact = b.ctl_json(&["block", "verify"]);
    assert_eq!(intact["checked"], 1, "{intact}");
    let mut bytes = std::fs::read(blocks.join(&hash)).expect("data");
    bytes[5] ^= 1;
    std::fs::write(blocks.join(&hash), bytes).expect("write");
    let out = b.ctl(&["block", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&hash) && err.contains("moved aside"), "{err}");
    assert_eq!(quarantined(b), 5.0);
    let gone = b.ctl(&["block", "verify", &hash]);
    assert_eq!(gone.status.code(), Some(1));

    // B holds a corrupt copy, C a good one: A still gets the right bytes.
    let hash = put(b, &file);
    std::fs::write(blocks.join(&hash), vec![0u8; 3 << 20]).expect("corrupt B's copy");
    let c_file = c.dir.join("data.bin");
    std::fs::write(&c_file, &data).expect("write");
    assert_eq!(put(c, &c_file), hash);
    assert!(fetch(a, &hash) == data, "wrong bytes");
}

/// A provider record outlives its node: a fetch takes the chunks from the providers it is
/// connected to and never waits on a dial to one that went away (on the internet, up to the
/// handshake timeout per dead record, with the in-order stream stalled behind it).
#[test]
fn dead_provider_records_do_not_stall_a_fetch() {
    let mut nodes = tcp_network(3);
    let file = nodes[0].dir.join("eight.bin");
    let data = noise_file(&file, 8 << 20, 5);
    let hash = put(&nodes[0], &file);
    // B fetches, so it announces itself as a provider too (in the background: its `get`
    // answers at once); once the DHT took the record, B goes away.
    assert!(fetch(&nodes[1], &hash) == data);
    let c_id = nodes[2].peer_id();
    let b_id = nodes[1].peer_id();
    assert!(
        wait_until(Duration::from_secs(10), || nodes[1]
            .log()
            .contains("announced a fetched block")),
        "B never announced the block:\n{}",
        nodes[1].log()
    );
    assert!(nodes[1].stop().success());
    assert!(wait_until(Duration::from_secs(5), || !nodes[2]
        .peers()
        .contains(&b_id)));

    let c = &nodes[2];
    assert!(fetch(c, &hash) == data, "fetched bytes differ");
    let log = c.log();
    assert!(
        !log.contains("block provider failed"),
        "C asked the dead provider {b_id} (C is {c_id}):\n{log}"
    );
}

/// Names in `n`'s block directory (blocks, metadata and uploads in progress).
fn block_files(n: &Node) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(n.data_dir().join("blocks"))
        .expect("blocks dir")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Waits until `n`'s block directory is empty again (`what` left something otherwise).
fn assert_nothing_left(n: &Node, what: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || block_files(n).is_empty()),
        "{what} left {:?}",
        block_files(n)
    );
}

/// The message of the one error answer to request `id` among `answers`.
fn error_answer(answers: &[p2pd_proto::control::Response], id: u64) -> String {
    let to_id: Vec<_> = answers.iter().filter(|r| r.id == id).collect();
    assert_eq!(to_id.len(), 1, "one answer to request {id}: {answers:?}");
    match &to_id[0].kind {
        Some(p2pd_proto::control::response::Kind::Error(e)) => e.message.clone(),
        other => panic!("request {id} was answered {other:?}"),
    }
}

/// An upload that breaks off — the client gone after some parts, or another request in the
/// middle of it — stores nothing and leaves no temp file, and the daemon goes on serving. An
/// interrupted upload is answered once, and its connection closed: the frames that follow are
/// no longer known to be requests.
#[test]
fn an_upload_that_breaks_off_stores_nothing() {
    use std::io::{Read, Write};
    let n = Node::start("n", NodeOpts::default());
    let hello = hello_frame("broken-upload");
    let part = |id: u64, byte: u8| put_part(id, byte, false);
    // Three parts, then the client is gone.
    let mut s = std::os::unix::net::UnixStream::connect(&n.socket).expect("connect");
    s.write_all(&[hello.clone(), part(1, 1), part(1, 2), part(1, 3)].concat())
        .expect("write");
    assert!(
        wait_until(Duration::from_secs(10), || block_files(&n)
            .iter()
            .any(|f| f.starts_with(".upload-"))),
        "the upload never started: {:?}",
        block_files(&n)
    );
    drop(s);
    assert_nothing_left(&n, "a broken-off upload");
    // Two parts, then another request: the upload is refused, nothing is stored, and the
    // daemon closes the connection (the client keeps its end open: only the daemon ends it).
    let mut s = std::os::unix::net::UnixStream::connect(&n.socket).expect("connect");
    let status = status_frame(2);
    s.write_all(&[hello, part(1, 4), part(1, 5), status].concat())
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut answer = Vec::new();
    let end = s.read_to_end(&mut answer);
    assert!(end.is_ok(), "the connection stayed open: {end:?}");
    let answers = responses(&answer);
    assert_eq!(answers.len(), 1, "{answers:?}");
    let e = error_answer(&answers, 1);
    assert!(
        e.contains("upload interrupted by another frame") && e.contains("the connection closes"),
        "{e}"
    );
    assert_nothing_left(&n, "an interrupted upload");
    assert!(n.ctl(&["status"]).status.success());
}

fn client_frame(f: p2pd_proto::control::client_frame::Frame) -> Vec<u8> {
    p2pd_proto::frame::encode_frame(&p2pd_proto::control::ClientFrame { frame: Some(f) })
}

fn hello_frame(agent: &str) -> Vec<u8> {
    client_frame(p2pd_proto::control::client_frame::Frame::Hello(
        p2pd_proto::control::Hello {
            protocol_version: p2pd_proto::PROTOCOL_VERSION,
            agent: agent.into(),
            peer_id: String::new(),
        },
    ))
}

fn request_frame(id: u64, kind: p2pd_proto::control::request::Kind) -> Vec<u8> {
    client_frame(p2pd_proto::control::client_frame::Frame::Request(
        p2pd_proto::control::Request {
            id,
            kind: Some(kind),
        },
    ))
}

/// One 1 MiB part of upload `id`, every byte `byte`.
fn put_part(id: u64, byte: u8, last: bool) -> Vec<u8> {
    request_frame(
        id,
        p2pd_proto::control::request::Kind::BlockPut(p2pd_proto::control::BlockPutRequest {
            data: vec![byte; 1 << 20].into(),
            last,
            ttl_secs: 0,
        }),
    )
}

fn status_frame(id: u64) -> Vec<u8> {
    request_frame(
        id,
        p2pd_proto::control::request::Kind::Status(Default::default()),
    )
}

/// The responses in `bytes` (frames as the daemon writes them), in order.
fn responses(mut bytes: &[u8]) -> Vec<p2pd_proto::control::Response> {
    use prost::Message;
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = prost::encoding::decode_varint(&mut bytes).expect("length prefix") as usize;
        let frame = p2pd_proto::control::ServerFrame::decode(&bytes[..len]).expect("frame");
        bytes = &bytes[len..];
        if let Some(p2pd_proto::control::server_frame::Frame::Response(r)) = frame.frame {
            out.push(r);
        }
    }
    out
}

/// A node whose data directory is a tmpfs of `size`; `None` (the test is skipped) where
/// mounting one needs root the test does not have.
fn node_on_a_small_disk(size: &str) -> Option<(Node, Tmpfs)> {
    let mut n = Node::start("n", NodeOpts::default());
    assert!(n.stop().success());
    let Some(disk) = Tmpfs::mount(&n.data_dir(), size) else {
        eprintln!("skipped: mounting a small tmpfs needs root (scripts/test.sh runs as root)");
        return None;
    };
    n.spawn(&NodeOpts::default());
    Some((n, disk))
}

/// A client that goes on sending after the disk filled, past what any block may hold: the
/// daemon reads no more than a block's worth in all, answers once (the disk is full, and the
/// upload went on past the limit) and closes the connection; nothing is left behind.
#[test]
fn an_upload_sent_on_past_the_size_limit_is_cut_off() {
    use std::io::{Read, Write};
    let Some((n, _disk)) = node_on_a_small_disk("6m") else {
        return;
    };
    let mut s = std::os::unix::net::UnixStream::connect(&n.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    // A block's worth and eight parts more, never the last: written from a thread, which stops
    // at the first refused write (the daemon closed the connection).
    let mut w = s.try_clone().expect("clone");
    let part = put_part(1, 7, false);
    let sender = std::thread::spawn(move || {
        w.write_all(&hello_frame("endless-upload"))?;
        for _ in 0..(1 << 10) + 8 {
            w.write_all(&part)?;
        }
        Ok::<(), std::io::Error>(())
    });
    let mut answer = Vec::new();
    // Closed with the client's parts still unread: a reset, after the answer.
    let end = s.read_to_end(&mut answer);
    assert!(
        end.as_ref().map_or_else(
            |e| e.kind() == std::io::ErrorKind::ConnectionReset,
            |_| true
        ),
        "the connection stayed open: {end:?}"
    );
    assert!(
        sender.join().expect("sender").is_err(),
        "the daemon read the whole endless upload"
    );
    let answers = responses(&answer);
    assert_eq!(answers.len(), 1, "{answers:?}");
    let e = error_answer(&answers, 1);
    assert!(
        e.contains("No space left")
            && e.contains("past the block size limit")
            && e.contains("the connection closes"),
        "{e}"
    );
    assert_nothing_left(&n, "an endless upload");
    assert!(n.ctl(&["status"]).status.success());
}

/// A disk that fills up during an upload: the client gets one error that says so, the rest of
/// the upload it had already sent is read and dropped (never taken for new requests), nothing
/// is left in the store, and the same connection goes on answering.
#[test]
fn an_upload_that_fills_the_disk_fails_once_and_stores_nothing() {
    use p2pd_proto::control::response::Kind;
    use std::io::{Read, Write};
    let Some((n, _disk)) = node_on_a_small_disk("6m") else {
        return;
    };
    // Twelve parts of 1 MiB on a 6 MiB disk, then another request on the same connection.
    let mut frames = vec![hello_frame("full-disk-upload")];
    frames.extend((0..12u8).map(|i| put_part(1, i, i == 11)));
    frames.push(status_frame(2));
    let mut s = std::os::unix::net::UnixStream::connect(&n.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(&frames.concat()).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answers = responses(&answer);
    let e = error_answer(&answers, 1);
    assert!(
        e.contains("No space left") && e.contains("disk full"),
        "{e}"
    );
    assert!(
        answers
            .iter()
            .any(|r| r.id == 2 && matches!(r.kind, Some(Kind::Status(_)))),
        "the request after the upload was not answered: {answers:?}"
    );
    assert_nothing_left(&n, "an upload onto a full disk");
    assert!(n.ctl(&["status"]).status.success());
}
