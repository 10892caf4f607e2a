//! The node's composed `NetworkBehaviour`: one field per concern. Policy behaviours (limits)
//! come first so they can deny a connection before any protocol does work for it.

use crate::config::Config;
use crate::policy::dialback::Marked;
use libp2p::identity::Keypair;
use libp2p::metrics::Registry;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, dcutr, gossipsub, identify, kad, ping, relay, PeerId, StreamProtocol};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Agent string announced through identify.
pub fn agent_version() -> String {
    format!("p2pd/{}", env!("CARGO_PKG_VERSION"))
}

/// Relayed circuits this node serves at once (relay v2 server).
pub const MAX_RELAY_CIRCUITS: usize = 16;

/// Topics with their own Gossipsub metric labels (the first ones subscribed).
pub const MAX_METRIC_TOPICS: usize = 32;

/// Largest pub/sub message accepted or published.
pub const MAX_PUBSUB_MESSAGE: usize = 1 << 20;

/// The identify protocol family we speak (same as go-libp2p and Kubo, so they accept us).
pub const PROTOCOL_VERSION: &str = "ipfs/0.1.0";

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub policy: crate::policy::Policy,
    pub relay_client: relay::client::Behaviour,
    pub relay: relay::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub autonat: Marked<autonat::Behaviour>,
    /// AutoNAT v2, beside v1: tests each address candidate on its own and confirms the ones
    /// peers could dial back (v1 gives the node-wide answer relay reservations key on).
    pub autonat_v2: Marked<autonat::v2::client::Behaviour>,
    /// Answers other nodes' AutoNAT v2 tests (dial-backs go through the same gate, bans and
    /// dial filter as every other dial).
    pub autonat_v2_server: Marked<autonat::v2::server::Behaviour>,
    pub blocks: libp2p::request_response::Behaviour<crate::blocks::codec::BlockCodec>,
    pub streams: libp2p_stream::Behaviour,
}

impl Behaviour {
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &Config,
        registry: &mut Registry,
        policy: crate::policy::Policy,
    ) -> anyhow::Result<Self> {
        let peer_id = key.public().to_peer_id();
        let dial_backs = policy.dial_backs();

        let mut kad_cfg = kad::Config::new(kad::PROTOCOL_NAME);
        kad_cfg.set_query_timeout(Duration::from_secs(30));
        // The node re-bootstraps every network.bootstrap_interval itself, and only when it knows
        // a peer: libp2p's own timer warns "Failed to trigger bootstrap: No known peers." on
        // every standalone node (diag already reports an empty routing table, with the fix).
        kad_cfg.set_periodic_bootstrap_interval(None);
        let kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);

        let gossip_cfg = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Every message waits for our verdict (replay window, size) before it is forwarded.
            .validate_messages()
            // Our own messages coming back are duplicates, not offences (see node/pubsub.rs).
            .allow_self_origin(true)
            .max_transmit_size(MAX_PUBSUB_MESSAGE)
            .message_id_fn(message_id)
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_cfg,
        )
        .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?
        .with_metrics(
            registry.sub_registry_with_prefix("libp2p_gossipsub"),
            gossipsub::MetricsConfig {
                // Topic names are labels: only topics subscribed here get them, and only so
                // many, whatever peers announce.
                max_topics: MAX_METRIC_TOPICS,
                max_never_subscribed_topics: 0,
                ..Default::default()
            },
        );
        if config.pubsub.scoring {
            let (params, thresholds) = peer_scoring(config);
            gossipsub
                .with_peer_score(params, thresholds)
                .map_err(|e| anyhow::anyhow!("gossipsub peer scoring: {e}"))?;
        }

        let identify = identify::Behaviour::new(
            identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                .with_agent_version(agent_version())
                .with_push_listen_addr_updates(true),
        );

        Ok(Behaviour {
            policy,
            relay_client,
            relay: relay::Behaviour::new(
                peer_id,
                relay::Config {
                    max_circuits: MAX_RELAY_CIRCUITS,
                    ..Default::default()
                },
            ),
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            gossipsub,
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: Marked::new(
                autonat::Behaviour::new(peer_id, autonat_config(&config.network)),
                dial_backs.clone(),
            ),
            autonat_v2: Marked::new(
                autonat::v2::client::Behaviour::default(),
                dial_backs.clone(),
            )
            .only_global(!config.network.autonat_private_addrs),
            autonat_v2_server: Marked::new(autonat::v2::server::Behaviour::default(), dial_backs),
            blocks: crate::blocks::codec::behaviour(),
            streams: libp2p_stream::Behaviour::new(),
        })
    }
}

/// AutoNAT (v1): the first probe soon after start (once the bootstrap peers are connected), a
/// retry every 30 s while the answer is unknown or not yet confirmed, and peers' answers about
/// private addresses taken only when the config says the network is private.
fn autonat_config(n: &crate::config::Network) -> autonat::Config {
    autonat::Config {
        boot_delay: Duration::from_secs(5),
        retry_interval: Duration::from_secs(30),
        throttle_server_period: Duration::from_secs(30),
        only_global_ips: !n.autonat_private_addrs,
        ..Default::default()
    }
}

