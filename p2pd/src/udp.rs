//! Socket buffers for QUIC's UDP sockets.
//!
//! The kernel's default buffers (`net.core.rmem_default`, 208 KiB on most distributions) are
//! too small for QUIC: a peer sending at full speed over a fast path fills them between two
//! turns of the receiving endpoint, the kernel drops the datagrams, and QUIC takes the loss for
//! congestion and halves its window. Measured here, 1 GiB through a stream: ~400-800 drops and
//! 350-390 MiB/s with the defaults, none and 400-470 MiB/s with 4 MiB buffers.
//!
//! [`crate::quic`] asks for [`WANTED`] bytes of receive and send buffer on every socket it binds
//! and records here, in [`Sockets`], what the kernel granted each socket new connections use (a
//! listener's, or a family's dial-only socket) while it does. The kernel caps the request at
//! `net.core.rmem_max` / `wmem_max` without saying so: a capped socket is logged once, and
//! `p2pctl status` and `p2pctl diag` show it. The packages raise both maxima
//! (`/usr/lib/sysctl.d/30-p2pd.conf`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

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

/// Asks for [`WANTED`] bytes of receive and send buffer on `socket`. Failures leave the default
/// buffers, which work, only slower (and show in what [`Sockets::record`] reads back).
pub fn size(socket: &socket2::Socket) {
    let _ = socket.set_recv_buffer_size(WANTED);
    let _ = socket.set_send_buffer_size(WANTED);
}

/// The UDP sockets QUIC serves new connections from, with what the kernel granted each: written
/// by the transport, read by the node for `p2pctl status`.
#[derive(Debug, Clone, Default)]
pub struct Sockets(Arc<Mutex<Vec<Granted>>>);

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Granted>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads back what the kernel granted `socket` and keeps it; says so once when the kernel
    /// capped it.
    pub fn record(&self, socket: &UdpSocket) -> std::io::Result<Granted> {
        let s = socket2::SockRef::from(socket);
        let g = Granted {
            addr: socket.local_addr()?,
            recv: s.recv_buffer_size()?,
            send: s.send_buffer_size()?,
        };
        if g.short() {
            tracing::warn!(
                socket = %g.addr,
                receive_bytes = g.recv / 2,
                send_bytes = g.send / 2,
                wanted_bytes = WANTED,
                "the kernel capped a QUIC socket's buffers (net.core.rmem_max / wmem_max): under load it drops datagrams and QUIC slows down; raise both to {WANTED} (the packages ship /usr/lib/sysctl.d/30-p2pd.conf: `systemctl restart systemd-sysctl`), then restart p2pd"
            );
        }
        let mut all = self.lock();
        all.retain(|o| o.addr != g.addr);
        all.push(g);
        Ok(g)
    }

    /// The socket bound to `addr` no longer serves new connections.
    pub fn forget(&self, addr: SocketAddr) {
        self.lock().retain(|g| g.addr != addr);
    }

    pub fn granted(&self) -> Vec<Granted> {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_sized_recorded_once_and_forgotten() {
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        size(&raw);
        raw.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let a: UdpSocket = raw.into();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sockets = Sockets::default();
        let got = sockets.record(&a).unwrap();
        assert_eq!(got.addr, a.local_addr().unwrap());
        // The kernel grants at least its default and reports twice what it keeps.
        assert!(got.recv >= 2 * 4096 && got.send >= 2 * 4096, "{got:?}");
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if max >= WANTED {
            assert_eq!(got.recv, 2 * WANTED);
        } else {
            assert!(got.short());
        }
        // An unsized socket has less (unless the host's default is the size asked for).
        let other = sockets.record(&b).unwrap();
        assert!(other.recv < got.recv || max < WANTED, "{other:?} {got:?}");
        // Recorded again: listed once.
        sockets.record(&a).unwrap();
        assert_eq!(sockets.granted(), vec![other, got]);
        sockets.forget(b.local_addr().unwrap());
        assert_eq!(sockets.granted(), vec![got]);
    }
}
