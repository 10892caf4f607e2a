use crate::node::{ApiError, Command, NodeHandle};
use p2pd_proto::control::{response::Kind, PeersRequest};

pub async fn handle(node: &NodeHandle, _req: PeersRequest) -> Result<Kind, ApiError> {
    node.ask(Command::Peers).await.map(Kind::Peers)
}
