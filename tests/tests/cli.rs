//! `p2pd keygen`, `p2pd health` and `p2pd --version`.

use p2pd_e2e::{bin, clean_command, Node, NodeOpts};
use std::os::unix::fs::PermissionsExt;

#[test]
fn keygen_creates_a_private_key_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("id.key");
    let run = || {
        clean_command(&bin("p2pd"), tmp.path())
            .arg("keygen")
            .arg("--out")
            .arg(&key)
            .output()
            .expect("run")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let peer_id = String::from_utf8_lossy(&first.stdout).trim().to_string();
    assert!(peer_id.starts_with("12D3KooW"), "{peer_id}");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).expect("read");
    let second = run();
    assert_eq!(
        second.status.code(),
        Some(1),
        "an existing key must not be overwritten"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read(&key).expect("read"), before);
}

#[test]
fn a_generated_key_becomes_the_node_identity() {
    let mut node = Node::start("keyed", NodeOpts::default());
    let old = node.peer_id();
    assert!(node.stop().success());
    std::fs::remove_file(node.data_dir().join("identity.key")).expect("remove key");
    let out = clean_command(&bin("p2pd"), &node.dir)
        .args(["keygen", "--data-dir"])
        .arg(node.data_dir())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_ne!(expected, old);
    node.spawn(&NodeOpts::default());
    assert_eq!(node.peer_id(), expected);
}

#[test]
fn health_command_follows_readiness() {
    let node = Node::start("health", NodeOpts::default());
    let metrics = node.status()["metrics_addr"]
        .as_str()
        .expect("metrics")
        .to_string();
    let health = |url: String| {
        clean_command(&bin("p2pd"), &node.dir)
            .args(["health", "--url", &url])
            .output()
            .expect("run")
    };
    assert!(health(format!("http://{metrics}/health/ready"))
        .status
        .success());
    let missing = health(format!("http://{metrics}/nope"));
    assert_eq!(missing.status.code(), Some(1));
    let version = clean_command(&bin("p2pd"), &node.dir)
        .arg("--version")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// `p2pctl --json status | true`: a reader that went away is not a crash.
#[test]
fn p2pctl_survives_a_closed_pipe() {
    let n = Node::start("n", NodeOpts::default());
    for args in [&["--json", "status"][..], &["limits"][..]] {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        drop(read);
        let out = clean_command(&bin("p2pctl"), &n.dir)
            .arg("--socket")
            .arg(&n.socket)
            .args(args)
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run p2pctl");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// A ban target that is no peer id, IP or CIDR is a usage error (exit 2), found before the
/// daemon is asked; valid ones reach the daemon.
#[test]
fn malformed_ban_target_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctl = |args: &[&str]| {
        clean_command(&bin("p2pctl"), tmp.path())
            .arg("--socket")
            .arg(tmp.path().join("absent.sock"))
            .args(args)
            .output()
            .expect("run p2pctl")
    };
    for bad in ["not-a-peer", "300.1.1.1", "10.0.0.0/33", "::1/129"] {
        for cmd in ["ban", "unban"] {
            let out = ctl(&[cmd, bad]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {bad}: {err}");
            assert!(err.contains("peer id"), "{err}");
        }
    }
    // Well-formed targets get as far as the (absent) daemon: exit 3.
    for good in [
        "192.0.2.7",
        "10.0.0.0/8",
        "2001:db8::/32",
        "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    ] {
        assert_eq!(ctl(&["ban", good]).status.code(), Some(3), "{good}");
    }
}
