//! The control server: accepts local clients on a Unix socket, speaks the framed protobuf
//! protocol of `p2pd_proto::control`, and translates each request into a node command.
//!
//! The codec lives in `p2pd_proto::frame`, the dispatch table here, and each request kind in its
//! own module. A client can only hurt its own connection: frames are size-capped, a broken
//! frame ends that connection, and the number of concurrent clients is bounded.

mod block;
pub mod bounds;
mod connect;
mod dht;
mod disconnect;
pub mod handoff;
mod peers;
mod policy;
mod pubsub;
mod service;
mod socket;
mod status;
mod stream;

pub use socket::{bind, take_passed_sockets, Passed};

use crate::node::Code;
use crate::node::{ApiError, NodeHandle};
use futures::stream::{BoxStream, StreamExt};
use p2pd_proto::control::{
    client_frame, request, response, server_frame, ClientFrame, ErrorCode, Hello, Request,
    Response, ServerFrame,
};
use p2pd_proto::frame::{self, FrameError};
use p2pd_proto::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{UnixListener, UnixStream};

/// A client must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What a socket lets its callers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The control socket: everything.
    Full,
    /// The read-only socket: queries that change nothing.
    ReadOnly,
}

/// Who is on the other end of a control connection (from SO_PEERCRED), and through which socket.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub access: Access,
}

impl Caller {
    /// Records a state-changing request in the log with the caller's identity.
    pub fn audit(&self, request: &str, target: &str) {
        tracing::info!(
            event = "control_request",
            caller_uid = self.uid,
            caller_gid = self.gid,
            caller_pid = self.pid,
            request,
            subject = target,
            "control request"
        );
    }
}

/// What every control connection needs: the node, and the block store (read directly, so
/// large transfers never pass through the event loop).
pub struct Ctx {
    pub node: NodeHandle,
    /// What all clients together may hold in frames being read.
    pub budget: bounds::Budget,
    pub peer_id: libp2p::PeerId,
    pub store: crate::blocks::BlockStore,
    pub streams: crate::streams::Forwarder,
    pub reloader: Arc<crate::reload::Reloader>,
}

pub struct ControlServer {
    ctx: Arc<Ctx>,
    slots: Arc<bounds::Slots>,
}

impl ControlServer {
    pub fn new(
        node: NodeHandle,
        peer_id: libp2p::PeerId,
        store: crate::blocks::BlockStore,
        streams: crate::streams::Forwarder,
        reloader: Arc<crate::reload::Reloader>,
    ) -> Self {
        ControlServer {
            ctx: Arc::new(Ctx {
                node,
                budget: bounds::Budget::new(bounds::FRAMES_BUDGET),
                peer_id,
                store,
                streams,
                reloader,
            }),
            // Shared by both sockets, with a quota per uid and slots kept for root.
            slots: bounds::Slots::new(),
        }
    }

    /// Serves one socket; a server may serve several (the control and the read-only socket).
    pub fn serve(
        &self,
        listener: UnixListener,
        access: Access,
    ) -> impl std::future::Future<Output = ()> {
        let admit = self.admitter();
        async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let caller = handoff::caller_of(std::os::fd::AsFd::as_fd(&stream), access);
                admit(stream, caller);
            }
        }
    }

    /// Serves the connections `p2pd gate` hands over on the passed hand-over socket.
    pub fn serve_handoff(
        &self,
        listener: std::os::fd::OwnedFd,
    ) -> impl std::future::Future<Output = ()> {
        handoff::serve(listener, self.admitter())
    }

    /// Starts serving one accepted connection of `caller`, if a slot is free for its uid (if
    /// not, the client is told why and the connection closed).
    fn admitter(&self) -> impl Fn(UnixStream, Caller) + Clone + Send + 'static {
        let (ctx, slots) = (self.ctx.clone(), self.slots.clone());
        move |stream: UnixStream, caller: Caller| match slots.take(caller.uid) {
            Ok(slot) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    serve(stream, ctx, caller).await;
                    drop(slot);
                });
            }
            Err(why) => {
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        send_error(&mut stream, 0, ErrorCode::Unavailable, &why),
                    )
                    .await;
                });
            }
        }
    }
}

