use super::Caller;
use crate::node::{ApiError, Command, NodeHandle};
use p2pd_proto::control::{response::Kind, ConnectRequest, ErrorCode};
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn handle(
    node: &NodeHandle,
    caller: &Caller,
    req: ConnectRequest,
) -> Result<Kind, ApiError> {
    caller.audit("connect", &req.multiaddr);
    let addr: libp2p::Multiaddr = req.multiaddr.parse().map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "invalid multiaddr {:?}: {e}; expected e.g. /ip4/127.0.0.1/tcp/4001/p2p/PEER_ID",
                req.multiaddr
            ),
        )
    })?;
    let limit = match req.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    match tokio::time::timeout(limit, node.ask(|reply| Command::Connect { addr, reply })).await {
        Ok(r) => r.map(Kind::Connect),
        Err(_) => Err(ApiError::new(
            ErrorCode::Timeout,
            format!("no connection within {}", humantime::format_duration(limit)),
        )),
    }
}