/// Peer ids in base58 (the text form) this process has written lately, at most this many.
const BASE58_CACHED: usize = 4096;

static BASE58: LazyLock<Mutex<HashMap<PeerId, Arc<str>>>> = LazyLock::new(Default::default);

/// `peer.to_base58()`, memoized. Every pub/sub message is numbered and delivered with its
/// author's id in base58, and encoding one costs more than all the rest of the numbering (a
/// tenth of a receiving node's CPU in a publish burst): the few authors of a topic are encoded
/// once. Bounded whatever peers send: the cache starts afresh when full.
pub fn base58(peer: &PeerId) -> Arc<str> {
    let mut names = BASE58.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(name) = names.get(peer) {
        return name.clone();
    }
    if names.len() >= BASE58_CACHED {
        names.clear();
    }
    let name: Arc<str> = peer.to_base58().into();
    names.insert(*peer, name.clone());
    name
}

/// Gossipsub's default message id — the author in base58 followed by the sequence number in
/// decimal — computed with [`base58`]; the same ids as every other rust-libp2p node.
pub fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    use std::fmt::Write;
    let mut id = match &message.source {
        Some(author) => base58(author).to_string(),
        // As Gossipsub numbers an anonymous message.
        None => PeerId::from_bytes(&[0, 1, 0])
            .map(|p| p.to_base58())
            .unwrap_or_default(),
    };
    let _ = write!(id, "{}", message.sequence_number.unwrap_or_default());
    gossipsub::MessageId::from(id)
}

/// Gossipsub v1.1 scoring that protects the mesh without knowing the application's topics:
/// IP colocation (more than `pubsub.ip_colocation_threshold` peers on one address), behaviour
/// penalties (broken IHAVE promises, GRAFT during backoff), and the application score, fed with
/// p2pd's own misbehaviour score once a second. Its weight puts the graylist at twice the ban
/// threshold, so a peer is banned by p2pd before Gossipsub stops listening to it. Peers on this
/// host and trusted addresses are not counted for colocation.
pub fn peer_scoring(
    config: &Config,
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let p = &config.pubsub;
    let ban = config.rate_limit.ban_threshold.unsigned_abs().max(1) as f64;
    let mut whitelist: std::collections::HashSet<std::net::IpAddr> = [
        std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ]
    .into();
    for a in &config.trust.addresses {
        let net = a.0 .0;
        if net.prefix_len() == net.max_prefix_len() {
            whitelist.insert(net.addr());
        }
    }
    let params = gossipsub::PeerScoreParams {
        app_specific_weight: -(p.graylist_threshold as f64) / (2.0 * ban),
        ip_colocation_factor_threshold: p.ip_colocation_threshold.into(),
        ip_colocation_factor_whitelist: whitelist,
        // A full send queue to a peer is as often a burst of our own publishes as a slow peer:
        // it must not lower an honest peer's score (a pipelined burst would graylist it). The
        // queue stays bounded either way, and publishers get UNAVAILABLE to back off.
        slow_peer_weight: 0.0,
        // A peer's score outlives its connections for this long, so one that misbehaved cannot
        // reconnect clean at once (serious abuse is banned by the rate limiter, persistently).
        // libp2p keeps every score that is not positive — a peer that came and went without
        // delivering anything has 0 — for an hour by default: under churn that was ~1 KiB per
        // peer ever met in the last hour, the growth a long soak showed.
        retain_score: Duration::from_secs(300),
        ..Default::default()
    };
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: p.gossip_threshold as f64,
        publish_threshold: p.publish_threshold as f64,
        graylist_threshold: p.graylist_threshold as f64,
        ..Default::default()
    };
    (params, thresholds)
}

/// The kad protocol, to recognise DHT servers among identified peers.
pub fn is_dht_server(protocols: &[StreamProtocol]) -> bool {
    protocols.contains(&kad::PROTOCOL_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(source: Option<PeerId>, seq: Option<u64>) -> gossipsub::Message {
        gossipsub::Message {
            source,
            data: b"data".to_vec(),
            sequence_number: seq,
            topic: gossipsub::IdentTopic::new("t").hash(),
        }
    }

    #[test]
    fn message_ids_are_gossipsubs_own() {
        let upstream = gossipsub::Config::default();
        let author = PeerId::random();
        for m in [
            message(Some(author), Some(1)),
            message(Some(author), Some(u64::MAX)),
            message(Some(PeerId::random()), Some(1_700_000_000_000_000_000)),
            message(Some(author), None),
            message(None, Some(7)),
        ] {
            assert_eq!(message_id(&m), upstream.message_id(&m));
        }
    }

    #[test]
    fn the_base58_cache_stays_bounded() {
        let first = PeerId::random();
        assert_eq!(&*base58(&first), first.to_base58());
        for _ in 0..BASE58_CACHED + 10 {
            let p = PeerId::random();
            assert_eq!(&*base58(&p), p.to_base58());
        }
        assert!(BASE58.lock().unwrap().len() <= BASE58_CACHED);
        assert_eq!(&*base58(&first), first.to_base58());
    }
}
