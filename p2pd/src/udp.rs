//! Socket buffers for QUIC's UDP sockets.
//!
//! The kernel's default buffers (`net.core.rmem_default`, 208 KiB on most distributions) are
//! too small for QUIC: a peer sending at full speed over a fast path fills them between two
//! turns of the receiving endpoint, the kernel drops the datagrams, and QUIC takes the loss for
//! congestion and halves its window. Measured here, 1 GiB through a stream: ~400-800 drops and
//! 350-390 MiB/s with the defaults, none and 400-470 MiB/s with 4 MiB buffers.
//!
//! [`crate::quic`] asks for [`WANTED`] bytes of receive and send buffer when it binds a socket.
//! What the kernel granted is found the way `ss -p` finds it: each of the process's
//! descriptors that is a UDP socket (through a duplicate this module owns, so a descriptor
//! closed meanwhile costs nothing) is asked for the same again and read back. The kernel caps
//! the request at `net.core.rmem_max` / `wmem_max` without saying so; the size it granted is
//! logged when short, reported by `p2pctl status` and checked by `p2pctl diag`. The packages
//! raise both maxima (`/usr/lib/sysctl.d/30-p2pd.conf`).

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Receive and send buffer asked for on each QUIC socket.
pub const WANTED: usize = 4 << 20;

/// What the kernel granted one socket, in the bytes it accounts (getsockopt reports twice what
/// was asked for: half of it is for its own bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub addr: SocketAddr,
    pub recv: usize,
    pub send: usize,
}

impl Granted {
    /// The kernel capped the request (a maximum below [`WANTED`]).
    pub fn short(&self) -> bool {
        self.recv < 2 * WANTED || self.send < 2 * WANTED
    }
}

/// A duplicate of descriptor `fd` of this process, if it is still open.
fn duplicate(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes any integer and fails with EBADF on a closed one; the new
    // descriptor it returns is ours alone.
    #[allow(unsafe_code)]
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    #[allow(unsafe_code)]
    (dup >= 0).then(|| unsafe { OwnedFd::from_raw_fd(dup) })
}

/// The local address of `fd` when it is a bound IPv4 or IPv6 UDP socket.
fn udp_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, SockaddrStorage};
    use std::os::fd::AsRawFd;
    if getsockopt(fd, sockopt::SockType).ok()? != SockType::Datagram {
        return None;
    }
    let name: SockaddrStorage = getsockname(fd.as_raw_fd()).ok()?;
    if let Some(v4) = name.as_sockaddr_in() {
        Some(SocketAddr::from((v4.ip(), v4.port())))
    } else {
        name.as_sockaddr_in6()
            .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
    }
}

/// Gives every UDP socket of this process that `wanted` selects (by its local address) the
/// buffers of [`WANTED`], and returns what the kernel granted each, once per address.
pub fn size_sockets(wanted: impl Fn(&SocketAddr) -> bool) -> std::io::Result<Vec<Granted>> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // Only sockets: the link names "socket:[inode]".
        let is_socket = std::fs::read_link(entry.path())
            .map(|l| l.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        let Some(dup) = duplicate(fd) else { continue };
        let Some(addr) = udp_addr(&dup) else { continue };
        // quic.rs keeps a second descriptor of each listener's socket (hole punching).
        if !wanted(&addr) || out.iter().any(|g: &Granted| g.addr == addr) {
            continue;
        }
        // Failures leave the default buffers, which work, only slower: read back either way.
        let _ = setsockopt(&dup, sockopt::RcvBuf, &WANTED);
        let _ = setsockopt(&dup, sockopt::SndBuf, &WANTED);
        out.push(Granted {
            addr,
            recv: getsockopt(&dup, sockopt::RcvBuf).unwrap_or(0),
            send: getsockopt(&dup, sockopt::SndBuf).unwrap_or(0),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_the_selected_udp_sockets_only() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let _a2 = a.try_clone().unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (pa, tcp_port) = (a.local_addr().unwrap(), tcp.local_addr().unwrap().port());
        let got = size_sockets(|s| *s == pa || s.port() == tcp_port).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].addr, pa);
        // The kernel grants at least its default and reports twice what it keeps.
        assert!(
            got[0].recv >= 2 * 4096 && got[0].send >= 2 * 4096,
            "{got:?}"
        );
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if max >= WANTED {
            assert_eq!(got[0].recv, 2 * WANTED);
            assert!(!got[0].short() || got[0].send < 2 * WANTED);
        } else {
            assert!(got[0].short());
        }
        // The socket itself now has the granted size (the duplicate shared it).
        let own = nix::sys::socket::getsockopt(&a, nix::sys::socket::sockopt::RcvBuf).unwrap();
        assert_eq!(own, got[0].recv);
        let untouched =
            nix::sys::socket::getsockopt(&b, nix::sys::socket::sockopt::RcvBuf).unwrap();
        assert!(untouched < got[0].recv || max < WANTED);
    }
}
