//! Stream forwarding: an echo service behind a registered protocol answers through
//! `p2pctl stream open` on another node.

use p2pd_e2e::{bin, clean_command, tcp_network, wait_until, Node};

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::time::Duration;

/// An application on A's host: echoes each connection's bytes back with a prefix.
fn echo_service(path: &std::path::Path) {
    let listener = UnixListener::bind(path).expect("bind echo socket");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            std::thread::spawn(move || {
                let mut input = Vec::new();
                if conn.read_to_end(&mut input).is_ok() {
                    let _ = conn.write_all(b"echo: ");
                    let _ = conn.write_all(&input);
                }
            });
        }
    });
}

fn open(node: &Node, peer: &str, protocol: &str, input: &[u8]) -> std::process::Output {
    let mut child = clean_command(&bin("p2pctl"), &node.dir)
        .arg("--socket")
        .arg(&node.socket)
        .args(["--timeout", "20s", "stream", "open", peer, protocol])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn p2pctl");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    // Collect the output on a thread so a full pipe never blocks the child.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.expect("output"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("stream open hung");
        }
    }
}

#[test]
fn echo_service_answers_through_a_forwarded_stream() {
    let nodes = tcp_network(2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let sock = a.dir.join("echo.sock");
    echo_service(&sock);
    let proto = "/test/echo/1.0.0";
    let out = a.ctl(&["stream", "serve", proto, &sock.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ls = a.ctl_json(&["stream", "ls"]);
    assert!(ls.to_string().contains(proto), "{ls}");

    let a_id = a.peer_id();
    assert!(wait_until(Duration::from_secs(10), || b
        .peers()
        .contains(&a_id)));
    let out = open(b, &a_id, proto, b"hello stream\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo: hello stream\n");

    // A larger payload, both ways.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let out = open(b, &a_id, proto, &big);
    assert!(out.status.success());
    assert_eq!(&out.stdout[..6], b"echo: ");
    assert!(out.stdout[6..] == big[..], "payload changed in transit");

    let stats = a.ctl_json(&["stream", "ls"]);
    assert_eq!(stats["handlers"][0]["total_streams"], 2, "{stats}");

    // Reserved protocols stay the daemon's.
    let reserved = a.ctl(&[
        "stream",
        "serve",
        "/ipfs/kad/1.0.0",
        &sock.display().to_string(),
    ]);
    assert_eq!(reserved.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&reserved.stderr).contains("reserved"));

    // Removed: the protocol is no longer offered.
    assert!(a.ctl(&["stream", "rm", proto]).status.success());
    let out = open(b, &a_id, proto, b"anyone?\n");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not support"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A forwarded stream on which nothing moves is closed after limits.stream_idle_timeout.
#[test]
fn idle_forwarded_streams_are_closed() {
    use p2pd_e2e::{NodeOpts, Reaper, Transport};
    let a = Node::start(
        "a",
        NodeOpts {
            transport: Transport::Tcp,
            env: vec![("P2P_LIMITS__STREAM_IDLE_TIMEOUT".into(), "1s".into())],
            ..Default::default()
        },
    );
    let b = Node::start(
        "b",
        NodeOpts {
            transport: Transport::Tcp,
            ..Default::default()
        },
    );
    // An application that accepts and then never says anything nor closes.
    let sock = a.dir.join("silent.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let proto = "/test/silent/1.0.0";
    assert!(a
        .ctl(&["stream", "serve", proto, &sock.display().to_string()])
        .status
        .success());
    let a_id = a.peer_id();
    assert!(b
        .ctl(&["connect", &a.multiaddr(Transport::Tcp)])
        .status
        .success());
    // stdin stays open and silent too: only the idle timeout can end this.
    let mut child = Reaper(
        clean_command(&bin("p2pctl"), &b.dir)
            .arg("--socket")
            .arg(&b.socket)
            .args(["stream", "open", &a_id, proto])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let ended = wait_until(Duration::from_secs(15), || {
        matches!(child.0.try_wait(), Ok(Some(_)))
    });
    assert!(ended, "the idle stream was never closed");
}
