//! The control socket under hostile and unauthorised clients.

use p2pd_e2e::{bin, clean_command, Node, NodeOpts};
use p2pd_proto::control::{client_frame, ClientFrame, Hello};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn hello_frame() -> Vec<u8> {
    p2pd_proto::frame::encode_frame(&ClientFrame {
        frame: Some(client_frame::Frame::Hello(Hello {
            protocol_version: p2pd_proto::PROTOCOL_VERSION,
            agent: "fuzz".into(),
            peer_id: String::new(),
        })),
    })
}

/// One hostile exchange: write `bytes`, half-close, and read until the daemon closes.
fn hostile(socket: &std::path::Path, bytes: &[u8]) {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The daemon may close before it has read everything; that is fine.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let r = s.read_to_end(&mut sink);
    assert!(
        !matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "daemon neither answered nor closed within 5 s"
    );
}

#[test]
fn hostile_frames_do_not_hurt_the_daemon() {
    let node = Node::start("fuzz", NodeOpts::default());
    assert!(node.ctl(&["status"]).status.success());
    let rss_before = node.rss_kib();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let big = (p2pd_proto::MAX_FRAME_BYTES as u64) + 1;
    for i in 0..1000 {
        let len = (noise.next() % 512) as usize;
        let body = noise.bytes(len);
        let frame = match i % 5 {
            // Random bytes instead of a hello.
            0 => body,
            // A hello, then a random body in a well-formed frame.
            1 => [hello_frame(), varint(len as u64), body].concat(),
            // A hello, then a frame that ends early.
            2 => [hello_frame(), varint(len as u64 + 100), body].concat(),
            // A frame that claims more than the cap.
            3 => [varint(big + noise.next() % (1 << 30)), body].concat(),
            // A hello, then an oversized frame.
            _ => [hello_frame(), varint(big), body].concat(),
        };
        hostile(&node.socket, &frame);
    }
    let started = Instant::now();
    let out = node.ctl(&["status"]);
    assert!(
        out.status.success(),
        "status after fuzzing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "status answered in {:?} after 1000 hostile frames",
        started.elapsed()
    );
    let rss_after = node.rss_kib();
    println!("RSS before {rss_before} KiB, after {rss_after} KiB");
    assert!(
        rss_after < rss_before + 5 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn unknown_request_and_bad_version_get_errors() {
    let node = Node::start("proto", NodeOpts::default());
    // A request whose kind this daemon does not know (field 999).
    let mut req = Vec::new();
    req.extend([0x08, 0x07]); // Request.id = 7
    req.extend([0xba, 0x3e, 0x00]); // field 999, length-delimited, empty
    let mut frame = vec![0x12];
    frame.extend(varint(req.len() as u64));
    frame.extend(req);
    let mut s = UnixStream::connect(&node.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(&[hello_frame(), varint(frame.len() as u64), frame].concat())
        .expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("unknown request kind"), "{text:?}");

    let mut s = UnixStream::connect(&node.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let hello = p2pd_proto::frame::encode_frame(&ClientFrame {
        frame: Some(client_frame::Frame::Hello(Hello {
            protocol_version: 99,
            agent: "future".into(),
            peer_id: String::new(),
        })),
    });
    s.write_all(&hello).expect("write");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("version 99 is not supported"), "{text:?}");
}

#[test]
fn unreachable_socket_exits_3_and_names_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("nothing-here.sock");
    let out = clean_command(&bin("p2pctl"), tmp.path())
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&sock.display().to_string()) && err.contains("running"),
        "{err}"
    );
}

/// Run as an unprivileged user outside the socket's group, p2pctl exits 3 and says how to get
/// access. Needs root to switch users; skipped otherwise.
#[test]
fn unprivileged_user_outside_the_group_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run p2pctl as another user");
        return;
    }
    let node = Node::start("access", NodeOpts::default());
    // Make the path traversable so the refusal comes from the socket's own mode.
    std::fs::set_permissions(&node.dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mode = std::fs::metadata(&node.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "control socket mode");
    let tool_dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tool_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let tool = tool_dir.path().join("p2pctl");
    std::fs::copy(bin("p2pctl"), &tool).expect("copy p2pctl");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    use std::os::unix::process::CommandExt;
    let out = clean_command(&tool, tool_dir.path())
        .uid(65534)
        .gid(65534)
        .arg("--socket")
        .arg(&node.socket)
        .arg("status")
        .output()
        .expect("run p2pctl as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {err}");
    assert!(err.contains(&node.socket.display().to_string()), "{err}");
    assert!(err.contains("group p2pd"), "{err}");
    // Root still gets in.
    assert!(node.ctl(&["status"]).status.success());
}

/// The read-only socket beside the control socket answers queries and refuses every change,
/// with a message that names the socket to use instead; nothing it refuses takes effect.
#[test]
fn read_only_socket_answers_queries_and_refuses_changes() {
    let node = Node::start("readonly", NodeOpts::default());
    let query = p2pd_proto::paths::query_socket_for(&node.socket);
    let mode = std::fs::metadata(&query)
        .expect("the read-only socket exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "read-only socket mode");
    let ro = |args: &[&str]| {
        clean_command(&bin("p2pctl"), &node.dir)
            .arg("--socket")
            .arg(&query)
            .args(args)
            .output()
            .expect("run p2pctl")
    };
    for q in [
        &["status"][..],
        &["peers"],
        &["limits"],
        &["bans"],
        &["trust", "ls"],
        &["pubsub", "topics"],
    ] {
        let out = ro(q);
        assert!(
            out.status.success(),
            "{q:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for change in [
        &["ban", "192.0.2.7"][..],
        &["limits", "set", "max_inbound", "5"],
        &["reload"],
        &["log-level", "debug"],
        &["pubsub", "pub", "t", "x"],
        &[
            "trust",
            "add",
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        ],
    ] {
        let out = ro(change);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{change:?}: {err}");
        assert!(err.contains("read-only"), "{change:?}: {err}");
    }
    let bans = node.ctl_json(&["bans"]).to_string();
    assert!(!bans.contains("192.0.2.7"), "{bans}");
    let limits = node.ctl_json(&["limits"]);
    let max_inbound = limits["limits"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["name"] == "max_inbound"))
        .map(|l| l["value"].clone());
    assert_eq!(max_inbound, Some("1024".into()), "{limits}");
}
