//! A typed async client for the p2pd control socket. `p2pctl` is built on it, and other Rust
//! applications on the same host can use it to drive the daemon.
//!
//! ```no_run
//! # async fn demo() -> Result<(), p2pctl::ClientError> {
//! let mut client = p2pctl::Client::connect(&p2pctl::default_socket()).await?;
//! let status = client.status().await?;
//! println!("{} has {} peers", status.peer_id, status.connected_peers);
//! # Ok(()) }
//! ```

use p2pd_proto::control::{
    client_frame, request, response, server_frame, BlockGetRequest, BlockPutRequest, BlockStat,
    BlockStatRequest, ClientFrame, ConnectRequest, ConnectResponse, DhtClosestRequest,
    DhtFindPeerRequest, DhtFindPeerResponse, DhtGetRequest, DhtGetResponse, DhtProvideRequest,
    DhtProvidersRequest, DhtPutRequest, DisconnectRequest, ErrorCode, Hello, PeersRequest,
    PeersResponse, PubsubMessage, PubsubPeersRequest, PubsubPublishRequest, PubsubPublishResponse,
    PubsubSubscribeRequest, PubsubTopicsRequest, Request, ServerFrame, StatusRequest,
    StatusResponse, StreamList, StreamListRequest, StreamOpenRequest, StreamRemoveRequest,
    StreamServeRequest,
};
use p2pd_proto::{frame, paths, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;

pub mod cli;
pub mod content;

pub use p2pd_proto::control;
pub use p2pd_proto::target::{BanTarget, Multiaddr, PeerId, PeerRef};

/// A request's time limit on the wire: milliseconds, 0 for the daemon's default.
pub fn timeout_ms(timeout: Option<Duration>) -> u64 {
    timeout.map_or(0, |t| {
        u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

/// A duration in whole seconds on the wire, 0 for none (a sub-second one counts as 1 s).
fn wire_secs(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_secs().max(1))
}

/// The socket p2pctl talks to when none is given: your own user-mode node if it runs, else the
/// packaged (system) node — its control socket, or, for a member of the read-only group who
/// may not use that, its read-only socket.
pub fn default_socket() -> PathBuf {
    use nix::unistd::{access, AccessFlags};
    let control = paths::client_socket();
    let query = paths::query_socket_for(&control);
    let denied = |p: &Path| matches!(access(p, AccessFlags::W_OK), Err(nix::errno::Errno::EACCES));
    if denied(&control) && query.exists() && !denied(&query) {
        return query;
    }
    control
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be opened; the message says how to get access.
    #[error("{0}")]
    Unreachable(String),
    /// The daemon answered with an error.
    #[error("{message}")]
    Daemon { code: ErrorCode, message: String },
    /// The daemon sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection to p2pd lost: {0}")]
    Io(#[from] std::io::Error),
    /// An argument this client refused before asking the daemon.
    #[error("{0}")]
    Usage(String),
}

fn unreachable(path: &Path, e: &std::io::Error) -> ClientError {
    let p = path.display();
    let hint = match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied. The control socket is open to root and the group p2pd only: add your user to it (sudo usermod -aG p2pd $USER, then log in again), or run p2pctl with sudo; for queries only, the group p2pd-ro (query.sock)".to_string(),
        std::io::ErrorKind::NotFound => "no such socket. Is p2pd running (systemctl status p2pd, or start one with `p2pd`)? If it uses another socket, pass --socket PATH or set P2PCTL_SOCKET".to_string(),
        std::io::ErrorKind::ConnectionRefused => "connection refused: the socket exists but no p2pd is serving it (stale after a crash?). Start p2pd, or pass --socket PATH".to_string(),
        _ => format!("{e}"),
    };
    ClientError::Unreachable(format!("cannot reach p2pd at {p}: {hint}"))
}

macro_rules! expect_kind {
    ($self:ident . $req:expr, $variant:ident) => {
        match $self.request($req).await? {
            response::Kind::$variant(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    };
}

pub struct Client {
    stream: UnixStream,
    next_id: u64,
    daemon: Hello,
}

impl Client {
    /// Connects and exchanges hellos.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let mut stream = UnixStream::connect(path)
            .await
            .map_err(|e| unreachable(path, &e))?;
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            agent: format!("p2pctl/{}", env!("CARGO_PKG_VERSION")),
            peer_id: String::new(),
        };
        frame::write_message(
            &mut stream,
            &ClientFrame {
                frame: Some(client_frame::Frame::Hello(hello)),
            },
        )
        .await
        .map_err(|e| unreachable(path, &e))?;
        let daemon = match read(&mut stream).await? {
            server_frame::Frame::Hello(h) => h,
            server_frame::Frame::Response(r) => return Err(into_error(r.kind)),
        };
        Ok(Client {
            stream,
            next_id: 1,
            daemon,
        })
    }

    /// The daemon's hello (its version and PeerId).
    pub fn daemon(&self) -> &Hello {
        &self.daemon
    }

    async fn send_request(&mut self, kind: request::Kind) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = ClientFrame {
            frame: Some(client_frame::Frame::Request(Request {
                id,
                kind: Some(kind),
            })),
        };
        frame::write_message(&mut self.stream, &req).await?;
        Ok(id)
    }

    /// Reads the next response to request `id` (errors without an id count too).
    async fn next_response(
        &mut self,
        id: u64,
    ) -> Result<p2pd_proto::control::Response, ClientError> {
        loop {
            match read(&mut self.stream).await? {
                server_frame::Frame::Response(r) if r.id == id || r.id == 0 => return Ok(r),
                _ => continue,
            }
        }
    }

    /// Sends one request and waits for its (single) response.
    pub async fn request(&mut self, kind: request::Kind) -> Result<response::Kind, ClientError> {
        let id = self.send_request(kind).await?;
        let r = self.next_response(id).await?;
        match r.kind {
            Some(response::Kind::Error(_)) | None => Err(into_error(r.kind)),
            Some(k) => Ok(k),
        }
    }

    pub async fn status(&mut self) -> Result<StatusResponse, ClientError> {
        expect_kind!(self.request::Kind::Status(StatusRequest {}), Status)
    }

    pub async fn peers(&mut self, verbose: bool) -> Result<PeersResponse, ClientError> {
        expect_kind!(self.request::Kind::Peers(PeersRequest { verbose }), Peers)
    }

    /// Dials `addr` (with `/p2p/ID` the peer is checked) within `timeout` (None: the daemon's).
    pub async fn connect_peer(
        &mut self,
        addr: &Multiaddr,
        timeout: Option<Duration>,
    ) -> Result<ConnectResponse, ClientError> {
        let req = ConnectRequest {
            multiaddr: addr.to_string(),
            timeout_ms: timeout_ms(timeout),
        };
        expect_kind!(self.request::Kind::Connect(req), Connect)
    }

    pub async fn disconnect_peer(&mut self, peer: &PeerId) -> Result<(), ClientError> {
        let req = DisconnectRequest {
            peer_id: peer.to_string(),
        };
        expect_kind!(self.request::Kind::Disconnect(req), Ack).map(|_| ())
    }
}

/// Pub/sub and DHT operations.
impl Client {
    pub async fn pubsub_topics(&mut self) -> Result<Vec<String>, ClientError> {
        expect_kind!(self.request::Kind::PubsubTopics(PubsubTopicsRequest {}), PubsubTopics)
            .map(|t| t.topics)
    }

    pub async fn pubsub_peers(&mut self, topic: &str) -> Result<Vec<String>, ClientError> {
        let req = PubsubPeersRequest {
            topic: topic.into(),
        };
        expect_kind!(self.request::Kind::PubsubPeers(req), PeerList).map(|l| l.peer_ids)
    }

    pub async fn pubsub_publish(
        &mut self,
        topic: &str,
        data: Vec<u8>,
    ) -> Result<PubsubPublishResponse, ClientError> {
        let req = PubsubPublishRequest {
            topic: topic.into(),
            data,
        };
        expect_kind!(self.request::Kind::PubsubPublish(req), PubsubPublish)
    }

    /// Publishes every message of `messages` to `topic`, pipelined: up to `window` requests are
    /// sent before their answers are read, and the daemon hands the publishes it finds waiting
    /// to its event loop together. A publish the daemon refuses as UNAVAILABLE (its send queues
    /// to the subscribers are full) is sent again after a pause, so nothing is dropped; order is
    /// kept only within what was accepted. The requests in flight follow the daemon's answers as
    /// TCP's congestion window follows losses ([`Window`]): halved after a round with a refusal,
    /// one more after each full round without; the daemon signs every publish before it can
    /// find the queues full, so a full window sent into full queues would cost a signature per
    /// refusal. Returns how many were published; stops at any other error, and then the
    /// connection still owes answers (some may sit half-read in the buffer this call read them
    /// through): connect again rather than send more requests on it.
    pub async fn pubsub_publish_many(
        &mut self,
        topic: &str,
        messages: impl IntoIterator<Item = Vec<u8>>,
        window: usize,
    ) -> Result<usize, ClientError> {
        use std::collections::{HashMap, VecDeque};
        let mut window = Window::new(window);
        let mut messages = messages.into_iter();
        let mut retry: VecDeque<Vec<u8>> = VecDeque::new();
        let mut outstanding: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut published = 0usize;
        // Answers are read through a buffer, and the publishes that refill the window go out in
        // one write: a burst costs a few system calls per window, not several per message.
        // Nothing but these answers comes on this connection, so the buffer is empty once the
        // last one has been read.
        let (rd, mut wr) = self.stream.split();
        let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
        let mut out = Vec::new();
        loop {
            while outstanding.len() < window.size() {
                let Some(data) = retry.pop_front().or_else(|| messages.next()) else {
                    break;
                };
                let id = self.next_id;
                self.next_id += 1;
                let frame = ClientFrame {
                    frame: Some(client_frame::Frame::Request(Request {
                        id,
                        kind: Some(request::Kind::PubsubPublish(PubsubPublishRequest {
                            topic: topic.into(),
                            data: data.clone(),
                        })),
                    })),
                };
                frame::encode_frame_into(&frame, &mut out);
                outstanding.insert(id, data);
            }
            if !out.is_empty() {
                tokio::io::AsyncWriteExt::write_all(&mut wr, &out).await?;
                out.clear();
            }
            if outstanding.is_empty() {
                return Ok(published);
            }
            // Every answer already here, then the window is refilled at once.
            let mut refused = false;
            loop {
                let server_frame::Frame::Response(r) = read(&mut rd).await? else {
                    continue;
                };
                let Some(data) = outstanding.remove(&r.id) else {
                    return Err(into_error(r.kind));
                };
                match r.kind {
                    Some(response::Kind::PubsubPublish(_)) => {
                        published += 1;
                        window.accepted();
                    }
                    Some(response::Kind::Error(e)) if e.code == ErrorCode::Unavailable as i32 => {
                        retry.push_back(data);
                        refused = true;
                    }
                    other => return Err(into_error(other)),
                }
                if !frame::starts_with_frame(rd.buffer()) {
                    break;
                }
            }
            if refused {
                window.refused();
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    }

    /// Subscribes to `topic`; the connection then carries only this subscription.
    pub async fn pubsub_subscribe(mut self, topic: &str) -> Result<Subscription, ClientError> {
        let req = PubsubSubscribeRequest {
            topic: topic.into(),
        };
        let id = self
            .send_request(request::Kind::PubsubSubscribe(req))
            .await?;
        // The daemon confirms before any message: from here on nothing published is missed.
        let first = self.next_response(id).await?;
        match first.kind {
            Some(response::Kind::Ack(_)) => Ok(Subscription {
                reader: tokio::io::BufReader::with_capacity(64 * 1024, self.stream),
                id,
            }),
            other => Err(into_error(other)),
        }
    }

    pub async fn dht_find_peer(
        &mut self,
        peer: &PeerId,
        timeout: Option<Duration>,
    ) -> Result<DhtFindPeerResponse, ClientError> {
        let req = DhtFindPeerRequest {
            peer_id: peer.to_string(),
            timeout_ms: timeout_ms(timeout),
        };
        expect_kind!(self.request::Kind::DhtFindPeer(req), DhtFindPeer)
    }

    pub async fn dht_get(
        &mut self,
        key: &[u8],
        timeout: Option<Duration>,
    ) -> Result<DhtGetResponse, ClientError> {
        let req = DhtGetRequest {
            key: key.to_vec(),
            timeout_ms: timeout_ms(timeout),
        };
        expect_kind!(self.request::Kind::DhtGet(req), DhtGet)
    }

    pub async fn dht_put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<(), ClientError> {
        let req = DhtPutRequest {
            key: key.to_vec(),
            value,
            timeout_ms: timeout_ms(timeout),
        };
        expect_kind!(self.request::Kind::DhtPut(req), Ack).map(|_| ())
    }

    pub async fn dht_provide(
        &mut self,
        key: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), ClientError> {
        let req = DhtProvideRequest {
            key: key.to_vec(),
            timeout_ms: timeout_ms(timeout),
        };
        expect_kind!(self.request::Kind::DhtProvide(req), Ack).map(|_| ())
    }

    pub async fn dht_providers(
        &mut self,
        key: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<String>, ClientError> {
        let req = DhtProvidersRequest {
            key: key.to_vec(),
            timeout_ms: timeout_ms(timeout),
        };
        expect_kind!(self.request::Kind::DhtProviders(req), PeerList).map(|l| l.peer_ids)
    }

    pub async fn dht_closest(
        &mut self,
        key: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<String>, ClientError> {
        let req = DhtClosestRequest {
            key: key.to_vec(),
            timeout_ms: timeout_ms(timeout),
        };
        expect_kind!(self.request::Kind::DhtClosest(req), PeerList).map(|l| l.peer_ids)
    }
}

/// Content-addressed blocks.
impl Client {
    /// Uploads everything `data` yields as one block, kept for `ttl` (None: until deleted);
    /// returns its stat (hash = SHA-256).
    pub async fn block_put<R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        mut data: R,
        ttl: Option<Duration>,
    ) -> Result<BlockStat, ClientError> {
        let ttl_secs = wire_secs(ttl);
        use tokio::io::AsyncReadExt;
        const PART: usize = 1 << 20;
        let id = self.next_id;
        self.next_id += 1;
        loop {
            // Read into the part's own buffer (no zeroing, no copy), which the frame then takes.
            let mut buf = bytes::BytesMut::with_capacity(PART);
            while buf.len() < PART {
                let n = (&mut data)
                    .take((PART - buf.len()) as u64)
                    .read_buf(&mut buf)
                    .await?;
                if n == 0 {
                    break;
                }
            }
            let last = buf.len() < PART;
            let req = BlockPutRequest {
                data: buf.freeze(),
                last,
                ttl_secs,
            };
            let frame = ClientFrame {
                frame: Some(client_frame::Frame::Request(Request {
                    id,
                    kind: Some(request::Kind::BlockPut(req)),
                })),
            };
            if let Err(e) = frame::write_message(&mut self.stream, &frame).await {
                // The daemon refused the upload midway and closed the connection: its answer,
                // already sent, says why.
                return match tokio::time::timeout(Duration::from_secs(5), self.next_response(id))
                    .await
                {
                    Ok(Ok(r)) => Err(into_error(r.kind)),
                    _ => Err(e.into()),
                };
            }
            if last {
                break;
            }
        }
        let r = self.next_response(id).await?;
        match r.kind {
            Some(response::Kind::BlockStat(s)) => Ok(s),
            other => Err(into_error(other)),
        }
    }

    /// Fetches a block (from the network if needed, verified by the daemon) into `sink`: only
    /// bytes checked against the block's hash reach it.
    pub async fn block_get<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        hash: &str,
        timeout: Option<Duration>,
        sink: W,
    ) -> Result<BlockStat, ClientError> {
        self.get_block(hash, timeout, false, sink).await
    }

    /// [`Client::block_get`] for a sink that can take back what it was given: a block fetched
    /// from the network arrives while it is fetched, each chunk once it matches the provider's
    /// manifest, before the whole is checked against the hash. `Ok` means the whole matched and
    /// the daemon stored it; after an error, everything written to `sink` must be thrown away
    /// (a provider can list chunks that match each other but not the hash). Saves the read-out
    /// after the fetch, a pass over the whole block.
    pub async fn block_get_early<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        hash: &str,
        timeout: Option<Duration>,
        sink: W,
    ) -> Result<BlockStat, ClientError> {
        self.get_block(hash, timeout, true, sink).await
    }

    async fn get_block<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        hash: &str,
        timeout: Option<Duration>,
        early: bool,
        mut sink: W,
    ) -> Result<BlockStat, ClientError> {
        use tokio::io::AsyncWriteExt;
        let req = BlockGetRequest {
            hash: hash.into(),
            timeout_ms: timeout_ms(timeout),
            early,
        };
        let id = self.send_request(request::Kind::BlockGet(req)).await?;
        let mut stat = None;
        // Buffered for the transfer: the daemon sends nothing after the last frame of it.
        let mut reader = tokio::io::BufReader::with_capacity(256 << 10, &mut self.stream);
        loop {
            let r = match read(&mut reader).await? {
                server_frame::Frame::Response(r) if r.id == id || r.id == 0 => r,
                _ => continue,
            };
            match r.kind {
                Some(response::Kind::BlockData(d)) => sink.write_all(&d.data).await?,
                Some(response::Kind::BlockStat(s)) => stat = Some(s),
                Some(response::Kind::Ack(_)) if !r.more => break,
                other => return Err(into_error(other)),
            }
        }
        sink.flush().await?;
        stat.ok_or_else(|| ClientError::Protocol("block transfer ended without its stat".into()))
    }

    /// Re-reads one stored block (or, with `None`, all) against its hash; returns how many are
    /// intact. Corrupt blocks are moved aside by the daemon and reported as an error.
    pub async fn block_verify(&mut self, hash: Option<&str>) -> Result<u32, ClientError> {
        let req = control::BlockVerifyRequest {
            hash: hash.unwrap_or_default().into(),
        };
        expect_kind!(self.request::Kind::BlockVerify(req), BlockVerify).map(|r| r.checked)
    }

    pub async fn block_stat(&mut self, hash: &str) -> Result<BlockStat, ClientError> {
        let req = BlockStatRequest { hash: hash.into() };
        expect_kind!(self.request::Kind::BlockStat(req), BlockStat)
    }
}

/// An `AsyncWrite` over a blocking writer (standard output, a file) that writes in place. For
/// a command-line client whose runtime has nothing else to do meanwhile: tokio's own stdout and
/// files hand every write to a thread of the blocking pool (a copy and two thread switches per
/// write, a third of the CPU of a `block get`).
pub struct WriteInPlace<W>(pub W);

impl<W: std::io::Write + Unpin> tokio::io::AsyncWrite for WriteInPlace<W> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Stream forwarding.
impl Client {
    /// Opens a libp2p stream to `peer` for `protocol`; the returned socket is the stream.
    pub async fn stream_open(
        mut self,
        peer: &PeerId,
        protocol: &str,
        timeout: Option<Duration>,
    ) -> Result<UnixStream, ClientError> {
        let req = StreamOpenRequest {
            peer_id: peer.to_string(),
            protocol: protocol.into(),
            timeout_ms: timeout_ms(timeout),
        };
        let id = self.send_request(request::Kind::StreamOpen(req)).await?;
        let r = self.next_response(id).await?;
        match r.kind {
            Some(response::Kind::StreamOpened(_)) => Ok(self.stream),
            other => Err(into_error(other)),
        }
    }

    /// Pipes inbound streams for `protocol` to the Unix socket `socket` (an absolute path to a
    /// socket you own).
    pub async fn stream_serve(&mut self, protocol: &str, socket: &Path) -> Result<(), ClientError> {
        let req = StreamServeRequest {
            protocol: protocol.into(),
            socket: socket.display().to_string(),
        };
        expect_kind!(self.request::Kind::StreamServe(req), Ack).map(|_| ())
    }

    pub async fn stream_list(&mut self) -> Result<StreamList, ClientError> {
        expect_kind!(self.request::Kind::StreamList(StreamListRequest {}), StreamList)
    }

    pub async fn stream_remove(&mut self, protocol: &str) -> Result<(), ClientError> {
        let req = StreamRemoveRequest {
            protocol: protocol.into(),
        };
        expect_kind!(self.request::Kind::StreamRemove(req), Ack).map(|_| ())
    }
}

/// Peer policy: bans, trusted peers, limits.
impl Client {
    /// Bans a peer, IP or CIDR for `duration` (None: permanently), with an optional reason.
    pub async fn ban(
        &mut self,
        target: &BanTarget,
        duration: Option<Duration>,
        reason: Option<&str>,
    ) -> Result<control::BanEntry, ClientError> {
        let req = control::BanRequest {
            target: target.to_string(),
            duration_secs: wire_secs(duration),
            reason: reason.unwrap_or_default().into(),
        };
        let list = expect_kind!(self.request::Kind::Ban(req), BanList)?;
        list.bans
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty ban answer".into()))
    }

    /// Bans every target in `targets` for `duration` (None: permanently) as few changes (at
    /// most [`p2pd_proto::limits::IMPORT_TARGETS`] per request); returns how many were banned
    /// and the ones the daemon refused, with why.
    pub async fn ban_import(
        &mut self,
        targets: &[BanTarget],
        duration: Option<Duration>,
        reason: Option<&str>,
    ) -> Result<control::BanImportResponse, ClientError> {
        let mut all = control::BanImportResponse::default();
        for chunk in targets.chunks(p2pd_proto::limits::IMPORT_TARGETS) {
            let req = control::BanImportRequest {
                targets: chunk.iter().map(|t| t.to_string()).collect(),
                duration_secs: wire_secs(duration),
                reason: reason.unwrap_or_default().into(),
            };
            let r = expect_kind!(self.request::Kind::BanImport(req), BanImport)?;
            all.accepted += r.accepted;
            all.rejected.extend(r.rejected);
        }
        Ok(all)
    }

    pub async fn unban(&mut self, target: &BanTarget) -> Result<(), ClientError> {
        let req = control::UnbanRequest {
            target: target.to_string(),
        };
        expect_kind!(self.request::Kind::Unban(req), Ack).map(|_| ())
    }

    /// Every ban in force (fetched a page at a time).
    pub async fn bans(&mut self) -> Result<control::BanList, ClientError> {
        let mut all = control::BanList::default();
        loop {
            let req = control::BansRequest {
                offset: u32::try_from(all.bans.len()).unwrap_or(u32::MAX),
                limit: 0,
            };
            let page = expect_kind!(self.request::Kind::Bans(req), BanList)?;
            all.total = page.total;
            let done =
                page.bans.is_empty() || all.bans.len() + page.bans.len() >= page.total as usize;
            all.bans.extend(page.bans);
            if done {
                return Ok(all);
            }
        }
    }

    /// The trusted peers, configured and runtime.
    pub async fn trust_list(&mut self) -> Result<control::TrustList, ClientError> {
        self.trust(control::trust_request::Action::List, String::new())
            .await
    }

    /// Trusts a peer (with an address, it is redialled there); returns the list after.
    pub async fn trust_add(&mut self, peer: &PeerRef) -> Result<control::TrustList, ClientError> {
        self.trust(control::trust_request::Action::Add, peer.to_string())
            .await
    }

    /// Stops trusting a peer added at runtime; returns the list after.
    pub async fn trust_remove(&mut self, peer: &PeerId) -> Result<control::TrustList, ClientError> {
        self.trust(control::trust_request::Action::Remove, peer.to_string())
            .await
    }

    async fn trust(
        &mut self,
        action: control::trust_request::Action,
        target: String,
    ) -> Result<control::TrustList, ClientError> {
        let req = control::TrustRequest {
            action: action as i32,
            target,
        };
        expect_kind!(self.request::Kind::Trust(req), TrustList)
    }

    pub async fn limits(&mut self) -> Result<control::LimitList, ClientError> {
        expect_kind!(self.request::Kind::Limits(control::LimitsRequest {}), LimitList)
    }

    pub async fn limits_set(
        &mut self,
        name: &str,
        value: &str,
    ) -> Result<control::LimitList, ClientError> {
        let req = control::LimitsSetRequest {
            name: name.into(),
            value: value.into(),
        };
        expect_kind!(self.request::Kind::LimitsSet(req), LimitList)
    }
}

/// Service operations.
impl Client {
    /// Re-reads the daemon's config and applies it; an invalid one is refused with the reason.
    pub async fn reload(&mut self) -> Result<control::ReloadResponse, ClientError> {
        expect_kind!(self.request::Kind::Reload(control::ReloadRequest {}), Reload)
    }

    /// Replaces the daemon's log filter until the next reload or restart.
    pub async fn log_level(&mut self, filter: &str) -> Result<(), ClientError> {
        let req = control::LogLevelRequest {
            filter: filter.into(),
        };
        expect_kind!(self.request::Kind::LogLevel(req), Ack).map(|_| ())
    }
}

/// A live pub/sub subscription. Dropping it unsubscribes.
pub struct Subscription {
    /// Buffered: the daemon sends whatever messages are waiting in one write.
    reader: tokio::io::BufReader<UnixStream>,
    id: u64,
}

impl Subscription {
    /// Whether a whole message has already arrived, so [`Subscription::next`] answers without
    /// waiting (a caller can batch its output until this is false).
    pub fn has_buffered(&self) -> bool {
        frame::starts_with_frame(self.reader.buffer())
    }

    /// The next message, or `None` when the daemon ended the subscription.
    pub async fn next(&mut self) -> Option<Result<PubsubMessage, ClientError>> {
        let r = loop {
            match read(&mut self.reader).await {
                Ok(server_frame::Frame::Response(r)) if r.id == self.id || r.id == 0 => break r,
                Ok(_) => continue,
                Err(e) => return Some(Err(e)),
            }
        };
        match r.kind {
            Some(response::Kind::PubsubMessage(m)) => Some(Ok(m)),
            Some(response::Kind::Error(_)) | None => Some(Err(into_error(r.kind))),
            Some(_) => None,
        }
    }
}

async fn read<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<server_frame::Frame, ClientError> {
    match frame::read_message::<ServerFrame, _>(stream, MAX_FRAME_BYTES).await {
        Ok(Some(ServerFrame { frame: Some(f) })) => Ok(f),
        Ok(Some(ServerFrame { frame: None })) => {
            Err(ClientError::Protocol("empty frame from p2pd".into()))
        }
        Ok(None) => Err(ClientError::Protocol("p2pd closed the connection".into())),
        Err(frame::FrameError::Io(e)) => Err(ClientError::Io(e)),
        Err(e) => Err(ClientError::Protocol(e.to_string())),
    }
}

fn into_error(kind: Option<response::Kind>) -> ClientError {
    match kind {
        Some(response::Kind::Error(e)) => ClientError::Daemon {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
        },
        other => ClientError::Protocol(format!("unexpected response {other:?}")),
    }
}

fn unexpected(kind: response::Kind) -> ClientError {
    ClientError::Protocol(format!("unexpected response kind {kind:?}"))
}

/// How many publishes [`Client::pubsub_publish_many`] keeps in flight: additive increase,
/// multiplicative decrease between 1 and the caller's cap.
#[derive(Debug)]
struct Window {
    size: usize,
    cap: usize,
    /// Accepted since the size last grew.
    accepted: usize,
}

impl Window {
    fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Window {
            size: cap,
            cap,
            accepted: 0,
        }
    }

    fn size(&self) -> usize {
        self.size
    }

    /// One more in flight after a window's worth of accepted publishes.
    fn accepted(&mut self) {
        self.accepted += 1;
        if self.accepted >= self.size {
            self.accepted = 0;
            self.size = (self.size + 1).min(self.cap);
        }
    }

    /// Half as many after a round of answers with a refusal in it.
    fn refused(&mut self) {
        self.size = (self.size / 2).max(1);
        self.accepted = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn the_window_halves_on_refusal_and_grows_by_one_per_full_round() {
        let mut w = Window::new(256);
        assert_eq!(w.size(), 256);
        w.refused();
        assert_eq!(w.size(), 128);
        for _ in 0..127 {
            w.accepted();
        }
        assert_eq!(
            w.size(),
            128,
            "grows only after a whole window was accepted"
        );
        w.accepted();
        assert_eq!(w.size(), 129);
        for _ in 0..20 {
            w.refused();
        }
        assert_eq!(w.size(), 1, "never below one");
        for _ in 0..100_000 {
            w.accepted();
        }
        assert_eq!(w.size(), 256, "never above the caller's cap");
        assert_eq!(Window::new(0).size(), 1);
    }
}
