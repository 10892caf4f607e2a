use super::{Caller, Outcome};
use crate::node::{ApiError, Delivery, NodeHandle};
use futures::StreamExt;
use p2pd_proto::control::{
    response::Kind, Ack, PeerList, PubsubMessage, PubsubPeersRequest, PubsubPublishRequest,
    PubsubPublishResponse, PubsubSubscribeRequest, PubsubTopicsResponse,
};

pub async fn topics(node: &NodeHandle) -> Result<Kind, ApiError> {
    let topics = node.call(|n| Ok(n.pubsub_topics())).await?;
    Ok(Kind::PubsubTopics(PubsubTopicsResponse { topics }))
}

pub async fn peers(node: &NodeHandle, req: PubsubPeersRequest) -> Result<Kind, ApiError> {
    let peers = node.call(move |n| Ok(n.pubsub_peers(&req.topic))).await?;
    Ok(Kind::PeerList(PeerList {
        peer_ids: peers.iter().map(|p| p.to_string()).collect(),
    }))
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
    let (topic, data) = (req.topic, req.data);
    let message_id = node
        .ask(move |n, reply| n.pubsub_publish(topic, data, reply))
        .await?;
    Ok(Kind::PubsubPublish(PubsubPublishResponse { message_id }))
}

pub async fn subscribe(node: &NodeHandle, req: PubsubSubscribeRequest) -> Outcome {
    match node
        .ask(move |n, reply| n.pubsub_subscribe(req.topic, reply))
        .await
    {
        // The first response confirms the subscription is active; messages follow.
        Ok(rx) => Outcome::Stream(
            futures::stream::once(async { Kind::Ack(Ack {}) })
                .chain(futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|m| (Kind::PubsubMessage(message(m)), rx))
                }))
                .boxed(),
        ),
        Err(e) => Outcome::Reply(Err(e)),
    }
}

fn message(m: Delivery) -> PubsubMessage {
    PubsubMessage {
        topic: m.topic,
        from: m.from,
        seq_no: m.seq_no,
        data: m.data,
        message_id: m.message_id,
    }
}
