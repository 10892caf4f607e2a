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
use libp2p::{noise, quic, tcp, PeerId};
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

/// TCP and QUIC-v1 behind the gate. `streams` caps the concurrent streams of a connection.
pub fn gated(
    key: &Keypair,
    streams: u32,
    handshake_timeout: Duration,
    rules: SharedRules,
) -> Result<Gate<Boxed<(PeerId, StreamMuxerBox)>>, BoxError> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .map(|socket, _| Coalesce::new(socket))
        .upgrade(Version::V1Lazy)
        .authenticate(Secure::new(key)?)
        .multiplex(muxer(streams))
        .map(|(p, c), _| (p, StreamMuxerBox::new(c)));
    let mut q = quic::Config::new(key);
    q.max_concurrent_stream_limit = streams;
    q.handshake_timeout = handshake_timeout;
    let quic = quic::tokio::Transport::new(q).map(|(p, c), _| (p, StreamMuxerBox::new(c)));
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

/// Capacity of [`Coalesce`]'s buffer: a few TLS records or one Noise frame.
const COALESCE_BYTES: usize = 64 * 1024;

/// Gathers what the security layer writes until it flushes, so each flush is one `write(2)`.
/// yamux writes a frame's 12-byte header and its body separately, and TLS turns each write into
/// its own record: on a TCP socket with TCP_NODELAY every header went out as its own segment.
/// yamux and both handshakes flush after every frame or message, so nothing waits in here.
pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    sent: usize,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Coalesce {
            inner,
            buf: Vec::new(),
            sent: 0,
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
        // Nothing is kept between flushes: an idle connection (most of them) holds no buffer,
        // and a busy one allocates one per flush of up to COALESCE_BYTES, which is cheap
        // beside encrypting them.
        self.buf = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
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
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
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
