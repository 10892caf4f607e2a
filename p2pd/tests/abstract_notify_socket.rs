//! Why `sd.rs` keeps a fallback beside the `sd-notify` crate: the crate connects to
//! `$NOTIFY_SOCKET` as a path, so a notification to an abstract socket (`@name`) never arrives;
//! p2pd's notifier delivers it. One test in its own binary: it sets the environment.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

#[test]
fn notifications_reach_an_abstract_socket() {
    let name = format!("p2pd-notify-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let manager = UnixDatagram::bind_addr(&addr).expect("bind the abstract socket");
    manager
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));

    // The crate alone: an error, and nothing arrives.
    assert!(sd_notify::notify(&[sd_notify::NotifyState::Ready]).is_err());
    manager.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 512];
    assert!(
        manager.recv(&mut buf).is_err(),
        "the crate reached an abstract socket"
    );
    manager.set_nonblocking(false).expect("blocking");

    // p2pd's notifier: both lines in one datagram.
    let notifier = p2pd::sd::Notifier::from_env();
    assert!(notifier.enabled());
    notifier.ready("listening on 2 addresses\nsecond line");
    let n = manager.recv(&mut buf).expect("the notification");
    assert_eq!(
        std::str::from_utf8(&buf[..n]).expect("utf-8"),
        "READY=1\nSTATUS=listening on 2 addresses second line\n"
    );
    notifier.reloading();
    let n = manager.recv(&mut buf).expect("the reload notification");
    let text = std::str::from_utf8(&buf[..n]).expect("utf-8");
    assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
}
