use super::Caller;
use crate::node::Code;
use crate::node::{ApiError, NodeHandle};
use p2pd_proto::control::{response::Kind, Ack, DisconnectRequest};

pub async fn handle(
    node: &NodeHandle,
    caller: &Caller,
    req: DisconnectRequest,
) -> Result<Kind, ApiError> {
    caller.audit("disconnect", &req.peer_id);
    let peer: libp2p::PeerId = req.peer_id.parse().map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("invalid peer id {:?}: {e}", req.peer_id),
        )
    })?;
    node.call(move |n| n.disconnect(peer))
        .await
        .map(|()| Kind::Ack(Ack {}))
}
