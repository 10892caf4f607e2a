//! Control connections handed over by `p2pd gate`, each with its caller's real identity.
//!
//! The packaged daemon runs in a private user namespace (`PrivateUsers=yes`). There the kernel
//! reports every caller other than root and the p2pd user as uid 65534, so the audit trail
//! could not say which group member banned whom. The gate (`p2pd-gate.service`, outside the
//! namespace, no network at all) accepts on the control and read-only sockets, reads each
//! caller's credentials (SO_PEERCRED), and passes the connection itself to the daemon over a
//! sequential-packet socket (`p2pd-handoff.socket`, mode 0600, owner p2pd): one message per
//! connection, [`MESSAGE_LEN`] bytes of identity plus the descriptor (SCM_RIGHTS). The daemon
//! then serves the client on that descriptor directly; no byte of a request passes the gate.
//!
//! Only a process running as the daemon's own uid, or root, may hand over; anything else that
//! connects is cut, and a malformed message is dropped with whatever descriptor came with it.

use super::{Access, Caller};
use nix::sys::socket::{
    self, getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const MAGIC: [u8; 4] = *b"P2H1";
/// Magic, access (one byte and three zero bytes), uid, gid, pid: little-endian.
pub const MESSAGE_LEN: usize = 20;

fn encode(c: &Caller) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    m[..4].copy_from_slice(&MAGIC);
    m[4] = match c.access {
        Access::Full => 0,
        Access::ReadOnly => 1,
    };
    m[8..12].copy_from_slice(&c.uid.to_le_bytes());
    m[12..16].copy_from_slice(&c.gid.to_le_bytes());
    m[16..20].copy_from_slice(&c.pid.to_le_bytes());
    m
}

fn decode(m: &[u8]) -> Option<Caller> {
    if m.len() != MESSAGE_LEN || m[..4] != MAGIC || m[5..8] != [0, 0, 0] {
        return None;
    }
    let access = match m[4] {
        0 => Access::Full,
        1 => Access::ReadOnly,
        _ => return None,
    };
    let word = |i: usize| [m[i], m[i + 1], m[i + 2], m[i + 3]];
    Some(Caller {
        uid: u32::from_le_bytes(word(8)),
        gid: u32::from_le_bytes(word(12)),
        pid: i32::from_le_bytes(word(16)),
        access,
    })
}

/// The caller on the other end of an accepted control connection (SO_PEERCRED), as the kernel
/// reports it in this process's user namespace.
pub fn caller_of(conn: BorrowedFd<'_>, access: Access) -> Caller {
    match getsockopt(&conn, sockopt::PeerCredentials) {
        Ok(c) => Caller {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
            access,
        },
        Err(_) => Caller {
            uid: u32::MAX,
            gid: u32::MAX,
            pid: -1,
            access,
        },
    }
}

