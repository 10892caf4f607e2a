//! `stream open` (the control connection becomes the byte pipe), `stream serve`, `stream ls`,
//! `stream rm`.

use super::{send_error, send_response, Caller, Ctx};
use crate::node::ApiError;
use crate::node::Code;
use p2pd_proto::control::{
    response::Kind, Ack, StreamHandler, StreamList, StreamOpenRequest, StreamOpened,
    StreamRemoveRequest, StreamServeRequest,
};
use std::time::Duration;
use tokio::net::UnixStream;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn serve(ctx: &Ctx, caller: &Caller, req: StreamServeRequest) -> Result<Kind, ApiError> {
    caller.audit(
        "stream_serve",
        &format!("{} -> {}", req.protocol, req.socket),
    );
    ctx.streams
        .serve(&req.protocol, req.socket.into(), caller.uid)?;
    Ok(Kind::Ack(Ack {}))
}

pub fn list(ctx: &Ctx) -> Result<Kind, ApiError> {
    let handlers = ctx
        .streams
        .list()
        .into_iter()
        .map(|h| StreamHandler {
            protocol: h.protocol,
            socket: h.socket.display().to_string(),
            active_streams: h.active_streams,
            total_streams: h.total_streams,
            owner_uid: h.owner_uid,
        })
        .collect();
    Ok(Kind::StreamList(StreamList { handlers }))
}

pub async fn remove(
    ctx: &Ctx,
    caller: &Caller,
    req: StreamRemoveRequest,
) -> Result<Kind, ApiError> {
    caller.audit("stream_rm", &req.protocol);
    ctx.streams.remove(&req.protocol).await?;
    Ok(Kind::Ack(Ack {}))
}

async fn opened(ctx: &Ctx, req: &StreamOpenRequest) -> Result<libp2p::Stream, ApiError> {
    let peer: libp2p::PeerId = req.peer_id.parse().map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("invalid peer id {:?}: {e}", req.peer_id),
        )
    })?;
    let limit = match req.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    tokio::time::timeout(limit, ctx.streams.open(peer, &req.protocol))
        .await
        .map_err(|_| {
            ApiError::new(
                Code::Timeout,
                format!(
                    "no stream to {peer} within {}",
                    humantime::format_duration(limit)
                ),
            )
        })?
}

/// Opens the stream, answers StreamOpened, then splices the connection to it.
pub async fn open(
    ctx: &Ctx,
    caller: &Caller,
    id: u64,
    req: StreamOpenRequest,
    mut conn: UnixStream,
) {
    caller.audit("stream_open", &format!("{} {}", req.peer_id, req.protocol));
    match opened(ctx, &req).await {
        Ok(stream) => {
            let ok = StreamOpened {
                peer_id: req.peer_id,
                protocol: req.protocol,
            };
            if send_response(&mut conn, id, false, Kind::StreamOpened(ok))
                .await
                .is_ok()
            {
                crate::streams::splice(conn, stream, ctx.streams.idle_timeout()).await;
            }
        }
        Err(e) => {
            let _ = send_error(&mut conn, id, super::wire_code(e.code), &e.message).await;
        }
    }
}