/// What a request handler produced: one answer, or a stream of them (ended by the client).
// One short-lived value per request: boxing the common case would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Reply(Result<response::Kind, ApiError>),
    Stream(BoxStream<'static, response::Kind>),
}

impl From<Result<response::Kind, ApiError>> for Outcome {
    fn from(r: Result<response::Kind, ApiError>) -> Self {
        Outcome::Reply(r)
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, frame: server_frame::Frame) -> std::io::Result<()> {
    frame::write_message(w, &ServerFrame { frame: Some(frame) }).await
}

fn response_frame(id: u64, more: bool, kind: response::Kind) -> ServerFrame {
    ServerFrame {
        frame: Some(server_frame::Frame::Response(Response {
            id,
            more,
            kind: Some(kind),
        })),
    }
}

/// The API's error code for a failure of the core.
pub(crate) fn wire_code(code: Code) -> ErrorCode {
    match code {
        Code::BadRequest => ErrorCode::BadRequest,
        Code::NotFound => ErrorCode::NotFound,
        Code::Timeout => ErrorCode::Timeout,
        Code::Unavailable => ErrorCode::Unavailable,
        Code::Failed => ErrorCode::Failed,
        Code::Internal => ErrorCode::Internal,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::UnknownRequest => ErrorCode::UnknownRequest,
    }
}

pub(crate) fn error_frame(id: u64, code: ErrorCode, message: &str) -> ServerFrame {
    let err = p2pd_proto::control::Error {
        code: code as i32,
        message: message.into(),
    };
    response_frame(id, false, response::Kind::Error(err))
}

/// Answers that are already waiting go out together in one write until they add up to this
/// much (a block's chunk of 1 MiB goes alone); more waits for the next write.
const BATCH_BYTES: usize = 256 * 1024;

/// A BlockData answer at least this large goes to the socket from where it is (see
/// [`block_data_head`]) instead of being copied into the batch.
const IN_PLACE_BYTES: usize = 64 * 1024;

/// Response tags of the frame around a block's bytes (control.proto): `ServerFrame.response`,
/// `Response.block_data`, `BlockData.data`.
const TAG_RESPONSE: u32 = 2;
const TAG_BLOCK_DATA: u32 = 41;
const TAG_DATA: u32 = 1;

/// The frame of a BlockData answer of `len` (> 0) bytes up to those bytes, which end it: they
/// are BlockData's only field, and the answer's kind is encoded after its id and `more`. The
/// bytes then go to the socket from where they are, not copied into the frame first.
fn block_data_head(id: u64, more: bool, len: usize) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
    use prost::Message;
    let ld = |tag: u32, inner: usize| key_len(tag) + encoded_len_varint(inner as u64) + inner;
    let bare = Response {
        id,
        more,
        kind: None,
    };
    let data = ld(TAG_DATA, len);
    let response = bare.encoded_len() + ld(TAG_BLOCK_DATA, data);
    let mut head = Vec::with_capacity(32 + bare.encoded_len());
    encode_varint(ld(TAG_RESPONSE, response) as u64, &mut head);
    for (tag, inner) in [
        (TAG_RESPONSE, response),
        (TAG_BLOCK_DATA, data),
        (TAG_DATA, len),
    ] {
        encode_key(tag, WireType::LengthDelimited, &mut head);
        encode_varint(inner as u64, &mut head);
        if tag == TAG_RESPONSE {
            // Encoding into a Vec cannot fail: it grows as needed.
            let _ = bare.encode(&mut head);
        }
    }
    head
}

/// Several frames in one write (and one flush).
async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    frames: &[ServerFrame],
) -> std::io::Result<()> {
    let mut out = Vec::new();
    for f in frames {
        frame::encode_frame_into(f, &mut out);
    }
    write_encoded(w, &out).await
}

