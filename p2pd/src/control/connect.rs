use super::Caller;
use crate::node::Code;
use crate::node::{ApiError, Connected, NodeHandle};
use p2pd_proto::control::{response::Kind, ConnectRequest, ConnectResponse};
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
            Code::BadRequest,
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
    let dial = node.ask(move |n, reply| n.connect(addr, reply));
    match tokio::time::timeout(limit, dial).await {
        Ok(r) => r.map(|c| Kind::Connect(to_proto(c))),
        Err(_) => Err(ApiError::new(
            Code::Timeout,
            format!("no connection within {}", humantime::format_duration(limit)),
        )),
    }
}

fn to_proto(c: Connected) -> ConnectResponse {
    ConnectResponse {
        peer_id: c.peer.to_string(),
        address: c.address.to_string(),
        already_connected: c.already_connected,
    }
}
