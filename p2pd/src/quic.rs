//! QUIC-v1 (`/udp/<port>/quic-v1`) on quinn, with p2pd's TLS configuration ([`crate::tls`]).
//!
//! libp2p-quic builds its TLS configuration inside the crate, with libp2p-tls's suites in
//! libp2p-tls's order: ChaCha20-Poly1305 first, so two libp2p-quic peers always encrypt with
//! ChaCha20, and with no way to change it from outside. On a CPU with AES instructions that
//! cipher was a quarter of each daemon's CPU in a bulk transfer: measured in the stream rig
//! (1 GiB, two interleaved pairs), libp2p-quic 252 / 437 MiB/s at 3.5 CPU-s per GiB across both
//! daemons, the same transport with AES-GCM preferred 631 / 801 MiB/s at 1.8-2.0 CPU-s.
//!
//! This transport is the same wire protocol (QUIC v1, TLS 1.3 with the libp2p certificate,
//! ALPN `libp2p`, one bidirectional QUIC stream per libp2p stream), so it interoperates with every
//! libp2p QUIC implementation; the TLS side is [`crate::tls::Config`]'s — the certificate rules,
//! no key log, no session resumption, AES-GCM first where the CPU has AES. The transport's
//! choices follow libp2p-quic's: dials reuse a listener's socket (so the address a peer sees is
//! the one it can dial back, and NAT mappings serve both directions), else one dial-only socket
//! per address family; a dial as listener with a new port ([`PortUse::New`]) is a hole punch:
//! random datagrams from the listener's socket to the peer until the peer's connection arrives
//! on that listener. One choice differs: an inbound attempt's handshake starts only when the
//! swarm first polls its upgrade, which it does once the policy let the connection in (bans,
//! per-address limits); libp2p-quic started it before the policy saw the attempt, so every
//! refused attempt still cost a key exchange and a signature.

use crate::tls::TlsError;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Either};
use futures::{AsyncRead, AsyncWrite, FutureExt};
use if_watch::{tokio::IfWatcher, IfEvent};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::Endpoint;
use libp2p::identity::Keypair;
use libp2p::multiaddr::{Multiaddr, Protocol};
use libp2p::tls::certificate;
use libp2p::PeerId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    // Transparent: libp2p prints an error with each of its sources, so a wrapper that also
    // printed what it wraps said everything twice.
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Connect(#[from] quinn::ConnectError),
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
    #[error("the QUIC handshake did not finish within {0:?}")]
    HandshakeTimedOut(Duration),
    #[error("the peer's certificate: {0}")]
    Certificate(String),
    #[error("no QUIC listener of this address family to hole punch from")]
    NoListener,
    #[error("a hole punch to {0} is already under way")]
    PunchUnderWay(SocketAddr),
}

/// Stateless reset tokens keyed by a secret derived from the host key, so a restarted node's
/// resets are recognised by peers still holding connections to its previous run.
struct ResetKey([u8; 32]);

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], out: &mut [u8]) {
        out.copy_from_slice(blake3::keyed_hash(&self.0, data).as_bytes());
    }

    fn signature_len(&self) -> usize {
        blake3::OUT_LEN
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        // blake3::Hash compares in constant time.
        if blake3::keyed_hash(&self.0, data) == *signature {
            Ok(())
        } else {
            Err(quinn::crypto::CryptoError)
        }
    }
}

/// The address a QUIC socket address is dialed at.
pub fn multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::from(addr.ip())
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}

/// The socket address (and peer, when named) of `/ip4|ip6/<ip>/udp/<port>/quic-v1[/p2p/<id>]`.
fn socket_addr(addr: &Multiaddr) -> Option<(SocketAddr, Option<PeerId>)> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    let Protocol::Udp(port) = parts.next()? else {
        return None;
    };
    let Protocol::QuicV1 = parts.next()? else {
        return None;
    };
    let peer = match parts.next() {
        None => None,
        Some(Protocol::P2p(peer)) => Some(peer),
        Some(_) => return None,
    };
    parts
        .next()
        .is_none()
        .then_some((SocketAddr::new(ip, port), peer))
}

/// A UDP socket bound to `addr` (IPv6 sockets take IPv6 only, as the TCP listeners do), with
/// the buffers of [`crate::udp::WANTED`] asked for before its first datagram.
fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    crate::udp::size(&socket);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

