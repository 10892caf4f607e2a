use crate::node::{ApiError, Command, NodeHandle};
use p2pd_proto::control::{response::Kind, StatusRequest};

pub async fn handle(node: &NodeHandle, _req: StatusRequest) -> Result<Kind, ApiError> {
    node.ask(Command::Status).await.map(Kind::Status)
}
