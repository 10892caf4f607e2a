//! `peers`: the connected peers.

use crate::node::{ApiError, NodeHandle, PeerView};
use p2pd_proto::control::{response::Kind, PeerConnection, PeerEntry, PeersRequest, PeersResponse};
use std::time::UNIX_EPOCH;

pub async fn handle(node: &NodeHandle, _req: PeersRequest) -> Result<Kind, ApiError> {
    let peers = node.call(|n| Ok(n.peers())).await?;
    Ok(Kind::Peers(PeersResponse {
        peers: peers.into_iter().map(entry).collect(),
    }))
}

fn entry(p: PeerView) -> PeerEntry {
    PeerEntry {
        peer_id: p.peer.to_string(),
        connections: p
            .connections
            .into_iter()
            .map(|c| PeerConnection {
                address: c.address.to_string(),
                direction: if c.inbound { "inbound" } else { "outbound" }.into(),
                since_unix: c
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            })
            .collect(),
        latency_us: p
            .latency
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        agent: p.agent,
        protocols: p.protocols,
        listen_addrs: p.listen_addrs.iter().map(|a| a.to_string()).collect(),
        gossip_score: p.gossip_score,
        policy_score: p.policy_score,
    }
}
