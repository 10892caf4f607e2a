//! The control server: accepts local clients on a Unix socket, speaks the framed protobuf
//! protocol of `p2pd_proto::control`, and translates each request into a node command.
//!
//! The codec lives in `p2pd_proto::frame`, the dispatch table here, and each request kind in its
//! own module. A client can only hurt its own connection: frames are size-capped, a broken
//! frame ends that connection, and the number of concurrent clients is bounded.

mod connect;
mod disconnect;
mod peers;
mod socket;
mod status;

pub use socket::bind;

use crate::node::{ApiError, NodeHandle};
use p2pd_proto::control::{
    client_frame, request, response, server_frame, ClientFrame, ErrorCode, Hello, Request,
    Response, ServerFrame,
};
use p2pd_proto::frame::{self, FrameError};
use p2pd_proto::{MAX_FRAME_BYTES, PROTOCOL_VERSION};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// A client must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent control connections; more are refused with UNAVAILABLE.
const MAX_CLIENTS: usize = 256;

/// Who is on the other end of a control connection (from SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub pid: i32,
}

impl Caller {
    /// Records a state-changing request in the log with the caller's identity.
    pub fn audit(&self, request: &str, target: &str) {
        tracing::info!(
            event = "control_request",
            caller_uid = self.uid,
            caller_pid = self.pid,
            request,
            target,
            "control request"
        );
    }
}

pub struct ControlServer {
    listener: UnixListener,
    node: NodeHandle,
    peer_id: String,
    slots: Arc<Semaphore>,
}

impl ControlServer {
    pub fn new(listener: UnixListener, node: NodeHandle, peer_id: String) -> Self {
        ControlServer {
            listener,
            node,
            peer_id,
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
        }
    }

    pub async fn run(self) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let node = self.node.clone();
            let peer_id = self.peer_id.clone();
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        serve(stream, node, peer_id).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let _ = send_error(
                            &mut stream,
                            0,
                            ErrorCode::Unavailable,
                            "too many control clients; try again",
                        )
                        .await;
                    });
                }
            }
        }
    }
}

fn caller_of(stream: &UnixStream) -> Caller {
    match stream.peer_cred() {
        Ok(c) => Caller {
            uid: c.uid(),
            pid: c.pid().unwrap_or(-1),
        },
        Err(_) => Caller {
            uid: u32::MAX,
            pid: -1,
        },
    }
}

async fn send(stream: &mut UnixStream, frame: server_frame::Frame) -> std::io::Result<()> {
    frame::write_message(stream, &ServerFrame { frame: Some(frame) }).await
}

async fn send_response(
    stream: &mut UnixStream,
    id: u64,
    kind: response::Kind,
) -> std::io::Result<()> {
    send(
        stream,
        server_frame::Frame::Response(Response {
            id,
            more: false,
            kind: Some(kind),
        }),
    )
    .await
}

async fn send_error(
    stream: &mut UnixStream,
    id: u64,
    code: ErrorCode,
    message: &str,
) -> std::io::Result<()> {
    let err = p2pd_proto::control::Error {
        code: code as i32,
        message: message.into(),
    };
    send_response(stream, id, response::Kind::Error(err)).await
}

/// Serves one client until it closes or breaks the protocol.
async fn serve(mut stream: UnixStream, node: NodeHandle, peer_id: String) {
    let caller = caller_of(&stream);
    let hello = match tokio::time::timeout(
        HELLO_TIMEOUT,
        frame::read_message::<ClientFrame, _>(&mut stream, MAX_FRAME_BYTES),
    )
    .await
    {
        Ok(Ok(Some(ClientFrame {
            frame: Some(client_frame::Frame::Hello(h)),
        }))) => h,
        Ok(Ok(None)) => return,
        Ok(Ok(Some(_))) => {
            let _ = send_error(
                &mut stream,
                0,
                ErrorCode::BadRequest,
                "the first frame must be a Hello",
            )
            .await;
            return;
        }
        Ok(Err(e)) => {
            let _ = reject_frame(&mut stream, &e).await;
            return;
        }
        Err(_) => return,
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        let msg = format!(
            "control protocol version {} is not supported by p2pd {} (it speaks version {PROTOCOL_VERSION}); use a p2pctl of the same release",
            hello.protocol_version,
            env!("CARGO_PKG_VERSION")
        );
        let _ = send_error(&mut stream, 0, ErrorCode::UnsupportedVersion, &msg).await;
        return;
    }
    let ours = Hello {
        protocol_version: PROTOCOL_VERSION,
        agent: crate::behaviour::agent_version(),
        peer_id,
    };
    if send(&mut stream, server_frame::Frame::Hello(ours))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let frame = match frame::read_message::<ClientFrame, _>(&mut stream, MAX_FRAME_BYTES).await
        {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                if reject_frame(&mut stream, &e).await.is_err()
                    || !matches!(e, FrameError::Decode(_))
                {
                    return;
                }
                continue;
            }
        };
        let result = match frame.frame {
            Some(client_frame::Frame::Request(req)) => {
                let id = req.id;
                (id, dispatch(&node, &caller, req).await)
            }
            Some(client_frame::Frame::Hello(_)) => (
                0,
                Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "hello was already exchanged",
                )),
            ),
            None => (
                0,
                Err(ApiError::new(
                    ErrorCode::UnknownRequest,
                    "unknown frame kind",
                )),
            ),
        };
        let sent = match result {
            (id, Ok(kind)) => send_response(&mut stream, id, kind).await,
            (id, Err(e)) => send_error(&mut stream, id, e.code, &e.message).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Answers a frame that could not be read. Returns Err when the connection should close anyway.
async fn reject_frame(stream: &mut UnixStream, e: &FrameError) -> std::io::Result<()> {
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

/// The dispatch table: one module per request kind.
async fn dispatch(
    node: &NodeHandle,
    caller: &Caller,
    req: Request,
) -> Result<response::Kind, ApiError> {
    match req.kind {
        Some(request::Kind::Status(r)) => status::handle(node, r).await,
        Some(request::Kind::Peers(r)) => peers::handle(node, r).await,
        Some(request::Kind::Connect(r)) => connect::handle(node, caller, r).await,
        Some(request::Kind::Disconnect(r)) => disconnect::handle(node, caller, r).await,
        None => Err(ApiError::new(
            ErrorCode::UnknownRequest,
            "unknown request kind; is p2pctl newer than this p2pd?",
        )),
    }
}
