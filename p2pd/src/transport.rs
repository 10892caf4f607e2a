//! The node's transports: TCP (TLS 1.3 or Noise, then yamux) and QUIC-v1, both behind the
//! policy's [`Gate`] (dial rules and handshake deadline). Built here rather than by
//! `SwarmBuilder::with_tcp`, which offers no place for either.

use crate::policy::gate::{Gate, SharedRules};
use crate::tls;
use futures::future::{BoxFuture, Either};
use futures::{AsyncRead, AsyncWrite, FutureExt, TryFutureExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::core::{upgrade::Version, Transport};
use libp2p::identity::Keypair;
use libp2p::{noise, tcp, PeerId};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The security protocols offered on TCP, TLS 1.3 first; never plaintext.
#[derive(Clone)]
pub struct Secure {
    tls: tls::Config,
    noise: noise::Config,
}

#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("TLS handshake: {0}")]
    Tls(#[source] tls::TlsError),
    #[error("Noise handshake: {0}")]
    Noise(#[source] noise::Error),
}

type Secured<C> = (PeerId, Either<tls::TlsStream<C>, noise::Output<C>>);

impl Secure {
    pub fn new(key: &Keypair) -> Result<Self, BoxError> {
        Ok(Secure {
            tls: tls::Config::new(key)?,
            noise: noise::Config::new(key)?,
        })
    }

    fn is_tls(&self, info: &str) -> bool {
        self.tls.protocol_info().any(|p| p == info)
    }
}

impl UpgradeInfo for Secure {
    type Info = &'static str;
    type InfoIter = Vec<&'static str>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.tls
            .protocol_info()
            .chain(self.noise.protocol_info())
            .collect()
    }
}

type SecureFuture<C> = BoxFuture<'static, Result<Secured<C>, SecureError>>;

fn tls_side<C: Send + 'static>(
    f: impl std::future::Future<Output = Result<(PeerId, tls::TlsStream<C>), tls::TlsError>>
        + Send
        + 'static,
) -> SecureFuture<C> {
    f.map_ok(|(p, s)| (p, Either::Left(s)))
        .map_err(SecureError::Tls)
        .boxed()
}

fn noise_side<C: Send + 'static>(
    f: impl std::future::Future<Output = Result<(PeerId, noise::Output<C>), noise::Error>>
        + Send
        + 'static,
) -> SecureFuture<C> {
    f.map_ok(|(p, s)| (p, Either::Right(s)))
        .map_err(SecureError::Noise)
        .boxed()
}

impl<C> InboundConnectionUpgrade<C> for Secure
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Secured<C>;
    type Error = SecureError;
    type Future = SecureFuture<C>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        if self.is_tls(info) {
            tls_side(self.tls.upgrade_inbound(socket, info))
        } else {
            noise_side(self.noise.upgrade_inbound(socket, info))
        }
    }
}

impl<C> OutboundConnectionUpgrade<C> for Secure
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Secured<C>;
    type Error = SecureError;
    type Future = SecureFuture<C>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        if self.is_tls(info) {
            tls_side(self.tls.upgrade_outbound(socket, info))
        } else {
            noise_side(self.noise.upgrade_outbound(socket, info))
        }
    }
}

/// TCP and QUIC-v1 behind the gate. `streams` caps the concurrent streams of a connection;
/// `udp` learns QUIC's sockets.
pub fn gated(
    key: &Keypair,
    streams: u32,
    handshake_timeout: Duration,
    rules: SharedRules,
    udp: crate::udp::Sockets,
) -> Result<Gate<Boxed<(PeerId, StreamMuxerBox)>>, BoxError> {
    let secure = Secure::new(key)?;
    let quic = crate::quic::Transport::new(key, &secure.tls, streams, handshake_timeout, udp)?
        .map(|(p, c), _| (p, StreamMuxerBox::new(c)));
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .map(|socket, _| Coalesce::new(socket))
        .upgrade(Version::V1Lazy)
        .authenticate(secure)
        .multiplex(muxer(streams))
        .map(|(p, c), _| (p, StreamMuxerBox::new(c)));
    let both = tcp
        .or_transport(quic)
        .map(|either, _| either.into_inner())
        .boxed();
    Ok(Gate::new(both, rules, handshake_timeout))
}

/// yamux with the stream cap.
pub fn muxer(streams: u32) -> libp2p::yamux::Config {
    let mut c = libp2p::yamux::Config::default();
    c.set_max_num_streams(streams as usize);
    c
}

/// Capacity of [`Coalesce`]'s buffer: four full TLS records or one Noise frame.
const COALESCE_BYTES: usize = 64 * 1024;

