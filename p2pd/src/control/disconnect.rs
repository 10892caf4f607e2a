use super::Caller;
use crate::node::{ApiError, Command, NodeHandle};
use p2pd_proto::control::{response::Kind, Ack, DisconnectRequest, ErrorCode};

pub async fn handle(
    node: &NodeHandle,
    caller: &Caller,
    req: DisconnectRequest,
) -> Result<Kind, ApiError> {
    caller.audit("disconnect", &req.peer_id);
    let peer: libp2p::PeerId = req.peer_id.parse().map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("invalid peer id {:?}: {e}", req.peer_id),
        )
    })?;
    node.ask(|reply| Command::Disconnect { peer, reply })
        .await
        .map(|()| Kind::Ack(Ack {}))
}
