use super::Caller;
use crate::node::{ApiError, Command, DhtQuery, NodeHandle};
use p2pd_proto::control::{
    response::Kind, DhtClosestRequest, DhtFindPeerRequest, DhtGetRequest, DhtProvideRequest,
    DhtProvidersRequest, DhtPutRequest, ErrorCode,
};
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest value accepted by `dht put` (Kademlia's record store refuses bigger ones).
pub const MAX_VALUE: usize = 65 * 1024;

async fn run(node: &NodeHandle, query: DhtQuery, timeout_ms: u64) -> Result<Kind, ApiError> {
    let limit = match timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    match tokio::time::timeout(limit, node.ask(|reply| Command::Dht { query, reply })).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            ErrorCode::Timeout,
            format!(
                "the DHT query did not finish within {}",
                humantime::format_duration(limit)
            ),
        )),
    }
}

fn key(k: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    if k.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the key must not be empty",
        ));
    }
    Ok(k)
}

pub async fn find_peer(node: &NodeHandle, req: DhtFindPeerRequest) -> Result<Kind, ApiError> {
    let peer = req.peer_id.parse().map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("invalid peer id {:?}: {e}", req.peer_id),
        )
    })?;
    run(node, DhtQuery::FindPeer(peer), req.timeout_ms).await
}

pub async fn get(node: &NodeHandle, req: DhtGetRequest) -> Result<Kind, ApiError> {
    run(node, DhtQuery::Get(key(req.key)?), req.timeout_ms).await
}

pub async fn put(node: &NodeHandle, caller: &Caller, req: DhtPutRequest) -> Result<Kind, ApiError> {
    caller.audit("dht_put", &String::from_utf8_lossy(&req.key));
    if req.value.len() > MAX_VALUE {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("the value is {} bytes; the DHT accepts at most {MAX_VALUE} (store large data with `block put`)", req.value.len()),
        ));
    }
    run(
        node,
        DhtQuery::Put(key(req.key)?, req.value),
        req.timeout_ms,
    )
    .await
}

pub async fn provide(
    node: &NodeHandle,
    caller: &Caller,
    req: DhtProvideRequest,
) -> Result<Kind, ApiError> {
    caller.audit("dht_provide", &String::from_utf8_lossy(&req.key));
    run(node, DhtQuery::Provide(key(req.key)?), req.timeout_ms).await
}

pub async fn providers(node: &NodeHandle, req: DhtProvidersRequest) -> Result<Kind, ApiError> {
    run(node, DhtQuery::Providers(key(req.key)?), req.timeout_ms).await
}

pub async fn closest(node: &NodeHandle, req: DhtClosestRequest) -> Result<Kind, ApiError> {
    run(node, DhtQuery::Closest(key(req.key)?), req.timeout_ms).await
}
