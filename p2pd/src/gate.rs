//! `p2pd gate`: the front door of the packaged daemon's control sockets.
//!
//! p2pd.service runs in a private user namespace, where the kernel would report every caller
//! other than root and the p2pd user as uid 65534. The gate runs outside it (as the p2pd user,
//! without any network), accepts on the sockets systemd passes it (`p2pd.socket`,
//! `p2pd-query.socket`), and hands each connection with its caller's real credentials to the
//! daemon through the hand-over socket ([`crate::control::handoff`]). It never reads a byte of
//! a request; after the hand-over it closes its copy of the connection.

use crate::control::{self, handoff, Access, Caller};
use anyhow::Context;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a hand-over may wait for a daemon that does not take connections (starting, or
/// hung); then the client is told and the connection closed.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(30);

/// The gate's connection to the daemon's hand-over socket, made on first use and again after
/// the daemon restarts.
struct Link {
    path: PathBuf,
    conn: Mutex<Option<OwnedFd>>,
}

impl Link {
    fn connect(&self) -> nix::Result<OwnedFd> {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let timeout = nix::sys::time::TimeVal::new(HANDOFF_TIMEOUT.as_secs() as _, 0);
        socket::setsockopt(&fd, socket::sockopt::SendTimeout, &timeout)?;
        socket::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &UnixAddr::new(&self.path)?,
        )?;
        Ok(fd)
    }

    /// Hands `conn` over; a broken link (the daemon restarted) is made again once.
    fn hand(&self, conn: &UnixStream, caller: &Caller) -> Result<(), String> {
        let mut link = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..2 {
            if link.is_none() {
                match self.connect() {
                    Ok(fd) => *link = Some(fd),
                    Err(e) => {
                        return Err(format!("cannot reach p2pd at {}: {e}", self.path.display()))
                    }
                }
            }
            let fd = link.as_ref().expect("connected above");
            match handoff::send(fd.as_fd(), conn.as_fd(), caller) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EAGAIN) => {
                    *link = None;
                    return Err(format!(
                        "p2pd took no connection for {}s",
                        HANDOFF_TIMEOUT.as_secs()
                    ));
                }
                Err(e) => {
                    last = e.to_string();
                    *link = None;
                }
            }
        }
        Err(format!("the hand-over to p2pd failed: {last}"))
    }
}

/// Runs the gate: serves the passed sockets until it is stopped.
pub fn run(handoff_path: &Path) -> anyhow::Result<()> {
    let passed = control::take_passed_sockets()?.context(
        "p2pd gate serves the sockets the service manager passes (p2pd.socket and p2pd-query.socket, Service=p2pd-gate.service); none were passed",
    )?;
    let (full, read_only) = passed.into_listeners();
    let link = Arc::new(Link {
        path: handoff_path.to_path_buf(),
        conn: Mutex::new(None),
    });
    let listeners = [(full, Access::Full), (read_only, Access::ReadOnly)];
    let threads: Vec<_> = listeners
        .into_iter()
        .filter_map(|(l, access)| l.map(|l| (l, access)))
        .map(|(listener, access)| {
            let link = link.clone();
            std::thread::spawn(move || accept_loop(&listener, access, &link))
        })
        .collect();
    anyhow::ensure!(
        !threads.is_empty(),
        "p2pd gate was passed no stream socket to serve; check p2pd.socket"
    );
    eprintln!(
        "p2pd gate: handing control connections to {} with their callers' credentials",
        handoff_path.display()
    );
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn accept_loop(listener: &UnixListener, access: Access, link: &Link) {
    loop {
        let conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("p2pd gate: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let caller = handoff::caller_of(conn.as_fd(), access);
        if let Err(why) = link.hand(&conn, &caller) {
            eprintln!(
                "p2pd gate: a control connection of uid {} was closed: {why}",
                caller.uid
            );
            refuse(conn, &why);
        }
    }
}

/// Tells a client why it is not served, as the daemon would (an error answer to request 0).
fn refuse(mut conn: UnixStream, why: &str) {
    let message = format!("{why}; check `systemctl status p2pd` and `journalctl -u p2pd`");
    let frame = control::error_frame(0, p2pd_proto::control::ErrorCode::Unavailable, &message);
    let mut out = Vec::new();
    p2pd_proto::frame::encode_frame_into(&frame, &mut out);
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = conn.write_all(&out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pd_proto::control::{response, server_frame, ErrorCode, ServerFrame};

    /// No daemon behind the hand-over socket: the client is not left hanging; it gets an error
    /// answer that says what failed and where to look.
    #[test]
    fn a_client_is_told_when_the_daemon_cannot_be_reached() {
        let dir = tempfile::tempdir().unwrap();
        let link = Link {
            path: dir.path().join("no-daemon.sock"),
            conn: Mutex::new(None),
        };
        let (client, conn) = UnixStream::pair().unwrap();
        let caller = handoff::caller_of(conn.as_fd(), Access::Full);
        let why = link.hand(&conn, &caller).unwrap_err();
        assert!(
            why.contains("cannot reach p2pd") && why.contains("no-daemon.sock"),
            "{why}"
        );
        refuse(conn, &why);
        client.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let frame: ServerFrame = rt
            .block_on(async {
                let mut client = tokio::net::UnixStream::from_std(client).unwrap();
                p2pd_proto::frame::read_message(&mut client, 1 << 20).await
            })
            .unwrap()
            .unwrap();
        let Some(server_frame::Frame::Response(r)) = frame.frame else {
            panic!("not a response: {frame:?}");
        };
        let Some(response::Kind::Error(e)) = r.kind else {
            panic!("not an error: {r:?}");
        };
        assert_eq!(e.code, ErrorCode::Unavailable as i32);
        assert!(e.message.contains("systemctl status p2pd"), "{}", e.message);
    }
}
