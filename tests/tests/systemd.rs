//! The service manager contract, against a real notify socket: READY, STATUS, WATCHDOG,
//! STOPPING, RELOADING, as systemd would see them.

use p2pd_e2e::{bin, clean_command, Node, NodeOpts, NotifySocket, Reaper};
use std::time::Duration;

fn env(notify: &NotifySocket, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![(
        "NOTIFY_SOCKET".to_string(),
        notify.path.display().to_string(),
    )];
    v.extend(
        extra
            .iter()
            .map(|(k, val)| (k.to_string(), val.to_string())),
    );
    v
}

#[test]
fn ready_comes_from_the_daemon_once_the_control_socket_accepts() {
    let notify = NotifySocket::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("control.sock");
    let child = Reaper(
        clean_command(&bin("p2pd"), dir.path())
            .env("NOTIFY_SOCKET", &notify.path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--control-socket")
            .arg(&socket)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn p2pd"),
    );
    let (msg, pid, _) = notify
        .expect("READY=1", Duration::from_secs(20))
        .expect("no READY=1");
    // At READY the control socket already accepts.
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "READY before the control socket accepts"
    );
    assert_eq!(
        pid,
        Some(child.0.id() as i32),
        "READY=1 from another process"
    );
    assert!(
        msg.contains("STATUS=") && msg.contains("listening on"),
        "{msg}"
    );
}

#[test]
fn watchdog_pings_at_half_the_interval_from_the_event_loop() {
    let notify = NotifySocket::new();
    let stall = tempfile::tempdir().expect("tempdir").keep().join("stall");
    let node = Node::start(
        "watched",
        NodeOpts {
            env: env(
                &notify,
                &[
                    ("WATCHDOG_USEC", "1000000"),
                    ("P2PD_DEBUG_STALL_FILE", &stall.display().to_string()),
                ],
            ),
            ..Default::default()
        },
    );
    let mut last = notify
        .expect("WATCHDOG=1", Duration::from_secs(5))
        .expect("no WATCHDOG=1")
        .2;
    for _ in 0..4 {
        let (_, pid, at) = notify
            .expect("WATCHDOG=1", Duration::from_secs(2))
            .expect("watchdog stopped");
        assert_eq!(pid, Some(node.pid() as i32));
        let gap = at - last;
        assert!(
            gap >= Duration::from_millis(400) && gap <= Duration::from_millis(600),
            "WATCHDOG=1 after {gap:?}; expected 0.4 to 0.6 of WATCHDOG_USEC"
        );
        last = at;
    }
    // A stalled event loop sends no more pings.
    std::fs::write(&stall, b"").expect("stall");
    // The loop stalls at its next one-second tick; the pings sent before that are drained
    // (a healthy loop never leaves a gap of 1.2 s between pings, so silence means stalled).
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while notify
        .expect("WATCHDOG=1", Duration::from_millis(1200))
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "pings never stopped after the loop was told to stall"
        );
    }
    assert!(
        notify
            .expect("WATCHDOG=1", Duration::from_secs(2))
            .is_none(),
        "pings went on while the loop was stalled"
    );
    std::fs::remove_file(&stall).expect("unstall");
    assert!(
        notify
            .expect("WATCHDOG=1", Duration::from_secs(3))
            .is_some(),
        "pings did not resume"
    );
}

#[test]
fn no_watchdog_pings_for_another_process() {
    let notify = NotifySocket::new();
    let _node = Node::start(
        "not-watched",
        NodeOpts {
            env: env(
                &notify,
                &[("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")],
            ),
            ..Default::default()
        },
    );
    assert!(notify.expect("READY=1", Duration::from_secs(5)).is_some());
    assert!(
        notify
            .expect("WATCHDOG=1", Duration::from_secs(1))
            .is_none(),
        "pinged for WATCHDOG_PID=1"
    );
}

#[test]
fn sigterm_sends_stopping_exits_zero_and_rewrites_the_routing_table() {
    let notify = NotifySocket::new();
    let mut node = Node::start(
        "stopping",
        NodeOpts {
            env: env(&notify, &[]),
            ..Default::default()
        },
    );
    let table = node.data_dir().join("routing_table.json");
    let _ = std::fs::remove_file(&table);
    let status = node.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        notify
            .expect("STOPPING=1", Duration::from_secs(1))
            .is_some(),
        "no STOPPING=1"
    );
    assert!(table.exists(), "routing table not written at shutdown");
}

