//! The node's composed `NetworkBehaviour`: one field per concern. Policy behaviours (limits)
//! come first so they can deny a connection before any protocol does work for it.

use crate::config::Config;
use libp2p::identity::Keypair;
use libp2p::metrics::Registry;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, dcutr, gossipsub, identify, kad, ping, relay, StreamProtocol};
use std::time::Duration;

/// Agent string announced through identify.
pub fn agent_version() -> String {
    format!("p2pd/{}", env!("CARGO_PKG_VERSION"))
}

/// Relayed circuits this node serves at once (relay v2 server).
pub const MAX_RELAY_CIRCUITS: usize = 16;

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
    pub autonat: autonat::Behaviour,
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

        let mut kad_cfg = kad::Config::new(kad::PROTOCOL_NAME);
        kad_cfg.set_query_timeout(Duration::from_secs(30));
        kad_cfg.set_periodic_bootstrap_interval(Some(config.network.bootstrap_interval.0 .0));
        let kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);

        let gossip_cfg = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Every message waits for our verdict (replay window, size) before it is forwarded.
            .validate_messages()
            // Our own messages coming back are duplicates, not offences (see node/pubsub.rs).
            .allow_self_origin(true)
            .max_transmit_size(MAX_PUBSUB_MESSAGE)
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_cfg,
        )
        .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?
        .with_metrics(
            registry.sub_registry_with_prefix("libp2p_gossipsub"),
            Default::default(),
        );

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
            autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
            blocks: crate::blocks::fetch::BlockService::behaviour(),
            streams: libp2p_stream::Behaviour::new(),
        })
    }
}

/// The kad protocol, to recognise DHT servers among identified peers.
pub fn is_dht_server(protocols: &[StreamProtocol]) -> bool {
    protocols.contains(&kad::PROTOCOL_NAME)
}
