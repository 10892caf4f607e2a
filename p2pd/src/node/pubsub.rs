//! Pub/sub for local clients over Gossipsub: subscriptions fan out to every local subscriber,
//! and every inbound message is validated (strict signature by Gossipsub, then our replay window
//! and size checks) before it is delivered or forwarded.

use super::{ApiError, Node, Reply};
use crate::replay::{ReplayGuard, Verdict};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::PeerId;
use p2pd_proto::control::{self, ErrorCode};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Messages buffered per subscriber; a subscriber that falls further behind loses messages
/// (counted and logged) rather than holding the node's memory hostage.
const SUBSCRIBER_BUFFER: usize = 1024;
/// Authors whose replay windows are kept.
const MAX_AUTHORS: usize = 100_000;

pub struct PubSub {
    subscribers: HashMap<TopicHash, Vec<mpsc::Sender<control::PubsubMessage>>>,
    replay: ReplayGuard<PeerId>,
}

impl Default for PubSub {
    fn default() -> Self {
        PubSub {
            subscribers: HashMap::new(),
            replay: ReplayGuard::new(MAX_AUTHORS),
        }
    }
}

/// Replay windows of pub/sub authors, so a restart does not reopen old sequence numbers.
pub const REPLAY_FILE: &str = "replay.json";

impl PubSub {
    pub fn replay_json(&self) -> Vec<u8> {
        self.replay.to_json()
    }

    /// Restores the windows; a corrupt file is moved aside.
    pub fn load_replay(&mut self, path: &std::path::Path) {
        let replay = &mut self.replay;
        if let Some(n) =
            crate::persist::load_state(path, "the replay windows", |b| replay.load_json(b))
        {
            tracing::info!(authors = n, "loaded the replay windows");
        }
    }

    /// Delivers to local subscribers of `topic`, dropping the ones that went away. Returns true
    /// when the topic has no subscribers left.
    fn deliver(&mut self, topic: &TopicHash, msg: &control::PubsubMessage) -> bool {
        let Some(subs) = self.subscribers.get_mut(topic) else {
            return false;
        };
        subs.retain(|tx| match tx.try_send(msg.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(topic = %topic, "a pub/sub subscriber is too slow; dropped a message for it");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        subs.is_empty()
    }
}

fn topic_error(topic: &str) -> Option<ApiError> {
    topic
        .is_empty()
        .then(|| ApiError::new(ErrorCode::BadRequest, "the topic must not be empty"))
}

impl Node {
    pub(super) fn pubsub_topics(&self) -> control::PubsubTopicsResponse {
        let mut topics: Vec<String> = self
            .swarm
            .behaviour()
            .gossipsub
            .topics()
            .map(|t| t.to_string())
            .collect();
        topics.sort();
        control::PubsubTopicsResponse { topics }
    }

    pub(super) fn pubsub_peers(&self, topic: &str) -> control::PeerList {
        let hash = IdentTopic::new(topic).hash();
        let mut peer_ids: Vec<String> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&hash))
            .map(|(p, _)| p.to_string())
            .collect();
        peer_ids.sort();
        control::PeerList { peer_ids }
    }

    pub(super) fn pubsub_subscribe(
        &mut self,
        topic: String,
        reply: Reply<mpsc::Receiver<control::PubsubMessage>>,
    ) {
        if let Some(e) = topic_error(&topic) {
            let _ = reply.send(Err(e));
            return;
        }
        let t = IdentTopic::new(topic.clone());
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&t) {
            let _ = reply.send(Err(ApiError::new(
                ErrorCode::Failed,
                format!("cannot subscribe to {topic}: {e}"),
            )));
            return;
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        self.pubsub
            .subscribers
            .entry(t.hash())
            .or_default()
            .push(tx);
        tracing::info!(topic, "local subscriber added");
        let _ = reply.send(Ok(rx));
    }