/// Gathers what the security layer writes into one `write(2)` per turn of the connection's task.
///
/// yamux writes each frame's 12-byte header and its body (16 KiB at most) separately and flushes
/// after every frame, and TLS turns each write into its own record: on a TCP socket with
/// TCP_NODELAY every header went out as its own segment, and a bulk transfer cost a `sendto`
/// per 16 KiB. Here a flush that follows new writes is answered at once and the bytes stay
/// owed; they go out — as one write of up to [`COALESCE_BYTES`] — before the next read, at the
/// next flush that brings nothing new, when the buffer fills, or at close. The flush wakes the
/// task, so even a caller that neither reads nor writes again is polled once more and flushes.
/// yamux reads as soon as it has no more frames to send, and the handshakes read after every
/// flush, so nothing waits in here longer than the rest of the task's turn.
pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    sent: usize,
    /// Bytes came in since the last flush.
    fresh: bool,
    /// A flush was answered while bytes were still buffered.
    owed: bool,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Coalesce {
            inner,
            buf: Vec::new(),
            sent: 0,
            fresh: false,
            owed: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out everything buffered.
    fn poll_drain(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.sent < self.buf.len() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Nothing is kept between writes: an idle connection (most of them) holds no buffer,
        // and a busy one allocates one per write of up to COALESCE_BYTES, which is cheap
        // beside encrypting them.
        self.buf = Vec::new();
        self.sent = 0;
        self.owed = false;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // Whoever reads may be waiting for the answer to what is owed: send it first. A full
        // socket does not stop the read (both ends must keep reading for either to write).
        if self.owed {
            if let std::task::Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return std::task::Poll::Ready(Err(e));
            }
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if self.buf.len() + data.len() > COALESCE_BYTES {
            if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            if !self.buf.is_empty() {
                return Poll::Pending;
            }
            if data.len() >= COALESCE_BYTES {
                return std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
            }
        }
        self.buf.extend_from_slice(data);
        self.fresh = true;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if std::mem::take(&mut self.fresh) && self.sent < self.buf.len() {
            self.owed = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Ready(Ok(()));
        }
        futures::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        futures::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::{waker, ArcWake};
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    /// A socket that records each write and has `incoming` to read.
    #[derive(Default)]
    struct Socket {
        writes: Vec<Vec<u8>>,
        incoming: Vec<u8>,
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Socket {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.incoming.len());
            buf[..n].copy_from_slice(&self.incoming[..n]);
            self.incoming.drain(..n);
            Poll::Ready(Ok(n))
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl ArcWake for Wakes {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn with_cx<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> (R, usize) {
        let wakes = Arc::new(Wakes::default());
        let w = waker(wakes.clone());
        let r = f(&mut Context::from_waker(&w));
        (r, wakes.0.load(Ordering::SeqCst))
    }

    fn write(c: &mut Coalesce<Socket>, cx: &mut Context<'_>, data: &[u8]) {
        assert!(matches!(
            Pin::new(&mut *c).poll_write(cx, data),
            Poll::Ready(Ok(n)) if n == data.len()
        ));
    }

    fn flush(c: &mut Coalesce<Socket>, cx: &mut Context<'_>) {
        assert!(matches!(
            Pin::new(&mut *c).poll_flush(cx),
            Poll::Ready(Ok(()))
        ));
    }

    #[test]
    fn frames_flushed_in_one_turn_go_out_in_one_write() {
        let mut c = Coalesce::new(Socket::default());
        let ((), wakes) = with_cx(|cx| {
            for frame in [&b"header"[..], b"body", b"header", b"body"] {
                write(&mut c, cx, frame);
                flush(&mut c, cx);
            }
        });
        assert!(c.inner.writes.is_empty(), "nothing written yet");
        assert!(wakes >= 1, "a deferred flush wakes the task");
        // The next flush that brings nothing new writes everything at once.
        with_cx(|cx| flush(&mut c, cx));
        assert_eq!(c.inner.writes, vec![b"headerbodyheaderbody".to_vec()]);
        assert!(c.buf.is_empty() && !c.owed);
    }

    #[test]
    fn a_read_sends_what_is_owed_first() {
        let mut c = Coalesce::new(Socket {
            incoming: b"answer".to_vec(),
            ..Default::default()
        });
        let mut got = [0u8; 16];
        let (n, _) = with_cx(|cx| {
            write(&mut c, cx, b"question");
            flush(&mut c, cx);
            Pin::new(&mut c).poll_read(cx, &mut got)
        });
        assert_eq!(c.inner.writes, vec![b"question".to_vec()]);
        assert!(matches!(n, Poll::Ready(Ok(6))));
        assert_eq!(&got[..6], b"answer");
    }

    #[test]
    fn a_full_buffer_is_written_and_close_writes_the_rest() {
        let mut c = Coalesce::new(Socket::default());
        let chunk = vec![7u8; 16 * 1024];
        with_cx(|cx| {
            for _ in 0..5 {
                write(&mut c, cx, &chunk);
                flush(&mut c, cx);
            }
            assert_eq!(c.inner.writes.len(), 1, "the fifth record did not fit");
            assert_eq!(c.inner.writes[0].len(), COALESCE_BYTES);
            assert!(matches!(
                Pin::new(&mut c).poll_close(cx),
                Poll::Ready(Ok(()))
            ));
        });
        let total: usize = c.inner.writes.iter().map(Vec::len).sum();
        assert_eq!(total, 5 * chunk.len());
    }
}