async fn write_encoded<W: AsyncWrite + Unpin>(w: &mut W, out: &[u8]) -> std::io::Result<()> {
    tokio::io::AsyncWriteExt::write_all(w, out).await?;
    tokio::io::AsyncWriteExt::flush(w).await
}

async fn send_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    id: u64,
    more: bool,
    kind: response::Kind,
) -> std::io::Result<()> {
    frame::write_message(w, &response_frame(id, more, kind)).await
}

async fn send_error<W: AsyncWrite + Unpin>(
    w: &mut W,
    id: u64,
    code: ErrorCode,
    message: &str,
) -> std::io::Result<()> {
    frame::write_message(w, &error_frame(id, code, message)).await
}

/// Tells the client why its connection closes: `what` `after`.
async fn closing<W: AsyncWrite + Unpin>(
    w: &mut W,
    code: ErrorCode,
    what: &str,
    after: Duration,
) -> std::io::Result<()> {
    let msg = format!(
        "{what} {}; closing the connection",
        humantime::format_duration(after)
    );
    send_error(w, 0, code, &msg).await
}

/// Streams `items` as responses with `more = true` until the stream ends (then a final Ack) or
/// the client closes or sends anything (which ends the stream).
async fn stream_responses<R, W>(
    rd: &mut R,
    wr: &mut W,
    id: u64,
    mut items: BoxStream<'static, response::Kind>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use futures::FutureExt;
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            item = items.next() => {
                // Let the rest of the runtime run once first (the node, in a burst, delivering
                // the next messages), then whatever is waiting goes out in the same write, up
                // to BATCH_BYTES: one wake-up of the client per batch, not per message.
                tokio::task::yield_now().await;
                let (mut out, mut ended, mut next) = (Vec::new(), false, item);
                // A large chunk that ends this write, sent from where it is.
                let mut in_place = None;
                loop {
                    match next {
                        Some(response::Kind::BlockData(d)) if d.data.len() >= IN_PLACE_BYTES => {
                            out.extend_from_slice(&block_data_head(id, true, d.data.len()));
                            in_place = Some(d.data);
                            break;
                        }
                        Some(kind) => frame::encode_frame_into(&response_frame(id, true, kind), &mut out),
                        None => {
                            ended = true;
                            break;
                        }
                    }
                    if out.len() >= BATCH_BYTES {
                        break;
                    }
                    // Outside tokio's cooperative budget: the channel behind a subscription
                    // would otherwise give at most 128 messages per turn of this task, and a
                    // subscriber fell behind a burst the node delivered faster than that
                    // (queue overflowed; messages dropped).
                    match tokio::task::coop::unconstrained(items.next()).now_or_never() {
                        Some(n) => next = n,
                        None => break,
                    }
                }
                // The stream ended (now, or within what was waiting): the final Ack.
                if ended {
                    let ack = response::Kind::Ack(p2pd_proto::control::Ack {});
                    frame::encode_frame_into(&response_frame(id, false, ack), &mut out);
                }
                match in_place {
                    Some(data) => {
                        tokio::io::AsyncWriteExt::write_all(wr, &out).await?;
                        write_encoded(wr, &data).await?;
                    }
                    None => write_encoded(wr, &out).await?,
                }
                if ended {
                    return Ok(());
                }
            },
            _ = rd.read(&mut probe) => return Ok(()),
        }
    }
}

/// Serves one client until it closes or breaks the protocol.
async fn serve(mut stream: UnixStream, ctx: Arc<Ctx>, caller: Caller) {
    // An opened libp2p stream takes over the connection once the framed part is done.
    if let Some((id, req)) = serve_frames(&mut stream, &ctx, caller).await {
        stream::open(&ctx, &caller, id, req, stream).await;
    }
}