/// Hands `conn` over with its caller (the gate's side; blocks while the daemon's queue is full).
pub fn send(handoff: BorrowedFd<'_>, conn: BorrowedFd<'_>, caller: &Caller) -> nix::Result<()> {
    let message = encode(caller);
    let fds = [conn.as_raw_fd()];
    let sent = sendmsg::<()>(
        handoff.as_raw_fd(),
        &[IoSlice::new(&message)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != MESSAGE_LEN {
        return Err(nix::errno::Errno::EMSGSIZE);
    }
    Ok(())
}

/// What one message from the gate held.
#[derive(Debug)]
pub enum Received {
    /// A connection and its caller.
    Connection(OwnedFd, Caller),
    /// Not a hand-over (wrong size or magic, no descriptor or several): dropped.
    Malformed(&'static str),
    /// The gate closed its end.
    Closed,
}

/// Receives one message (non-blocking: `EAGAIN` when none is queued). Every descriptor that
/// arrives is owned at once, so a malformed message leaks nothing.
pub fn recv(handoff: BorrowedFd<'_>) -> nix::Result<Received> {
    let mut buf = [0u8; MESSAGE_LEN + 1];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        handoff.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors in this process for this
            // message; nothing else refers to them.
            #[allow(unsafe_code)]
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let (len, truncated) = (
        msg.bytes,
        msg.flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC),
    );
    if len == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    if truncated || fds.len() != 1 {
        return Ok(Received::Malformed("not exactly one descriptor"));
    }
    let Some(caller) = decode(&buf[..len]) else {
        return Ok(Received::Malformed("not a hand-over message"));
    };
    let fd = fds.pop().expect("one descriptor");
    match getsockopt(&fd, sockopt::SockType) {
        Ok(socket::SockType::Stream) => Ok(Received::Connection(fd, caller)),
        _ => Ok(Received::Malformed("the descriptor is not a stream socket")),
    }
}

/// `fd` registered with the runtime for readiness to read.
fn readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, which stays open and the same descriptor until it is dropped.
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
    Ok(registered?)
}

/// Accepts the gate's connections on the passed hand-over socket and gives every connection
/// they hand over to `admit`. Runs until the socket fails.
pub async fn serve<F>(listener: OwnedFd, admit: F)
where
    F: Fn(tokio::net::UnixStream, Caller) + Clone + Send + 'static,
{
    let listener = match readable(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the hand-over socket cannot be polled; control connections through p2pd-gate are not served");
            return;
        }
    };
    // The gate runs as this daemon's user; root may hand over too (a test, a debugger).
    let own = nix::unistd::geteuid().as_raw();
    loop {
        let accepted = listener
            .async_io(Interest::READABLE, |l| {
                socket::accept4(
                    l.as_raw_fd(),
                    socket::SockFlag::SOCK_NONBLOCK | socket::SockFlag::SOCK_CLOEXEC,
                )
                .map_err(std::io::Error::from)
            })
            .await;
        let conn = match accepted {
            // SAFETY: accept4 returned a new descriptor that only this process holds.
            #[allow(unsafe_code)]
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(e) => {
                tracing::warn!(error = %e, "hand-over socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let gate = caller_of(conn.as_fd(), Access::Full);
        if gate.uid != own && gate.uid != 0 {
            tracing::warn!(
                caller_uid = gate.uid,
                caller_pid = gate.pid,
                "refused a hand-over connection: only p2pd-gate (running as this daemon's user) may hand over control connections"
            );
            continue;
        }
        tokio::spawn(from_gate(conn, admit.clone()));
    }
}

/// One gate connection: every message is one client connection.
async fn from_gate<F>(conn: OwnedFd, admit: F)
where
    F: Fn(tokio::net::UnixStream, Caller),
{
    let conn = match readable(conn) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot poll a hand-over connection");
            return;
        }
    };
    loop {
        let received = conn
            .async_io(Interest::READABLE, |c| {
                recv(c.as_fd()).map_err(std::io::Error::from)
            })
            .await;
        match received {
            Ok(Received::Connection(fd, caller)) => {
                let stream = std::os::unix::net::UnixStream::from(fd);
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::UnixStream::from_std(stream));
                match stream {
                    Ok(s) => admit(s, caller),
                    Err(e) => {
                        tracing::warn!(error = %e, "a handed-over connection cannot be served")
                    }
                }
            }
            Ok(Received::Malformed(why)) => {
                tracing::warn!(reason = why, "dropped a malformed hand-over message");
            }
            Ok(Received::Closed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "hand-over connection ended");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    fn pair(kind: SockType) -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC).unwrap()
    }

    #[test]
    fn a_connection_and_its_caller_cross_intact() {
        let (gate, daemon) = pair(SockType::SeqPacket);
        let (client, conn) = pair(SockType::Stream);
        let caller = Caller {
            uid: 1001,
            gid: 1002,
            pid: 4242,
            access: Access::ReadOnly,
        };
        send(gate.as_fd(), conn.as_fd(), &caller).unwrap();
        drop(conn);
        let Received::Connection(fd, got) = recv(daemon.as_fd()).unwrap() else {
            panic!("no connection");
        };
        assert_eq!(
            (got.uid, got.gid, got.pid, got.access),
            (1001, 1002, 4242, Access::ReadOnly)
        );
        // The descriptor is the client's peer: bytes written by the client arrive on it.
        nix::unistd::write(&client, b"hello").unwrap();
        let mut buf = [0u8; 5];
        nix::unistd::read(&fd, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        drop(gate);
        assert!(matches!(recv(daemon.as_fd()).unwrap(), Received::Closed));
    }

    #[test]
    fn malformed_messages_are_dropped_with_their_descriptors() {
        let (gate, daemon) = pair(SockType::SeqPacket);
        // Each of these is dropped, whatever descriptor came with it.
        let malformed = |bytes: &[u8], fds: &[std::os::fd::RawFd]| {
            let rights = [ControlMessage::ScmRights(fds)];
            let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
            sendmsg::<()>(
                gate.as_raw_fd(),
                &[IoSlice::new(bytes)],
                cmsgs,
                MsgFlags::empty(),
                None,
            )
            .unwrap();
            assert!(matches!(
                recv(daemon.as_fd()).unwrap(),
                Received::Malformed(_)
            ));
        };
        let caller = Caller {
            uid: 1,
            gid: 1,
            pid: 1,
            access: Access::Full,
        };
        // Identity without a descriptor.
        malformed(&encode(&caller), &[]);
        // A descriptor with the wrong bytes.
        let (_a, b) = pair(SockType::Stream);
        malformed(b"P2H1 but not quite right", &[b.as_raw_fd()]);
        // A descriptor that is not a stream socket.
        let (c, _d) = pair(SockType::Datagram);
        malformed(&encode(&caller), &[c.as_raw_fd()]);
        // Nothing queued: EAGAIN, not a block.
        assert_eq!(recv(daemon.as_fd()).unwrap_err(), nix::errno::Errno::EAGAIN);
    }

    #[test]
    fn the_message_layout_is_fixed() {
        let caller = Caller {
            uid: 0x01020304,
            gid: 5,
            pid: -1,
            access: Access::Full,
        };
        let m = encode(&caller);
        assert_eq!(&m[..8], b"P2H1\0\0\0\0");
        assert_eq!(decode(&m).unwrap().uid, 0x01020304);
        let mut bad = m;
        bad[4] = 7;
        assert!(decode(&bad).is_none());
        assert!(decode(&m[..19]).is_none());
    }
}
