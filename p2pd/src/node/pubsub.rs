//! Pub/sub for local clients over Gossipsub: subscriptions fan out to every local subscriber,
//! and every inbound message is validated (strict signature by Gossipsub, then our replay window
//! and size checks) before it is delivered or forwarded.

use super::Code;
use super::{ApiError, Node, Reply};
use crate::behaviour::base58;
use crate::replay::{ReplayGuard, Verdict};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::PeerId;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What is buffered per local subscriber, in messages and in bytes: enough for a burst of
/// 10,000 small messages, while a subscriber that falls further behind loses messages (logged)
/// rather than holding the node's memory hostage.
const SUBSCRIBER_MESSAGES: usize = 32_768;
const SUBSCRIBER_BYTES: usize = 32 << 20;

/// A message delivered to a local subscriber, validated first (signature, replay window, size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    /// The author's peer id (empty for an anonymous message).
    pub from: String,
    pub seq_no: u64,
    pub data: Vec<u8>,
    pub message_id: String,
}

/// The node's end of a local subscription.
struct SubscriberTx {
    tx: mpsc::Sender<Delivery>,
    queued: Arc<AtomicUsize>,
    /// Messages dropped for it since it last took one: the log says when a run of drops starts
    /// and how long it was once the subscriber catches up, not one line per message.
    dropped: u64,
}

impl SubscriberTx {
    /// The subscriber went away: a run of drops it had is reported.
    fn gone(&self, topic: &TopicHash) {
        if self.dropped > 0 {
            tracing::warn!(topic = %topic, dropped = self.dropped, "a slow pub/sub subscriber went away; messages had been dropped for it");
        }
    }

    /// Queues `msg` for this subscriber unless it is too far behind. Returns whether the
    /// subscriber is still there, and whether `msg` was dropped for it.
    fn offer(&mut self, topic: &TopicHash, msg: &Delivery) -> (bool, bool) {
        let size = msg.data.len();
        let sent = if self.queued.load(Ordering::Relaxed) + size > SUBSCRIBER_BYTES {
            Err(!self.tx.is_closed())
        } else {
            match self.tx.try_send(msg.clone()) {
                Ok(()) => {
                    self.queued.fetch_add(size, Ordering::Relaxed);
                    Ok(())
                }
                Err(mpsc::error::TrySendError::Full(_)) => Err(true),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(false),
            }
        };
        match sent {
            Ok(()) => {
                if self.dropped > 0 {
                    tracing::warn!(topic = %topic, dropped = self.dropped, "a slow pub/sub subscriber caught up; messages were dropped for it meanwhile");
                    self.dropped = 0;
                }
                (true, false)
            }
            Err(true) => {
                if self.dropped == 0 {
                    tracing::warn!(topic = %topic, queued_messages = SUBSCRIBER_MESSAGES - self.tx.capacity(), "a pub/sub subscriber is too slow; dropping messages for it until it catches up (it should read faster, or the publishers slow down)");
                }
                self.dropped += 1;
                (true, true)
            }
            Err(false) => {
                self.gone(topic);
                (false, false)
            }
        }
    }
}

/// The control connection's end of a local subscription; gives back the byte budget as it reads.
pub struct SubscriberRx {
    rx: mpsc::Receiver<Delivery>,
    queued: Arc<AtomicUsize>,
}

impl SubscriberRx {
    pub async fn recv(&mut self) -> Option<Delivery> {
        let m = self.rx.recv().await?;
        self.queued.fetch_sub(m.data.len(), Ordering::Relaxed);
        Some(m)
    }
}

fn subscription() -> (SubscriberTx, SubscriberRx) {
    let (tx, rx) = mpsc::channel(SUBSCRIBER_MESSAGES);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        SubscriberTx {
            tx,
            queued: queued.clone(),
            dropped: 0,
        },
        SubscriberRx { rx, queued },
    )
}
/// Authors whose replay windows are kept.
const MAX_AUTHORS: usize = 100_000;

