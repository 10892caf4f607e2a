use super::{Caller, Outcome};
use crate::node::{ApiError, Command, NodeHandle};
use futures::StreamExt;
use p2pd_proto::control::{
    response::Kind, Ack, PubsubPeersRequest, PubsubPublishRequest, PubsubSubscribeRequest,
};

pub async fn topics(node: &NodeHandle) -> Result<Kind, ApiError> {
    node.ask(Command::PubsubTopics)
        .await
        .map(Kind::PubsubTopics)
}

pub async fn peers(node: &NodeHandle, req: PubsubPeersRequest) -> Result<Kind, ApiError> {
    node.ask(|reply| Command::PubsubPeers {
        topic: req.topic,
        reply,
    })
    .await
    .map(Kind::PeerList)
}

pub async fn publish(
    node: &NodeHandle,
    caller: &Caller,
    req: PubsubPublishRequest,
) -> Result<Kind, ApiError> {
    // Publishing changes no node state and an application may publish thousands a second:
    // not an audited request (that would flood the journal), a debug line.
    tracing::debug!(
        caller_uid = caller.uid,
        caller_pid = caller.pid,
        bytes = req.data.len(),
        "pubsub publish"
    );
    node.ask(|reply| Command::PubsubPublish {
        topic: req.topic,
        data: req.data,
        reply,
    })
    .await
    .map(Kind::PubsubPublish)
}

pub async fn subscribe(node: &NodeHandle, req: PubsubSubscribeRequest) -> Outcome {
    match node
        .ask(|reply| Command::PubsubSubscribe {
            topic: req.topic,
            reply,
        })
        .await
    {
        // The first response confirms the subscription is active; messages follow.
        Ok(rx) => Outcome::Stream(
            futures::stream::once(async { Kind::Ack(Ack {}) })
                .chain(futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|m| (Kind::PubsubMessage(m), rx))
                }))
                .boxed(),
        ),
        Err(e) => Outcome::Reply(Err(e)),
    }
}