pub type Upgrade = BoxFuture<'static, Result<(PeerId, Connection), QuicError>>;

/// The QUIC transport: listeners, dial-only endpoints and hole punches under way.
pub struct Transport {
    client: quinn::ClientConfig,
    server: quinn::ServerConfig,
    endpoint: quinn::EndpointConfig,
    handshake_timeout: Duration,
    listeners: Vec<Listener>,
    /// One dial-only endpoint per address family, for dials that find no listener to share.
    dialers: HashMap<bool, quinn::Endpoint>,
    /// Hole punches waiting for the peer's connection, by the peer's address.
    punches: HashMap<SocketAddr, oneshot::Sender<Upgrade>>,
    /// The sockets new connections use, with their buffers, for `p2pctl status`.
    sockets: crate::udp::Sockets,
    waker: Option<Waker>,
}

impl Transport {
    /// `streams` caps the peer's concurrent streams on a connection; `sockets` learns the
    /// sockets new connections use.
    pub fn new(
        key: &Keypair,
        tls: &crate::tls::Config,
        streams: u32,
        handshake_timeout: Duration,
        sockets: crate::udp::Sockets,
    ) -> Result<Self, TlsError> {
        use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
        let (client_tls, server_tls) = tls.rustls();
        let quic_error = |e: quinn::crypto::rustls::NoInitialCipherSuite| {
            TlsError::Config(rustls::Error::General(e.to_string()))
        };
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_uni_streams(0u32.into())
            .max_concurrent_bidi_streams(streams.into())
            .datagram_receive_buffer_size(None)
            .keep_alive_interval(Some(Duration::from_secs(5)))
            .max_idle_timeout(Some(quinn::VarInt::from_u32(10_000).into()))
            .allow_spin(false)
            .stream_receive_window(quinn::VarInt::from_u32(10_000_000))
            .receive_window(quinn::VarInt::from_u32(15_000_000));
        let transport = Arc::new(transport);
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server_tls).map_err(quic_error)?,
        ));
        server.transport = transport.clone();
        // libp2p connections are identified by their addresses; a peer moving is a new one.
        server.migration(false);
        let mut client = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client_tls).map_err(quic_error)?,
        ));
        client.transport_config(transport);
        let endpoint = match key.derive_secret(b"p2pd quic stateless reset key") {
            Some(secret) => quinn::EndpointConfig::new(Arc::new(ResetKey(secret))),
            None => quinn::EndpointConfig::default(),
        };
        Ok(Transport {
            client,
            server,
            endpoint,
            handshake_timeout,
            listeners: Vec::new(),
            dialers: HashMap::new(),
            punches: HashMap::new(),
            sockets,
            waker: None,
        })
    }

    fn new_endpoint(
        &self,
        socket: UdpSocket,
        server: Option<quinn::ServerConfig>,
    ) -> io::Result<quinn::Endpoint> {
        quinn::Endpoint::new(
            self.endpoint.clone(),
            server,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The listener to dial `remote` from: same address family, and for a loopback peer one
    /// that listens on loopback. Several: the same one for the same peer.
    fn listener_for(&self, remote: &SocketAddr) -> Option<&Listener> {
        let fit: Vec<&Listener> = self
            .listeners
            .iter()
            .filter(|l| !l.closed && l.local.is_ipv4() == remote.is_ipv4())
            .filter(|l| !remote.ip().is_loopback() || l.addrs.iter().any(IpAddr::is_loopback))
            .collect();
        if fit.is_empty() {
            return None;
        }
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(remote);
        Some(fit[hash as usize % fit.len()])
    }

    fn dialer_for(
        &mut self,
        remote: &SocketAddr,
        port_use: PortUse,
    ) -> io::Result<quinn::Endpoint> {
        if port_use == PortUse::Reuse {
            if let Some(l) = self.listener_for(remote) {
                return Ok(l.endpoint.clone());
            }
            if let Some(e) = self.dialers.get(&remote.is_ipv4()) {
                return Ok(e.clone());
            }
        }
        let any: IpAddr = if remote.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = bind(SocketAddr::new(any, 0))?;
        if port_use == PortUse::Reuse {
            self.sockets.record(&socket)?;
        }
        let endpoint = self.new_endpoint(socket, None)?;
        if port_use == PortUse::Reuse {
            self.dialers.insert(remote.is_ipv4(), endpoint.clone());
        }
        Ok(endpoint)
    }

    fn hole_punch(&mut self, remote: SocketAddr) -> Result<Upgrade, QuicError> {
        let socket = self
            .listener_for(&remote)
            .ok_or(QuicError::NoListener)?
            .socket
            .try_clone()?;
        // Punches that ended (their dial dropped) leave: the map holds only those under way.
        self.punches.retain(|_, waiting| !waiting.is_canceled());
        if self.punches.contains_key(&remote) {
            return Err(QuicError::PunchUnderWay(remote));
        }
        let (tx, rx) = oneshot::channel();
        self.punches.insert(remote, tx);
        let limit = self.handshake_timeout;
        Ok(async move {
            let punch = std::pin::pin!(punch(socket, remote));
            match tokio::time::timeout(limit, futures::future::select(rx, punch)).await {
                Ok(Either::Left((Ok(upgrade), _))) => upgrade.await,
                Ok(Either::Left((Err(oneshot::Canceled), _))) => {
                    Err(QuicError::Io(io::Error::other("the transport was dropped")))
                }
                Ok(Either::Right((e, _))) => Err(e),
                Err(_) => Err(QuicError::HandshakeTimedOut(limit)),
            }
        }
        .boxed())
    }
}

/// Random datagrams to `remote` every 10-200 ms, opening this side's NAT mapping for the peer's
/// connection; ends only with a send error.
async fn punch(socket: UdpSocket, remote: SocketAddr) -> QuicError {
    let random = rustls::crypto::aws_lc_rs::default_provider().secure_random;
    let mut bytes = [0u8; 64];
    loop {
        if random.fill(&mut bytes).is_err() {
            return QuicError::Io(io::Error::other("no random bytes for a hole punch"));
        }
        match socket.send_to(&bytes, remote) {
            Ok(_) => {}
            // The socket is quinn's and non-blocking: a full buffer skips one datagram.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return QuicError::Io(e),
        }
        let pause = 10 + u64::from(bytes[0]) * 190 / 255;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Waits for the handshake and names the peer by its certificate (checked during the handshake
/// by [`crate::tls`]'s verifier).
fn upgrade(connecting: quinn::Connecting, limit: Duration) -> Upgrade {
    async move {
        let connection = tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| QuicError::HandshakeTimedOut(limit))??;
        let peer = connection
            .peer_identity()
            .and_then(|id| {
                id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .ok_or_else(|| QuicError::Certificate("the peer presented none".into()))?;
        let [cert] = peer.as_slice() else {
            return Err(QuicError::Certificate(
                "libp2p TLS requires exactly one".into(),
            ));
        };
        let peer = certificate::parse(cert)
            .map_err(|e| QuicError::Certificate(e.to_string()))?
            .peer_id();
        Ok((peer, Connection::new(connection)))
    }
    .boxed()
}

impl libp2p::core::Transport for Transport {
    type Output = (PeerId, Connection);
    type Error = QuicError;
    type ListenerUpgrade = Upgrade;
    type Dial = Upgrade;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<QuicError>> {
        let Some((local, None)) = socket_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let socket = bind(local).map_err(|e| TransportError::Other(e.into()))?;
        self.sockets
            .record(&socket)
            .map_err(|e| TransportError::Other(e.into()))?;
        let listener = Listener::new(id, socket, self).map_err(TransportError::Other)?;
        // Later dials of this family share the listener's port; the dial-only endpoint goes
        // when its last connection does.
        if let Some(dialer) = self.dialers.remove(&local.is_ipv4()) {
            if let Ok(addr) = dialer.local_addr() {
                self.sockets.forget(addr);
            }
        }
        self.listeners.push(listener);
        self.wake();
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        match self.listeners.iter_mut().find(|l| l.id == id) {
            Some(l) => {
                l.close();
                self.wake();
                true
            }
            None => false,
        }
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Upgrade, TransportError<QuicError>> {
        let Some((remote, peer)) = socket_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        if opts.role == Endpoint::Listener && opts.port_use == PortUse::New {
            if peer.is_none() {
                return Err(TransportError::MultiaddrNotSupported(addr));
            }
            return self.hole_punch(remote).map_err(TransportError::Other);
        }
        let endpoint = self
            .dialer_for(&remote, opts.port_use)
            .map_err(|e| TransportError::Other(e.into()))?;
        let client = self.client.clone();
        let limit = self.handshake_timeout;
        Ok(async move {
            // rustls wants a server name; libp2p names peers by certificate, not by name.
            let connecting = endpoint.connect_with(client, remote, "l")?;
            upgrade(connecting, limit).await
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Upgrade, QuicError>> {
        let this = &mut *self;
        let mut i = 0;
        while i < this.listeners.len() {
            match this.listeners[i].poll(cx) {
                Poll::Ready(Some(TransportEvent::Incoming {
                    listener_id,
                    upgrade,
                    local_addr,
                    send_back_addr,
                })) => {
                    // A hole punch's connection goes to its dial.
                    let from = socket_addr(&send_back_addr).map(|(a, _)| a);
                    let upgrade = match from.and_then(|a| this.punches.remove(&a)) {
                        Some(waiting) => match waiting.send(upgrade) {
                            Ok(()) => continue,
                            Err(upgrade) => upgrade,
                        },
                        None => upgrade,
                    };
                    return Poll::Ready(TransportEvent::Incoming {
                        listener_id,
                        upgrade,
                        local_addr,
                        send_back_addr,
                    });
                }
                Poll::Ready(Some(event)) => return Poll::Ready(event),
                Poll::Ready(None) => {
                    let gone = this.listeners.swap_remove(i);
                    this.sockets.forget(gone.local);
                }
                Poll::Pending => i += 1,
            }
        }
        this.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One listening endpoint.
struct Listener {
    id: ListenerId,
    endpoint: quinn::Endpoint,
    /// A duplicate of the endpoint's socket, for hole punching.
    socket: UdpSocket,
    local: SocketAddr,
    accept: BoxFuture<'static, Option<quinn::Incoming>>,
    /// Interface changes, for a listener on an unspecified address.
    watcher: Option<IfWatcher>,
    /// The addresses it is listening on.
    addrs: HashSet<IpAddr>,
    pending: VecDeque<TransportEvent<Upgrade, QuicError>>,
    handshake_timeout: Duration,
    closed: bool,
}

fn accept(endpoint: &quinn::Endpoint) -> BoxFuture<'static, Option<quinn::Incoming>> {
    let endpoint = endpoint.clone();
    async move { endpoint.accept().await }.boxed()
}

impl Listener {
    fn new(id: ListenerId, socket: UdpSocket, transport: &Transport) -> Result<Self, QuicError> {
        let local = socket.local_addr()?;
        let duplicate = socket.try_clone()?;
        let endpoint = transport.new_endpoint(socket, Some(transport.server.clone()))?;
        let mut l = Listener {
            id,
            accept: accept(&endpoint),
            endpoint,
            socket: duplicate,
            local,
            watcher: None,
            addrs: HashSet::new(),
            pending: VecDeque::new(),
            handshake_timeout: transport.handshake_timeout,
            closed: false,
        };
        if local.ip().is_unspecified() {
            l.watcher = Some(IfWatcher::new()?);
        } else {
            l.addrs.insert(local.ip());
            l.pending.push_back(TransportEvent::NewAddress {
                listener_id: id,
                listen_addr: multiaddr(local),
            });
        }
        Ok(l)
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.endpoint.close(0u32.into(), b"");
            self.pending.push_back(TransportEvent::ListenerClosed {
                listener_id: self.id,
                reason: Ok(()),
            });
        }
    }

    /// An interface address of this listener's family, as this listener's address.
    fn interface(&self, ip: IpAddr) -> Option<Multiaddr> {
        (ip.is_ipv4() == self.local.is_ipv4())
            .then(|| multiaddr(SocketAddr::new(ip, self.local.port())))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<TransportEvent<Upgrade, QuicError>>> {
        if let Some(event) = self.pending.pop_front() {
            return Poll::Ready(Some(event));
        }
        if self.closed {
            return Poll::Ready(None);
        }
        while let Some(Poll::Ready(event)) = self.watcher.as_mut().map(|w| w.poll_if_event(cx)) {
            let listener_id = self.id;
            match event {
                Ok(IfEvent::Up(net)) => {
                    if let Some(listen_addr) = self.interface(net.addr()) {
                        self.addrs.insert(net.addr());
                        return Poll::Ready(Some(TransportEvent::NewAddress {
                            listener_id,
                            listen_addr,
                        }));
                    }
                }
                Ok(IfEvent::Down(net)) => {
                    if let Some(listen_addr) = self.interface(net.addr()) {
                        self.addrs.remove(&net.addr());
                        return Poll::Ready(Some(TransportEvent::AddressExpired {
                            listener_id,
                            listen_addr,
                        }));
                    }
                }
                Err(e) => {
                    return Poll::Ready(Some(TransportEvent::ListenerError {
                        listener_id,
                        error: e.into(),
                    }))
                }
            }
        }
        match self.accept.poll_unpin(cx) {
            Poll::Ready(Some(incoming)) => {
                self.accept = accept(&self.endpoint);
                let from = incoming.remote_address();
                // Accepted only when the upgrade is first polled: the swarm polls it once the
                // policy let the connection in (bans, per-address limits); one it refused is
                // dropped unpolled, and quinn refuses the attempt without any TLS work.
                let limit = self.handshake_timeout;
                let event = TransportEvent::Incoming {
                    listener_id: self.id,
                    upgrade: async move { upgrade(incoming.accept()?, limit).await }.boxed(),
                    local_addr: multiaddr(self.local),
                    send_back_addr: multiaddr(from),
                };
                Poll::Ready(Some(event))
            }
            Poll::Ready(None) => {
                self.close();
                self.poll(cx)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

type StreamPair = (quinn::SendStream, quinn::RecvStream);

/// A QUIC connection as libp2p's stream muxer: each libp2p stream is one bidirectional QUIC
/// stream.
pub struct Connection {
    connection: quinn::Connection,
    inbound: Option<NextStream>,
    outbound: Option<NextStream>,
    closing: Option<BoxFuture<'static, quinn::ConnectionError>>,
}

impl Connection {
    fn new(connection: quinn::Connection) -> Self {
        Connection {
            connection,
            inbound: None,
            outbound: None,
            closing: None,
        }
    }
}

type NextStream = BoxFuture<'static, Result<StreamPair, quinn::ConnectionError>>;

/// Polls the stream being accepted or opened in `slot`, starting it with `start` if none is.
fn next_stream(
    slot: &mut Option<NextStream>,
    cx: &mut Context<'_>,
    start: impl FnOnce() -> NextStream,
) -> Poll<Result<Stream, QuicError>> {
    let pair = futures::ready!(slot.get_or_insert_with(start).poll_unpin(cx));
    *slot = None;
    Poll::Ready(Ok(Stream::new(pair?)))
}

impl StreamMuxer for Connection {
    type Substream = Stream;
    type Error = QuicError;

    fn poll_inbound(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Stream, QuicError>> {
        let this = self.get_mut();
        next_stream(&mut this.inbound, cx, || {
            let c = this.connection.clone();
            async move { c.accept_bi().await }.boxed()
        })
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Stream, QuicError>> {
        let this = self.get_mut();
        next_stream(&mut this.outbound, cx, || {
            let c = this.connection.clone();
            async move { c.open_bi().await }.boxed()
        })
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), QuicError>> {
        let this = self.get_mut();
        let c = this.connection.clone();
        let closing = this.closing.get_or_insert_with(|| {
            c.close(0u32.into(), b"");
            async move { c.closed().await }.boxed()
        });
        match futures::ready!(closing.poll_unpin(cx)) {
            quinn::ConnectionError::LocallyClosed => Poll::Ready(Ok(())),
            e => Poll::Ready(Err(e.into())),
        }
    }

    fn poll(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, QuicError>> {
        // No address changes (migration is off); a closed connection shows in the stream polls.
        Poll::Pending
    }
}

/// One libp2p stream: a bidirectional QUIC stream.
pub struct Stream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// How closing the sending side ended: closing again answers the same.
    closed: Option<Result<(), io::ErrorKind>>,
}

impl Stream {
    fn new((send, recv): StreamPair) -> Self {
        Stream {
            send,
            recv,
            closed: None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(done) = self.closed {
            return Poll::Ready(done.map_err(io::Error::from));
        }
        let done = futures::ready!(AsyncWrite::poll_close(Pin::new(&mut self.send), cx));
        self.closed = Some(done.as_ref().map(|_| ()).map_err(io::Error::kind));
        Poll::Ready(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_addresses_parse_and_others_do_not() {
        let peer = PeerId::random();
        let a: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        assert_eq!(
            socket_addr(&a),
            Some(("127.0.0.1:4001".parse().unwrap(), None))
        );
        let b: Multiaddr = format!("/ip6/::1/udp/9/quic-v1/p2p/{peer}")
            .parse()
            .unwrap();
        assert_eq!(
            socket_addr(&b),
            Some(("[::1]:9".parse().unwrap(), Some(peer)))
        );
        for other in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/udp/4001/quic",
            "/ip4/127.0.0.1/udp/4001/quic-v1/webtransport",
            "/dns4/example.invalid/udp/4001/quic-v1",
        ] {
            assert_eq!(socket_addr(&other.parse().unwrap()), None, "{other}");
        }
        assert_eq!(multiaddr("127.0.0.1:4001".parse().unwrap()), a);
    }

    fn transport(key: &Keypair) -> Transport {
        let tls = crate::tls::Config::new(key).unwrap();
        Transport::new(key, &tls, 16, Duration::from_secs(2), Default::default()).unwrap()
    }

    /// The next event of `t` (a listener's), polled on this task.
    async fn next_event(t: &mut Transport) -> TransportEvent<Upgrade, QuicError> {
        use libp2p::core::Transport as _;
        futures::future::poll_fn(|cx| Pin::new(&mut *t).poll(cx)).await
    }

    #[tokio::test]
    async fn two_transports_connect_name_each_other_and_carry_a_stream_both_ways() {
        use futures::{AsyncReadExt, AsyncWriteExt};
        use libp2p::core::Transport as _;
        let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (mut a, mut b) = (transport(&ka), transport(&kb));
        let id = ListenerId::next();
        a.listen_on(id, "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap())
            .unwrap();
        let TransportEvent::NewAddress { listen_addr, .. } = next_event(&mut a).await else {
            panic!("no listen address");
        };
        let (port_use, role) = (PortUse::Reuse, Endpoint::Dialer);
        let dial = b
            .dial(listen_addr.clone(), DialOpts { role, port_use })
            .unwrap();
        let accept = async {
            match next_event(&mut a).await {
                TransportEvent::Incoming {
                    upgrade,
                    send_back_addr,
                    ..
                } => {
                    assert!(socket_addr(&send_back_addr).is_some(), "{send_back_addr}");
                    upgrade.await
                }
                _ => panic!("no incoming connection"),
            }
        };
        // The dial sends its first packet when it is first polled.
        let ((to_a, mut ca), (to_b, mut cb)) = futures::try_join!(dial, accept).unwrap();
        assert_eq!(
            (to_a, to_b),
            (ka.public().to_peer_id(), kb.public().to_peer_id())
        );

        let (out, inc) = futures::join!(
            async {
                let mut s = futures::future::poll_fn(|cx| Pin::new(&mut cb).poll_outbound(cx))
                    .await
                    .unwrap();
                s.write_all(b"ping").await.unwrap();
                s.close().await.unwrap();
                // Closing again answers the same, as libp2p's streams expect.
                s.close().await.unwrap();
                let mut back = Vec::new();
                s.read_to_end(&mut back).await.unwrap();
                back
            },
            async {
                let mut s = futures::future::poll_fn(|cx| Pin::new(&mut ca).poll_inbound(cx))
                    .await
                    .unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                s.write_all(b"pong").await.unwrap();
                s.close().await.unwrap();
                got
            }
        );
        assert_eq!(
            (out.as_slice(), inc.as_slice()),
            (&b"pong"[..], &b"ping"[..])
        );

        // Closing the connection ends the peer's side of it.
        futures::future::poll_fn(|cx| Pin::new(&mut cb).poll_close(cx))
            .await
            .unwrap();
        let after = futures::future::poll_fn(|cx| Pin::new(&mut ca).poll_inbound(cx)).await;
        assert!(after.is_err());

        // A removed listener says it closed, and its address no longer answers.
        assert!(a.remove_listener(id));
        assert!(matches!(
            next_event(&mut a).await,
            TransportEvent::ListenerClosed { listener_id, reason: Ok(()) } if listener_id == id
        ));
        let late = b.dial(listen_addr, DialOpts { role, port_use }).unwrap();
        assert!(late.await.is_err());
    }

    #[tokio::test]
    async fn an_incoming_connection_dropped_unpolled_is_refused_at_once() {
        use libp2p::core::Transport as _;
        let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (mut a, mut b) = (transport(&ka), transport(&kb));
        let listen_addr = listening(&mut a).await;
        let opts = DialOpts {
            role: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        let dial = b.dial(listen_addr, opts).unwrap();
        // What the swarm does with a connection the policy refuses: drops its upgrade.
        let refuse = async {
            match next_event(&mut a).await {
                TransportEvent::Incoming { upgrade, .. } => drop(upgrade),
                _ => panic!("no incoming connection"),
            }
        };
        let (dialed, ()) = futures::join!(dial, refuse);
        match dialed {
            Err(QuicError::Connection(quinn::ConnectionError::ConnectionClosed(c))) => {
                assert_eq!(c.error_code, quinn::TransportErrorCode::CONNECTION_REFUSED)
            }
            Err(e) => panic!("not refused: {e}"),
            Ok(_) => panic!("a refused connection was established"),
        }
    }

    /// A listener on a loopback port of `t`, and its address.
    async fn listening(t: &mut Transport) -> Multiaddr {
        use libp2p::core::Transport as _;
        t.listen_on(
            ListenerId::next(),
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        )
        .unwrap();
        match next_event(t).await {
            TransportEvent::NewAddress { listen_addr, .. } => listen_addr,
            _ => panic!("no listen address"),
        }
    }

    #[tokio::test]
    async fn a_hole_punch_takes_the_peers_connection_from_the_listener() {
        use libp2p::core::Transport as _;
        let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (mut a, mut b) = (transport(&ka), transport(&kb));
        let (la, lb) = (listening(&mut a).await, listening(&mut b).await);
        let a_id = ka.public().to_peer_id();
        // b is the listener of the connection to come: it punches towards a's listener...
        let as_listener = DialOpts {
            role: Endpoint::Listener,
            port_use: PortUse::New,
        };
        let punch = b
            .dial(la.clone().with(Protocol::P2p(a_id)), as_listener)
            .unwrap();
        // ...while a dials it from that listener's port.
        let opts = DialOpts {
            role: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        let dial = a.dial(lb, opts).unwrap();
        let both = futures::future::try_join(punch, dial);
        // b's listener must run for the connection to reach the punch; it reports nothing else.
        let stray = async {
            next_event(&mut b).await;
        };
        let (punched, dialed) = match futures::future::select(both.boxed(), stray.boxed()).await {
            Either::Left((r, _)) => r.unwrap(),
            Either::Right(_) => panic!("the connection went past the punch"),
        };
        assert_eq!(punched.0, a_id);
        assert_eq!(dialed.0, kb.public().to_peer_id());
        assert!(b.punches.is_empty());
        // A punch needs the peer's id and a listener of the family.
        let unnamed = b.dial(la, as_listener).err();
        assert!(matches!(
            unnamed,
            Some(TransportError::MultiaddrNotSupported(_))
        ));
        let v6 = format!("/ip6/::1/udp/9/quic-v1/p2p/{a_id}")
            .parse()
            .unwrap();
        assert!(matches!(
            b.dial(v6, as_listener).err(),
            Some(TransportError::Other(QuicError::NoListener))
        ));
    }

    #[test]
    fn reset_tokens_verify_only_under_their_key() {
        use quinn::crypto::HmacKey;
        let (k, other) = (ResetKey([1; 32]), ResetKey([2; 32]));
        let mut sig = [0u8; 32];
        k.sign(b"connection id", &mut sig);
        assert!(k.verify(b"connection id", &sig).is_ok());
        assert!(k.verify(b"another id", &sig).is_err());
        assert!(other.verify(b"connection id", &sig).is_err());
    }
}