pub struct PubSub {
    subscribers: HashMap<TopicHash, Vec<SubscriberTx>>,
    replay: ReplayGuard<PeerId>,
    /// Messages dropped for slow local subscribers (`p2p_pubsub_dropped_total`).
    dropped: Counter,
}

impl Default for PubSub {
    fn default() -> Self {
        PubSub::counting_drops(Counter::default())
    }
}

impl PubSub {
    /// Counts the messages dropped for slow local subscribers in `dropped`.
    pub fn counting_drops(dropped: Counter) -> Self {
        PubSub {
            subscribers: HashMap::new(),
            replay: ReplayGuard::new(MAX_AUTHORS),
            dropped,
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

    /// Adds a local subscriber to `topic`.
    pub fn subscribe(&mut self, topic: TopicHash) -> SubscriberRx {
        let (tx, rx) = subscription();
        self.subscribers.entry(topic).or_default().push(tx);
        rx
    }

    /// Whether `topic` has local subscribers.
    pub fn has_subscribers(&self, topic: &TopicHash) -> bool {
        self.subscribers.contains_key(topic)
    }

    /// The replay window's verdict on `author`'s message `seq` (and it is recorded).
    pub fn check(&mut self, author: &PeerId, seq: u64) -> Verdict {
        self.replay.check(author, seq)
    }

    /// Forgets the topics whose subscribers have all gone away, and returns them.
    pub fn sweep(&mut self) -> Vec<TopicHash> {
        let gone: Vec<TopicHash> = self
            .subscribers
            .iter_mut()
            .filter_map(|(t, subs)| {
                subs.retain(|s| {
                    let closed = s.tx.is_closed();
                    if closed {
                        s.gone(t);
                    }
                    !closed
                });
                subs.is_empty().then(|| t.clone())
            })
            .collect();
        for t in &gone {
            self.subscribers.remove(t);
        }
        gone
    }

    /// Delivers to local subscribers of `topic`, dropping the ones that went away. Returns true
    /// when that was the last one (the topic is then forgotten).
    pub fn deliver(&mut self, topic: &TopicHash, msg: &Delivery) -> bool {
        let last_gone = self.deliver_to(topic, msg);
        if last_gone {
            self.subscribers.remove(topic);
        }
        last_gone
    }

    fn deliver_to(&mut self, topic: &TopicHash, msg: &Delivery) -> bool {
        let Some(subs) = self.subscribers.get_mut(topic) else {
            return false;
        };
        subs.retain_mut(|s| {
            let (open, dropped) = s.offer(topic, msg);
            if dropped {
                self.dropped.inc();
            }
            open
        });
        subs.is_empty()
    }
}

/// The longest topic name a local client may use: a topic becomes a map key, a metric label and
/// part of every message, so its size is bounded.
pub const MAX_TOPIC_BYTES: usize = p2pd_proto::limits::TOPIC;

fn topic_error(topic: &str) -> Option<ApiError> {
    if topic.is_empty() {
        return Some(ApiError::new(
            Code::BadRequest,
            "the topic must not be empty",
        ));
    }
    (topic.len() > MAX_TOPIC_BYTES).then(|| {
        ApiError::new(
            Code::BadRequest,
            format!(
                "the topic is {} bytes long; at most {MAX_TOPIC_BYTES} are accepted",
                topic.len()
            ),
        )
    })
}

impl Node {
    /// The topics with local subscribers, sorted.
    pub fn pubsub_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .swarm
            .behaviour()
            .gossipsub
            .topics()
            .map(|t| t.to_string())
            .collect();
        topics.sort();
        topics
    }

    /// The peers known to be subscribed to `topic`.
    pub fn pubsub_peers(&self, topic: &str) -> Vec<PeerId> {
        let hash = IdentTopic::new(topic).hash();
        let mut peers: Vec<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&hash))
            .map(|(p, _)| *p)
            .collect();
        peers.sort_by_key(|p| p.to_base58());
        peers
    }

    /// Subscribes a local client to `topic`: Gossipsub subscribes on the first one.
    pub fn pubsub_subscribe(&mut self, topic: String, reply: Reply<SubscriberRx>) {
        if let Some(e) = topic_error(&topic) {
            let _ = reply.send(Err(e));
            return;
        }
        let t = IdentTopic::new(topic.clone());
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&t) {
            let _ = reply.send(Err(ApiError::new(
                Code::Failed,
                format!("cannot subscribe to {topic}: {e}"),
            )));
            return;
        }
        let rx = self.pubsub.subscribe(t.hash());
        tracing::info!(topic, "local subscriber added");
        let _ = reply.send(Ok(rx));
    }

    /// Publishes `data` to `topic`, signed; answers with the message id. Local subscribers
    /// get it too.
    pub fn pubsub_publish(&mut self, topic: String, data: Vec<u8>, reply: Reply<String>) {
        if let Some(e) = topic_error(&topic) {
            let _ = reply.send(Err(e));
            return;
        }
        let t = IdentTopic::new(topic.clone());
        let local = self.pubsub.has_subscribers(&t.hash());
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
            Err(None) => format!("{}{}", base58(&me), local_seq_no()),
            Err(Some(gossipsub::PublishError::AllQueuesFull(n))) => {
                // Back-pressure for pipelining clients: nothing was sent, try again shortly.
                let _ = reply.send(Err(ApiError::new(
                    Code::Unavailable,
                    format!("cannot publish to {topic} now: the send queues to all {n} subscribed peers are full; slow down and retry"),
                )));
                return;
            }
            Err(Some(e)) => {
                let hint = match e {
                    gossipsub::PublishError::NoPeersSubscribedToTopic => {
                        "; no connected peer is subscribed to it yet"
                    }
                    gossipsub::PublishError::MessageTooLarge => "; the limit is 1 MiB",
                    _ => "",
                };
                let _ = reply.send(Err(ApiError::new(
                    Code::Failed,
                    format!("cannot publish to {topic}: {e}{hint}"),
                )));
                return;
            }
        };
        if local {
            // Gossipsub's default message id is author + sequence number.
            let seq_no = message_id
                .strip_prefix(&*base58(&me))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let msg = Delivery {
                topic,
                from: base58(&me).to_string(),
                seq_no,
                data,
                message_id: message_id.clone(),
            };
            self.deliver_local(&t.hash(), &msg);
        }
        let _ = reply.send(Ok(message_id));
    }

    fn deliver_local(&mut self, topic: &TopicHash, msg: &Delivery) {
        if self.pubsub.deliver(topic, msg) {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .unsubscribe(&IdentTopic::new(topic.to_string()));
            tracing::info!(topic = %topic, "last local subscriber left; unsubscribed");
        }
    }

    /// Drops topics whose subscribers have all gone away.
    pub(super) fn pubsub_sweep(&mut self) {
        for t in self.pubsub.sweep() {
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
        // Verdicts fit the offence: over the rate, a replay, older than the window or our own
        // message coming back are dropped without forwarding and without penalty (Ignore);
        // provably invalid messages never get here (Gossipsub's strict validation rejects them).
        let ignored = if !self.rate_allows(&propagation_source) {
            Some("rate_limit")
        } else if message.source == Some(self.local_peer_id()) {
            Some("self_origin")
        } else {
            match (message.source, message.sequence_number) {
                (Some(author), Some(seq)) => match self.pubsub.check(&author, seq) {
                    Verdict::Fresh => None,
                    Verdict::Replay => Some("replay"),
                    Verdict::TooOld => Some("too_old"),
                },
                // Strict validation guarantees both.
                _ => Some("too_old"),
            }
        };
        let acceptance = match ignored {
            None => MessageAcceptance::Accept,
            Some(reason) => {
                tracing::debug!(peer_id = %propagation_source, author = ?message.source, seq_no = ?message.sequence_number, reason, "pub/sub message dropped without penalty");
                if reason != "rate_limit" {
                    self.swarm.behaviour().policy.ignored(reason);
                }
                MessageAcceptance::Ignore
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if ignored.is_some() {
            return;
        }
        let msg = Delivery {
            topic: message.topic.to_string(),
            from: message
                .source
                .map(|p| base58(&p).to_string())
                .unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: &[u8]) -> Delivery {
        Delivery {
            topic: "t".into(),
            from: "a".into(),
            seq_no: 1,
            data: data.to_vec(),
            message_id: "m".into(),
        }
    }

    fn topic(name: &str) -> TopicHash {
        IdentTopic::new(name).hash()
    }

    #[tokio::test]
    async fn every_subscriber_gets_each_message_and_gives_its_budget_back() {
        let mut p = PubSub::default();
        let (mut a, mut b) = (p.subscribe(topic("t")), p.subscribe(topic("t")));
        assert!(p.has_subscribers(&topic("t")) && !p.has_subscribers(&topic("u")));
        assert!(!p.deliver(&topic("t"), &message(b"hello")));
        assert!(!p.deliver(&topic("u"), &message(b"nobody")));
        assert_eq!(a.recv().await.unwrap().data, b"hello");
        assert_eq!(b.queued.load(Ordering::Relaxed), 5);
        assert_eq!(b.recv().await.unwrap().data, b"hello");
        assert_eq!(b.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_messages_beyond_its_byte_budget_but_stays() {
        let mut p = PubSub::default();
        let mut slow = p.subscribe(topic("t"));
        let big = vec![0u8; SUBSCRIBER_BYTES / 2 + 1];
        p.deliver(&topic("t"), &message(&big));
        p.deliver(&topic("t"), &message(&big));
        p.deliver(&topic("t"), &message(&big));
        let dropped = |p: &PubSub| p.subscribers[&topic("t")][0].dropped;
        assert_eq!(
            dropped(&p),
            2,
            "one run of drops, counted (and logged once)"
        );
        assert_eq!(slow.queued.load(Ordering::Relaxed), big.len());
        assert_eq!(slow.recv().await.unwrap().data.len(), big.len());
        // Room again: the next one arrives, and the run of drops is over.
        p.deliver(&topic("t"), &message(b"after"));
        assert_eq!(dropped(&p), 0);
        assert_eq!(p.dropped.get(), 2, "both drops counted for the metric");
        assert_eq!(slow.recv().await.unwrap().data, b"after");
        assert!(p.has_subscribers(&topic("t")));
    }

    #[test]
    fn subscribers_that_left_are_dropped_and_their_topic_forgotten() {
        let mut p = PubSub::default();
        let a = p.subscribe(topic("t"));
        let b = p.subscribe(topic("t"));
        let c = p.subscribe(topic("u"));
        drop(a);
        assert!(!p.deliver(&topic("t"), &message(b"x")), "b is still there");
        drop(b);
        assert!(p.deliver(&topic("t"), &message(b"x")), "the last one left");
        assert!(!p.has_subscribers(&topic("t")));
        drop(c);
        assert_eq!(p.sweep(), vec![topic("u")]);
        assert!(p.sweep().is_empty());
    }

    #[test]
    fn replays_are_caught_and_the_windows_survive_a_restart() {
        let mut p = PubSub::default();
        let author = PeerId::random();
        assert_eq!(p.check(&author, 10), Verdict::Fresh);
        assert_eq!(p.check(&author, 10), Verdict::Replay);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPLAY_FILE);
        std::fs::write(&path, p.replay_json()).unwrap();
        let mut q = PubSub::default();
        q.load_replay(&path);
        assert_eq!(q.check(&author, 10), Verdict::Replay);
        assert_eq!(q.check(&author, 11), Verdict::Fresh);
    }
}