#[test]
fn sighup_reloads_the_file_and_refuses_an_invalid_one() {
    let notify = NotifySocket::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p2pd.toml");
    std::fs::write(&file, "[limits]\nmax_inbound = 100\n").expect("write config");
    let node = Node::start(
        "reloading",
        NodeOpts {
            env: env(&notify, &[]),
            args: vec!["--config".into(), file.display().to_string()],
            ..Default::default()
        },
    );
    assert!(notify.expect("READY=1", Duration::from_secs(5)).is_some());
    let max_inbound = |n: &Node| {
        let l = n.ctl_json(&["limits"]);
        l["limits"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "max_inbound"))
            .map(|x| x["value"].clone())
    };
    assert_eq!(max_inbound(&node), Some("100".into()));

    std::fs::write(&file, "[limits]\nmax_inbound = 55\n").expect("write config");
    let hup = |n: &Node| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(n.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP")
    };
    hup(&node);
    let (msg, _, _) = notify
        .expect("RELOADING=1", Duration::from_secs(5))
        .expect("no RELOADING=1");
    assert!(msg.contains("MONOTONIC_USEC="), "{msg}");
    assert!(
        notify.expect("READY=1", Duration::from_secs(5)).is_some(),
        "no READY=1 after the reload"
    );
    assert_eq!(max_inbound(&node), Some("55".into()));
    // STATUS= goes back to the peers/listen summary after the reload's own message.
    let (status, _, _) = notify
        .expect("STATUS=0 peers", Duration::from_secs(5))
        .expect("the STATUS summary did not come back after the reload");
    assert!(status.contains("listening on"), "{status}");

    // An invalid file is refused: the old value stays and the daemon keeps serving.
    std::fs::write(&file, "[limits]\nmax_inbound = 0\n").expect("write config");
    hup(&node);
    assert!(notify
        .expect("RELOADING=1", Duration::from_secs(5))
        .is_some());
    assert!(notify.expect("READY=1", Duration::from_secs(5)).is_some());
    assert_eq!(max_inbound(&node), Some("55".into()));
    let refused = node.ctl(&["reload"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("limits.max_inbound") && err.contains("line 2"),
        "{err}"
    );
    assert!(
        node.log().contains("reload refused"),
        "the refusal is not in the log"
    );

    // A runtime change is undone by a reload that succeeds.
    std::fs::write(&file, "[limits]\nmax_inbound = 55\n").expect("write config");
    assert!(node
        .ctl(&["limits", "set", "max_inbound", "7"])
        .status
        .success());
    let ok = node.ctl(&["reload"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(max_inbound(&node), Some("55".into()));
}

#[test]
fn log_level_changes_at_runtime_and_json_logs_carry_structured_fields() {
    let a = Node::start(
        "json",
        NodeOpts {
            args: vec!["--log-format".into(), "json".into()],
            env: vec![("RUST_LOG".into(), "warn".into())],
            ..Default::default()
        },
    );
    assert!(a.ctl(&["log-level", "info,p2pd=debug"]).status.success());
    assert_eq!(
        a.ctl(&["log-level", "not a [filter"]).status.code(),
        Some(1)
    );
    let b = Node::start("peer", NodeOpts::default());
    assert!(a
        .ctl(&["connect", &b.multiaddr(p2pd_e2e::Transport::Tcp)])
        .status
        .success());
    let lines: Vec<serde_json::Value> = a
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "no JSON log lines: {}", a.log());
    let conn = lines
        .iter()
        .find(|l| l["event"] == "connection_established")
        .expect("a connection event");
    for key in ["peer_id", "remote_addr", "direction"] {
        assert!(conn.get(key).is_some(), "{key} missing: {conn}");
    }
    let audit = lines
        .iter()
        .find(|l| l["event"] == "control_request" && l["request"] == "connect")
        .expect("an audit line");
    assert!(
        audit.get("caller_uid").is_some() && audit.get("caller_pid").is_some(),
        "{audit}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "identified" && l.get("protocol").is_some()),
        "no protocol field"
    );
}

/// Socket activation: the control socket comes from the service manager as fd 3.
#[test]
fn control_socket_can_be_passed_by_the_service_manager() {
    use command_fds::{CommandFdExt, FdMapping};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let mut cmd = clean_command(&bin("p2pd"), dir.path());
    cmd.env("LISTEN_FDS", "1")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        // A different path: p2pd must use the passed socket, not bind this one.
        .arg("--control-socket")
        .arg(dir.path().join("unused.sock"))
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::null());
    // The listener becomes the child's fd 3, as systemd passes it.
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: listener.into(),
        child_fd: 3,
    }])
    .expect("fd 3 for the child");
    let _child = Reaper(cmd.spawn().expect("spawn p2pd"));
    let ok = p2pd_e2e::wait_until(Duration::from_secs(20), || {
        clean_command(&bin("p2pctl"), dir.path())
            .arg("--socket")
            .arg(&path)
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(ok, "p2pd did not serve the passed socket");
    assert!(
        !dir.path().join("unused.sock").exists(),
        "p2pd bound its own socket too"
    );
}

/// A passed descriptor that is not a listening Unix socket stops the start with a clear error.
#[test]
fn a_passed_fd_that_is_not_a_socket_is_refused() {
    use command_fds::{CommandFdExt, FdMapping};
    let dir = tempfile::tempdir().expect("tempdir");
    let file = std::fs::File::create(dir.path().join("not-a-socket")).expect("file");
    let mut cmd = clean_command(&bin("p2pd"), dir.path());
    cmd.env("LISTEN_FDS", "1")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--metrics-addr", "127.0.0.1:0"]);
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: file.into(),
        child_fd: 3,
    }])
    .expect("fd 3 for the child");
    let out = cmd.output().expect("run p2pd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("fd 3") && err.contains("not a listening Unix socket"),
        "{err}"
    );
}

