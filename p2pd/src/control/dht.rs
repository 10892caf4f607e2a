use super::Caller;
use crate::node::Code;
use crate::node::{ApiError, DhtAnswer, DhtQuery, NodeHandle};
use p2pd_proto::control::{
    response::Kind, Ack, DhtClosestRequest, DhtFindPeerRequest, DhtFindPeerResponse, DhtGetRequest,
    DhtGetResponse, DhtProvideRequest, DhtProvidersRequest, DhtPutRequest, PeerList,
};
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
async fn run(node: &NodeHandle, query: DhtQuery, timeout_ms: u64) -> Result<Kind, ApiError> {
    let limit = match timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    let asked = node.ask(move |n, reply| n.dht(query, reply));
    match tokio::time::timeout(limit, asked).await {
        Ok(r) => r.map(to_proto),
        Err(_) => Err(ApiError::new(
            Code::Timeout,
            format!(
                "the DHT query did not finish within {}",
                humantime::format_duration(limit)
            ),
        )),
    }
}

fn to_proto(answer: DhtAnswer) -> Kind {
    match answer {
        DhtAnswer::Peer { peer, addrs } => Kind::DhtFindPeer(DhtFindPeerResponse {
            peer_id: peer.to_string(),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        }),
        DhtAnswer::Record { key, value, from } => Kind::DhtGet(DhtGetResponse {
            key,
            value,
            from: from.map(|p| p.to_string()).unwrap_or_default(),
        }),
        DhtAnswer::Done => Kind::Ack(Ack {}),
        DhtAnswer::Peers(peers) => Kind::PeerList(PeerList {
            peer_ids: peers.iter().map(|p| p.to_string()).collect(),
        }),
    }
}

fn key(k: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    if k.is_empty() {
        return Err(ApiError::new(Code::BadRequest, "the key must not be empty"));
    }
    Ok(k)
}

pub async fn find_peer(node: &NodeHandle, req: DhtFindPeerRequest) -> Result<Kind, ApiError> {
    let peer = req.peer_id.parse().map_err(|e| {
        ApiError::new(
            Code::BadRequest,
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