/// The framed part of a connection. Returns a stream-open request whose success turns the
/// connection into a raw byte pipe.
async fn serve_frames(
    stream: &mut UnixStream,
    ctx: &Ctx,
    caller: Caller,
) -> Option<(u64, p2pd_proto::control::StreamOpenRequest)> {
    let (rd, mut wr) = stream.split();
    // Buffered: a frame's length prefix is read without a syscall per byte, and frames a client
    // pipelines are seen together. Clients wait for StreamOpened before they send stream bytes,
    // so nothing is left in here when the connection becomes a raw pipe.
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let hello_within = bounds::Deadlines {
        idle: HELLO_TIMEOUT,
        frame: HELLO_TIMEOUT,
    };
    let hello = match bounds::read_frame(&mut rd, &ctx.budget, hello_within).await {
        Ok(Some(ClientFrame {
            frame: Some(client_frame::Frame::Hello(h)),
        })) => h,
        Ok(None) | Err(bounds::ReadError::Idle | bounds::ReadError::Slow) => return None,
        Ok(Some(_)) => {
            let msg = "the first frame must be a Hello";
            let _ = send_error(&mut wr, 0, ErrorCode::BadRequest, msg).await;
            return None;
        }
        Err(bounds::ReadError::Frame(e)) => {
            let _ = reject_frame(&mut wr, &e).await;
            return None;
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        let msg = format!(
            "control protocol version {} is not supported by p2pd {} (it speaks version {PROTOCOL_VERSION}); use a p2pctl of the same release",
            hello.protocol_version,
            env!("CARGO_PKG_VERSION")
        );
        let _ = send_error(&mut wr, 0, ErrorCode::UnsupportedVersion, &msg).await;
        return None;
    }
    let stream = &mut wr;
    let ours = Hello {
        protocol_version: PROTOCOL_VERSION,
        agent: crate::behaviour::agent_version(),
        peer_id: ctx.peer_id.to_string(),
    };
    if send(stream, server_frame::Frame::Hello(ours))
        .await
        .is_err()
    {
        return None;
    }
    loop {
        let frame = match bounds::read_frame(&mut rd, &ctx.budget, bounds::DEADLINES).await {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(bounds::ReadError::Idle) => {
                let (what, after) = ("no request for", bounds::DEADLINES.idle);
                let _ = closing(stream, ErrorCode::Unavailable, what, after).await;
                return None;
            }
            Err(bounds::ReadError::Slow) => {
                let (what, after) = (
                    "a frame did not arrive whole within",
                    bounds::DEADLINES.frame,
                );
                let _ = closing(stream, ErrorCode::BadRequest, what, after).await;
                return None;
            }
            Err(bounds::ReadError::Frame(e)) => {
                if reject_frame(stream, &e).await.is_err() || !matches!(e, FrameError::Decode(_)) {
                    return None;
                }
                continue;
            }
        };
        let (id, outcome) = match frame.frame {
            Some(client_frame::Frame::Request(Request {
                id,
                kind: Some(request::Kind::StreamOpen(req)),
            })) => match bounds::stream_open(&req) {
                Ok(()) => return Some((id, req)),
                Err(e) => (id, Outcome::Reply(Err(e))),
            },
            Some(client_frame::Frame::Request(Request {
                id,
                kind: Some(request::Kind::BlockPut(first)),
            })) => match block::put(ctx, &caller, &mut rd, id, first).await {
                block::Upload {
                    answer: Err(e),
                    close: true,
                } => {
                    let _ = send_error(stream, id, wire_code(e.code), &e.message).await;
                    return None;
                }
                block::Upload { answer, .. } => (id, answer.into()),
            },
            Some(client_frame::Frame::Request(req))
                if matches!(req.kind, Some(request::Kind::PubsubPublish(_))) =>
            {
                if publish_batch(ctx, &caller, &mut rd, stream, req)
                    .await
                    .is_err()
                {
                    return None;
                }
                continue;
            }
            Some(client_frame::Frame::Request(req)) => (req.id, dispatch(ctx, &caller, req).await),
            Some(client_frame::Frame::Hello(_)) => (
                0,
                Err(ApiError::new(
                    Code::BadRequest,
                    "hello was already exchanged",
                ))
                .into(),
            ),
            None => (
                0,
                Err(ApiError::new(Code::UnknownRequest, "unknown frame kind")).into(),
            ),
        };
        let sent = match outcome {
            Outcome::Reply(Ok(kind)) => send_response(stream, id, false, kind).await,
            Outcome::Reply(Err(e)) => send_error(stream, id, wire_code(e.code), &e.message).await,
            Outcome::Stream(items) => {
                // A stream occupies the connection until the client closes it.
                let _ = stream_responses(&mut rd, stream, id, items).await;
                return None;
            }
        };
        if sent.is_err() {
            return None;
        }
    }
}

/// Most publishes of one connection in flight at once.
const MAX_BATCH: usize = 1024;

/// Publishes pipelined by a client: `first` and every further publish whose frame is already
/// buffered go to the node together (one wake of the event loop for the lot), and their answers
/// go back in one write, in order. The first frame that is not a whole buffered publish ends the
/// batch and is read as usual afterwards.
async fn publish_batch<R, W>(
    ctx: &Ctx,
    caller: &Caller,
    rd: &mut tokio::io::BufReader<R>,
    wr: &mut W,
    first: Request,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH && frame::starts_with_frame(rd.buffer()) {
        // Peek: only publishes join the batch.
        let Ok(Some(f)) =
            frame::read_message::<ClientFrame, _>(&mut &rd.buffer()[..], MAX_FRAME_BYTES).await
        else {
            break;
        };
        match f.frame {
            Some(client_frame::Frame::Request(req))
                if matches!(req.kind, Some(request::Kind::PubsubPublish(_))) =>
            {
                // The peeked frame is whole in the buffer: consume exactly its bytes.
                let _ = frame::read_frame(rd, MAX_FRAME_BYTES).await;
                batch.push(req);
            }
            _ => break,
        }
    }
    let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
    let outcomes =
        futures::future::join_all(batch.into_iter().map(|req| dispatch(ctx, caller, req))).await;
    let frames: Vec<ServerFrame> = ids
        .into_iter()
        .zip(outcomes)
        .map(|(id, outcome)| match outcome {
            Outcome::Reply(Ok(kind)) => response_frame(id, false, kind),
            Outcome::Reply(Err(e)) => error_frame(id, wire_code(e.code), &e.message),
            Outcome::Stream(_) => error_frame(id, ErrorCode::Internal, "unexpected stream"),
        })
        .collect();
    write_frames(wr, &frames).await
}

/// Answers a frame that could not be read. Returns Err when the connection should close anyway.
async fn reject_frame<W: AsyncWrite + Unpin>(
    stream: &mut W,
    e: &FrameError,
) -> std::io::Result<()> {
    match e {
        FrameError::TooLarge { .. } => {
            send_error(stream, 0, ErrorCode::FrameTooLarge, &e.to_string()).await
        }
        FrameError::Decode(_) | FrameError::BadLength => {
            send_error(stream, 0, ErrorCode::BadRequest, &e.to_string()).await
        }
        FrameError::Truncated | FrameError::Io(_) => Ok(()),
    }
}

/// Requests the read-only socket answers: they read state and send nothing to the network.
fn read_only(kind: &request::Kind) -> bool {
    use request::Kind as K;
    matches!(
        kind,
        K::Status(_)
            | K::Peers(_)
            | K::PubsubTopics(_)
            | K::PubsubPeers(_)
            | K::BlockStat(_)
            | K::StreamList(_)
            | K::Bans(_)
            | K::Limits(_)
    ) || matches!(kind, K::Trust(t) if t.action() == p2pd_proto::control::trust_request::Action::List)
}

/// The dispatch table: one module per request kind.
async fn dispatch(ctx: &Ctx, caller: &Caller, req: Request) -> Outcome {
    use request::Kind as K;
    let node = &ctx.node;
    let Some(kind) = req.kind else {
        return Err(ApiError::new(
            Code::UnknownRequest,
            "unknown request kind; is p2pctl newer than this p2pd?",
        ))
        .into();
    };
    // Sizes first: nothing below parses or logs a field longer than its bound.
    if let Err(e) = bounds::check(&kind) {
        return Err(e).into();
    }
    if caller.access == Access::ReadOnly && !read_only(&kind) {
        return Err(ApiError::new(
            Code::PermissionDenied,
            "this is the read-only socket: it answers queries (status, peers, limits, bans, \
             trust ls, pubsub topics, stream ls, block stat) but changes nothing. Use the control socket \
             (/run/p2pd/control.sock) as root or a member of the group p2pd",
        ))
        .into();
    }
    match kind {
        K::Status(r) => status::handle(node, r).await.into(),
        K::Peers(r) => peers::handle(node, r).await.into(),
        K::Connect(r) => connect::handle(node, caller, r).await.into(),
        K::Disconnect(r) => disconnect::handle(node, caller, r).await.into(),
        K::PubsubTopics(_) => pubsub::topics(node).await.into(),
        K::PubsubPeers(r) => pubsub::peers(node, r).await.into(),
        K::PubsubPublish(r) => pubsub::publish(node, caller, r).await.into(),
        K::PubsubSubscribe(r) => pubsub::subscribe(node, r).await,
        K::DhtFindPeer(r) => dht::find_peer(node, r).await.into(),
        K::DhtGet(r) => dht::get(node, r).await.into(),
        K::DhtPut(r) => dht::put(node, caller, r).await.into(),
        K::DhtProvide(r) => dht::provide(node, caller, r).await.into(),
        K::DhtProviders(r) => dht::providers(node, r).await.into(),
        K::DhtClosest(r) => dht::closest(node, r).await.into(),
        K::BlockGet(r) => block::get(ctx, r).await,
        K::BlockStat(r) => block::stat(ctx, r).await.into(),
        K::BlockVerify(r) => block::verify(ctx, r).await.into(),
        K::BlockPut(_) | K::StreamOpen(_) => {
            Err(ApiError::new(Code::BadRequest, "request out of sequence")).into()
        }
        K::StreamServe(r) => stream::serve(ctx, caller, r).into(),
        K::StreamList(_) => stream::list(ctx).into(),
        K::StreamRemove(r) => stream::remove(ctx, caller, r).await.into(),
        K::Ban(r) => policy::ban(node, caller, r).await.into(),
        K::Unban(r) => policy::unban(node, caller, r).await.into(),
        K::BanImport(r) => policy::ban_import(node, caller, r).await.into(),
        K::Bans(r) => policy::bans(node, r).await.into(),
        K::Trust(r) => policy::trust(node, caller, r).await.into(),
        K::Limits(_) => policy::limits(node).await.into(),
        K::LimitsSet(r) => policy::limits_set(node, caller, r).await.into(),
        K::Reload(_) => service::reload(ctx, caller).await.into(),
        K::LogLevel(r) => service::log_level(caller, r).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_data_head_and_its_bytes_are_the_frame() {
        for len in [
            1,
            127,
            128,
            16_383,
            16_384,
            IN_PLACE_BYTES,
            1 << 20,
            (1 << 21) + 3,
        ] {
            for id in [0, 1, 300, u64::MAX] {
                for more in [false, true] {
                    let data = bytes::Bytes::from(vec![0xa5; len]);
                    let kind = response::Kind::BlockData(p2pd_proto::control::BlockData {
                        data: data.clone(),
                    });
                    let mut split = block_data_head(id, more, len);
                    split.extend_from_slice(&data);
                    assert!(
                        split == frame::encode_frame(&response_frame(id, more, kind)),
                        "len {len}, id {id}, more {more}"
                    );
                }
            }
        }
    }
}