/// The packaged split: p2pd in a private user namespace (where every other uid reads as 65534)
/// gets control connections from `p2pd gate`, which accepts outside it and hands each one over
/// with the caller's real uid. A ban made through the gate names the real uid; one made on a
/// socket the namespaced daemon accepts itself shows what the gate is for. Needs root
/// (`unshare --user`, `setpriv`), like the network lab.
#[test]
fn the_gate_hands_over_connections_with_the_callers_real_uid() {
    use command_fds::{CommandFdExt, FdMapping};
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
    use std::os::unix::fs::PermissionsExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it runs p2pd in a user namespace and p2pctl as another uid"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    open(dir.path(), 0o755);
    let gate_path = dir.path().join("control.sock");
    let direct_path = dir.path().join("direct.sock");
    let handoff_path = dir.path().join("handoff.sock");
    let gate_listener = std::os::unix::net::UnixListener::bind(&gate_path).expect("bind");
    let direct_listener = std::os::unix::net::UnixListener::bind(&direct_path).expect("bind");
    open(&gate_path, 0o666);
    open(&direct_path, 0o666);
    let handoff = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&handoff),
        &nix::sys::socket::UnixAddr::new(&handoff_path).expect("addr"),
    )
    .expect("bind hand-over");
    listen(&handoff, Backlog::new(16).expect("backlog")).expect("listen");

    // The daemon: hand-over socket (fd 3) and a control socket of its own (fd 4), in a user
    // namespace that maps only root, as PrivateUsers= does for all but root and its own user.
    let mut daemon = clean_command(std::path::Path::new("unshare"), dir.path());
    daemon
        .args(["--user", "--map-root-user", "--"])
        .arg(bin("p2pd"))
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "handoff:control")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--control-socket")
        .arg(dir.path().join("unused.sock"))
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stderr(std::process::Stdio::null());
    daemon
        .fd_mappings(vec![
            FdMapping {
                parent_fd: handoff,
                child_fd: 3,
            },
            FdMapping {
                parent_fd: direct_listener.into(),
                child_fd: 4,
            },
        ])
        .expect("fds for the daemon");
    let _daemon = Reaper(daemon.spawn().expect("spawn p2pd"));
    let mut gate = clean_command(&bin("p2pd"), dir.path());
    gate.env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "control")
        .arg("gate")
        .arg("--handoff")
        .arg(&handoff_path)
        .stderr(std::process::Stdio::null());
    gate.fd_mappings(vec![FdMapping {
        parent_fd: gate_listener.into(),
        child_fd: 3,
    }])
    .expect("fd 3 for the gate");
    let _gate = Reaper(gate.spawn().expect("spawn p2pd gate"));

    let ctl_as = |uid: &str, socket: &std::path::Path, args: &[&str]| {
        let mut c = clean_command(std::path::Path::new("setpriv"), dir.path());
        c.args(["--reuid", uid, "--regid", uid, "--clear-groups", "--"])
            .arg(bin("p2pctl"))
            .arg("--socket")
            .arg(socket)
            .args(args);
        c.output().expect("run p2pctl")
    };
    let up = p2pd_e2e::wait_until(Duration::from_secs(20), || {
        ctl_as("4242", &gate_path, &["status"]).status.success()
    });
    assert!(up, "no answer through the gate");
    let banned = ctl_as("4242", &gate_path, &["ban", "192.0.2.71"]);
    assert!(banned.status.success(), "{banned:?}");
    let banned = ctl_as("4243", &direct_path, &["ban", "192.0.2.72"]);
    assert!(banned.status.success(), "{banned:?}");
    let list = ctl_as("0", &gate_path, &["bans"]);
    let text = String::from_utf8_lossy(&list.stdout);
    let by = |target: &str| {
        text.lines()
            .find(|l| l.contains(target))
            .unwrap_or_else(|| panic!("{target} not in {text}"))
            .to_string()
    };
    assert!(by("192.0.2.71").contains("uid 4242"), "{text}");
    // What the namespace does to a caller that the daemon accepts itself.
    assert!(by("192.0.2.72").contains("uid 65534"), "{text}");
}
