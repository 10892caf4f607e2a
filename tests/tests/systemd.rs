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
    let _ = notify.expect("WATCHDOG=1", Duration::from_millis(1200));
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