    pub(super) fn pubsub_publish(
        &mut self,
        topic: String,
        data: Vec<u8>,
        reply: Reply<control::PubsubPublishResponse>,
    ) {
        if let Some(e) = topic_error(&topic) {
            let _ = reply.send(Err(e));
            return;
        }
        let t = IdentTopic::new(topic.clone());
        let local = self.pubsub.subscribers.contains_key(&t.hash());
        let result = match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(t.clone(), data.clone())
        {
            Ok(id) => Ok(id),
            // Local subscribers still get it when no remote peer is listening yet.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) if local => Err(None),
            Err(e) => Err(Some(e)),
        };
        let me = self.local_peer_id();
        let message_id = match result {
            Ok(id) => {
                self.p2p.message("out", "gossipsub", data.len());
                String::from_utf8_lossy(&id.0).into_owned()
            }
            // Delivered locally only: number it the way Gossipsub does (nanoseconds since the epoch).
            Err(None) => format!("{}{}", me.to_base58(), local_seq_no()),
            Err(Some(e)) => {
                let hint = match e {
                    gossipsub::PublishError::NoPeersSubscribedToTopic => {
                        "; no connected peer is subscribed to it yet"
                    }
                    gossipsub::PublishError::MessageTooLarge => "; the limit is 1 MiB",
                    _ => "",
                };
                let _ = reply.send(Err(ApiError::new(
                    ErrorCode::Failed,
                    format!("cannot publish to {topic}: {e}{hint}"),
                )));
                return;
            }
        };
        if local {
            // Gossipsub's default message id is author + sequence number.
            let seq_no = message_id
                .strip_prefix(&me.to_base58())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let msg = control::PubsubMessage {
                topic,
                from: me.to_string(),
                seq_no,
                data,
                message_id: message_id.clone(),
            };
            self.deliver_local(&t.hash(), &msg);
        }
        let _ = reply.send(Ok(control::PubsubPublishResponse { message_id }));
    }

    fn deliver_local(&mut self, topic: &TopicHash, msg: &control::PubsubMessage) {
        if self.pubsub.deliver(topic, msg) {
            self.pubsub.subscribers.remove(topic);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .unsubscribe(&IdentTopic::new(topic.to_string()));
            tracing::info!(topic = %topic, "last local subscriber left; unsubscribed");
        }
    }

    /// Drops topics whose subscribers have all gone away.
    pub(super) fn pubsub_sweep(&mut self) {
        let gone: Vec<TopicHash> = self
            .pubsub
            .subscribers
            .iter_mut()
            .filter_map(|(t, subs)| {
                subs.retain(|tx| !tx.is_closed());
                subs.is_empty().then(|| t.clone())
            })
            .collect();
        for t in gone {
            self.pubsub.subscribers.remove(&t);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .unsubscribe(&IdentTopic::new(t.to_string()));
            tracing::info!(topic = %t, "last local subscriber left; unsubscribed");
        }
    }

    pub(super) fn on_gossip_event(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let started = std::time::Instant::now();
        self.p2p.gossip_received.inc();
        self.p2p.message("in", "gossipsub", message.data.len());
        if !self.rate_allows(&propagation_source) {
            tracing::debug!(peer_id = %propagation_source, "pub/sub message over the peer's rate limit; dropped");
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    MessageAcceptance::Ignore,
                );
            self.punish(
                propagation_source,
                crate::policy::rate::Offence::RateExceeded,
            );
            return;
        }
        let verdict = match (message.source, message.sequence_number) {
            (Some(author), Some(seq)) => self.pubsub.replay.check(&author, seq),
            // Strict validation guarantees both; anything else is malformed.
            _ => Verdict::TooOld,
        };
        let acceptance = if verdict == Verdict::Fresh {
            MessageAcceptance::Accept
        } else {
            tracing::debug!(peer_id = %propagation_source, author = ?message.source, seq_no = ?message.sequence_number, verdict = ?verdict, "rejected a replayed pub/sub message");
            MessageAcceptance::Reject
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if verdict != Verdict::Fresh {
            self.count_rejected(if verdict == Verdict::Replay {
                "replay"
            } else {
                "too_old"
            });
            self.punish(propagation_source, crate::policy::rate::Offence::Invalid);
            return;
        }
        let msg = control::PubsubMessage {
            topic: message.topic.to_string(),
            from: message.source.map(|p| p.to_string()).unwrap_or_default(),
            seq_no: message.sequence_number.unwrap_or(0),
            data: message.data,
            message_id: String::from_utf8_lossy(&message_id.0).into_owned(),
        };
        self.deliver_local(&message.topic, &msg);
        self.p2p
            .message_processing
            .observe(started.elapsed().as_secs_f64());
    }
}

fn local_seq_no() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
