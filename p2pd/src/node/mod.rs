//! The node: sole owner of the libp2p `Swarm`, driven by one event loop that selects over swarm
//! events, commands from the control socket, and timers. Slow work (disk writes) is handed to
//! blocking tasks so the loop stays responsive.

mod blocks;
mod command;
mod dht;
mod dials;
mod nat;
mod peers;
mod policy;
mod pubsub;
mod reload;
pub mod routing_table;
mod service;
mod types;

pub use command::{ApiError, Code, Command, DhtQuery, NodeHandle, Reply, TrustAction};
pub use pubsub::{Delivery, SubscriberRx};
pub use service::ServiceState;
pub use types::{
    Connected, ConnectionView, DhtAnswer, LimitView, PeerView, Reloaded, Status, TrustedView,
};

use crate::addr;
use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::blocks::fetch::BlockService;
use crate::config::{Config, DhtMode};
use crate::health::Health;
use crate::slim::Slim;
use anyhow::Context;
use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::metrics::{Metrics, Recorder, Registry};
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, identity::Keypair, kad, noise, ping, tls, Multiaddr, PeerId, Swarm};
use peers::PeerBook;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often the routing table is written to disk while running.
const SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// At most this many saved peers are dialled at start.
const MAX_STARTUP_DIALS: usize = 64;

/// Facts about the daemon that the node reports but does not own.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub metrics_addr: String,
    pub mode: &'static str,
    pub open_files_limit: u64,
    pub data_dir: PathBuf,
}

pub struct Node {
    swarm: Swarm<Slim<Behaviour>>,
    commands: mpsc::Receiver<Command>,
    peers: PeerBook,
    /// Dials local clients wait for.
    dials: dials::Dials,
    listeners: HashSet<ListenerId>,
    health: Arc<Health>,
    metrics: Metrics,
    info: NodeInfo,
    config: Config,
    /// Every listen address is on loopback: peers' loopback addresses are then routable.
    loopback_only: bool,
    saving: Option<JoinHandle<()>>,
    pubsub: pubsub::PubSub,
    dht: dht::Dht,
    blocks: BlockService,
    block_requests: HashMap<OutboundRequestId, blocks::Pending>,
    /// Replay windows for the signed envelopes of our own protocols.
    envelopes: crate::replay::ReplayGuard<PeerId>,
    /// Our own command channel, for work finished off the loop.
    handle: NodeHandle,
    service: ServiceState,
    p2p: crate::metrics::P2pMetrics,
    nat: nat::Nat,
    /// Peers to dial once the listeners are bound ([`Node::join`]).
    to_join: Option<Vec<(PeerId, Vec<Multiaddr>)>>,
    /// QUIC's UDP sockets and the buffers the kernel granted them ([`crate::udp`]).
    udp: crate::udp::Sockets,
}

/// Builds the swarm: TCP (TLS 1.3 or Noise, yamux) and QUIC-v1 behind the policy's gate, DNS,
/// relay client; never plaintext.
pub fn build_swarm(
    key: &Keypair,
    config: &Config,
    registry: &mut Registry,
    policy: crate::policy::Policy,
    rules: crate::policy::gate::SharedRules,
    udp: crate::udp::Sockets,
) -> anyhow::Result<Swarm<Slim<Behaviour>>> {
    // limits.max_outbound_streams caps the concurrent streams of one connection, on every muxer.
    let streams = config.limits.max_outbound_streams;
    let handshake = config.limits.handshake_timeout.0 .0;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_other_transport(|key| crate::transport::gated(key, streams, handshake, rules, udp))
        .map_err(|e| anyhow::anyhow!("TCP/QUIC transport: {e}"))?
        .with_dns()
        .context("DNS resolver (check /etc/resolv.conf)")?
        .with_relay_client((tls::Config::new, noise::Config::new), move || {
            crate::transport::muxer(streams)
        })
        .context("relay client transport")?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, config, registry, policy)
                .map(Slim)
                .map_err(Into::into)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(config.limits.idle_timeout.0 .0)
                .with_max_negotiating_inbound_streams(
                    config.limits.max_negotiating_inbound_streams as usize,
                )
        })
        .build();
    Ok(swarm)
}

/// What the node uses besides the swarm, built by the daemon at start-up.
pub struct Services {
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub info: NodeInfo,
    pub blocks: BlockService,
    pub service: ServiceState,
    pub p2p: crate::metrics::P2pMetrics,
    /// QUIC's sockets and their buffers, as the transport records them.
    pub udp: crate::udp::Sockets,
}

impl Node {
    pub fn new(
        mut swarm: Swarm<Slim<Behaviour>>,
        config: Config,
        commands: (NodeHandle, mpsc::Receiver<Command>),
        services: Services,
    ) -> Self {
        let (handle, commands) = commands;
        let Services {
            health,
            metrics,
            info,
            blocks,
            service,
            p2p,
            udp,
        } = services;
        let loopback_only = config.network.listen.iter().all(|a| addr::is_loopback(a));
        let n = &config.network;
        swarm
            .behaviour_mut()
            .kad
            .set_mode(kad_mode(n, loopback_only));
        for a in &n.external {
            swarm.add_external_address(a.0.clone());
        }
        let nat = nat::Nat::new(n.relays.iter().map(|a| a.0.clone()));
        let mut node = Node {
            swarm,
            commands,
            peers: PeerBook::default(),
            dials: Default::default(),
            listeners: HashSet::new(),
            health,
            metrics,
            info,
            config,
            loopback_only,
            saving: None,
            pubsub: pubsub::PubSub::counting_drops(p2p.pubsub_dropped.clone()),
            dht: Default::default(),
            blocks,
            block_requests: HashMap::new(),
            envelopes: crate::replay::ReplayGuard::new(100_000),
            handle,
            service,
            p2p,
            nat,
            to_join: None,
            udp,
        };
        node.learn_trusted_addrs();
        node.p2p.set_limits(&node.config.limits);
        node
    }

    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Binds every configured listen address; a failure names the address.
    pub fn listen(&mut self) -> anyhow::Result<()> {
        for a in self.config.network.listen.clone() {
            let id = self
                .swarm
                .listen_on(a.0.clone())
                .map_err(|e| listen_error(&a.0, &e))?;
            self.listeners.insert(id);
            self.service.listener_added(id);
        }
        Ok(())
    }

    /// Seeds the DHT from the saved routing table and the bootstrap peers, and dials them.
    pub fn join(&mut self) {
        self.pubsub
            .load_replay(&self.info.data_dir.join(pubsub::REPLAY_FILE));
        let saved = routing_table::load(&self.routing_table_path()).peers();
        if !saved.is_empty() {
            tracing::info!(peers = saved.len(), "loaded the routing table");
        }
        let peers = self.bootstrap_peers().into_iter().chain(saved).collect();
        // Dialled once the listeners are bound: TCP dials then leave from the listen port, so
        // the address peers observe (and AutoNAT and hole punching use) is the one behind the
        // NAT's mapping of that port, not a throwaway one.
        self.to_join = Some(peers);
    }

    /// The join waiting for the listeners (or for the first tick, if one never binds).
    fn dial_join(&mut self) {
        if let Some(peers) = self.to_join.take() {
            self.dial_known(peers);
        }
    }

    /// The configured bootstrap peers with their addresses.
    fn bootstrap_peers(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.config
            .network
            .bootstrap_peers
            .iter()
            .filter_map(|a| Some((addr::peer_id_of(a)?, vec![addr::without_peer_id(a)])))
            .collect()
    }

    /// Dials the bootstrap peers again (after a reload) and re-bootstraps the DHT.
    pub(super) fn join_bootstrap_peers(&mut self) {
        let peers = self.bootstrap_peers();
        self.dial_known(peers);
    }

    /// Adds peers to the DHT, dials (up to a bound) those not connected, and bootstraps.
    fn dial_known(&mut self, peers: Vec<(PeerId, Vec<Multiaddr>)>) {
        let me = self.local_peer_id();
        let mut dialled = 0;
        for (peer, addrs) in peers {
            if peer == me {
                continue;
            }
            for a in &addrs {
                self.swarm.behaviour_mut().kad.add_address(&peer, a.clone());
            }
            if dialled < MAX_STARTUP_DIALS {
                dialled += 1;
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!(%peer, error = %e, "dial not started");
                }
            }
        }
        self.bootstrap();
    }

    fn bootstrap(&mut self) {
        if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!(error = %e, "DHT bootstrap skipped");
        }
    }

    fn routing_table_path(&self) -> PathBuf {
        self.info.data_dir.join(routing_table::FILE_NAME)
    }

    /// Runs until `shutdown` resolves or every command sender is gone, then persists state.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut save_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + SAVE_INTERVAL, SAVE_INTERVAL);
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        let every = self.config.network.bootstrap_interval.0 .0;
        let mut rebootstrap = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut watchdog = crate::sd::watchdog_interval().map(|every| {
            let mut i = tokio::time::interval(every);
            // After a late turn, keep the spacing instead of bursting to catch up.
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        self.maybe_ready();
        loop {
            self.health.beat();
            tokio::select! {
                ev = self.swarm.select_next_some() => {
                    self.on_swarm_event(ev);
                    // The swarm's events come through channels outside tokio's cooperative
                    // budget: without this the loop could handle a whole burst of inbound
                    // messages in one turn while the control connections that carry them on
                    // to local subscribers wait (measured: a subscriber's queue overflowed in a
                    // 100,000-message burst). Every 128 events the task yields.
                    tokio::task::coop::consume_budget().await;
                }
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => cmd.run(&mut self),
                    None => break,
                },
                _ = save_tick.tick() => {
                    self.save_in_background();
                    let store = self.blocks.store.clone();
                    tokio::task::spawn_blocking(move || store.expire());
                }
                _ = beat.tick() => self.on_tick(),
                _ = rebootstrap.tick() => self.bootstrap(),
                _ = service::watchdog_tick(&mut watchdog) => self.service.notifier().watchdog(),
                _ = &mut shutdown => break,
            }
        }
        self.stop().await;
    }

    async fn stop(mut self) {
        self.drain().await;
        if let Some(h) = self.saving.take() {
            let _ = h.await;
        }
        let state = self.state();
        let peers = state.routing.peers.len();
        let dir = self.info.data_dir.clone();
        match tokio::task::spawn_blocking(move || state.write(&dir)).await {
            Ok(Ok(())) => tracing::info!(peers, "saved the routing table and replay windows"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot save state (disk full or read-only?)")
            }
            Err(e) => tracing::error!(error = %e, "state writer failed"),
        }
    }

    /// What must survive a restart, captured on the loop (cheap) to be written off it.
    fn state(&mut self) -> DurableState {
        DurableState {
            routing: self.snapshot(),
            replay: self.pubsub.replay_json(),
        }
    }

    fn snapshot(&mut self) -> routing_table::Snapshot {
        let mut entries = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for e in bucket.iter() {
                entries.push((
                    *e.node.key.preimage(),
                    e.node.value.iter().cloned().collect(),
                ));
            }
        }
        routing_table::Snapshot::new(entries)
    }

    fn save_in_background(&mut self) {
        if self.saving.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let state = self.state();
        let dir = self.info.data_dir.clone();
        self.saving = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = state.write(&dir) {
                tracing::warn!(data_dir = %dir.display(), error = %e, "cannot save state; will retry");
            }
        }));
    }

    fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    /// The connected peers with their connections, latency, identity and scores.
    pub fn peers(&self) -> Vec<PeerView> {
        let b = self.swarm.behaviour();
        self.peers
            .views(|p| (b.gossipsub.peer_score(p).unwrap_or(0.0), b.policy.score(p)))
    }

    /// Closes every connection to `peer`.
    pub fn disconnect(&mut self, peer: PeerId) -> Result<(), ApiError> {
        self.swarm
            .disconnect_peer_id(peer)
            .map_err(|()| ApiError::new(Code::NotFound, format!("not connected to {peer}")))
    }

    /// The service manager was told about a reload: STATUS= goes back to the node's summary at
    /// the next tick.
    pub fn status_changed(&mut self) {
        self.service.status_changed();
    }

    /// `p2pctl status`.
    pub fn status(&mut self) -> Status {
        let (inbound, outbound) = self.peers.directions();
        let routing_table_size = self.routing_table_size() as u32;
        let autonat = &self.swarm.behaviour().autonat;
        let nat_status = autonat.nat_status();
        let nat = self.reach().as_str();
        Status {
            peer_id: self.local_peer_id(),
            version: env!("CARGO_PKG_VERSION"),
            uptime: self.health.uptime(),
            listen_addrs: self.swarm.listeners().cloned().collect(),
            external_addrs: self.swarm.external_addresses().cloned().collect(),
            metrics_addr: self.info.metrics_addr.clone(),
            connections_inbound: inbound,
            connections_outbound: outbound,
            connected_peers: self.peers.len() as u32,
            routing_table_size,
            nat_status: nat,
            open_files_limit: self.info.open_files_limit,
            dht_mode: self.swarm.behaviour().kad.mode().to_string(),
            mode: self.info.mode,
            bootstrap_configured: self.config.network.bootstrap_peers.len() as u32,
            bootstrap_connected: self
                .bootstrap_peers()
                .iter()
                .filter(|(p, _)| self.swarm.is_connected(p))
                .count() as u32,
            nat_source: self.nat.source(&nat_status, autonat.confidence()),
            relay_addrs: self.nat.relay_addrs(),
            // The relay server offers `hop` once the node has a confirmed external address
            // of its own (a relayed one does not count).
            relay_serving: self
                .swarm
                .external_addresses()
                .any(|a| !addr::is_relayed(a)),
            connections_relayed: self.peers.relayed(),
            hole_punches: self.nat.punches.clone(),
            address_tests: self
                .nat
                .tested_addrs()
                .iter()
                .map(|(a, t)| (a.clone(), t.clone()))
                .collect(),
            udp_buffers: self
                .udp
                .granted()
                .iter()
                .map(|g| (g.recv / 2, g.send / 2))
                .reduce(|(r, s), (r2, s2)| (r.min(r2), s.min(s2))),
        }
    }

    /// Dials `target`; answers once the peer is identified on the new connection (or at once
    /// when already connected).
    pub fn connect(&mut self, target: Multiaddr, reply: Reply<Connected>) {
        self.dial_for(target, false, reply)
    }

    /// Dials `target` for a waiting client, from a new port when `new_port`.
    fn dial_for(&mut self, target: Multiaddr, new_port: bool, reply: Reply<Connected>) {
        let opts = match addr::peer_id_of(&target) {
            Some(peer) if peer == self.local_peer_id() => {
                let _ = reply.send(Err(ApiError::new(
                    Code::BadRequest,
                    "that is this node's own peer id",
                )));
                return;
            }
            Some(peer) if self.swarm.is_connected(&peer) => {
                // Say where the connection really is, which may not be the address asked for.
                let address = self
                    .peers
                    .address_of(&peer)
                    .cloned()
                    .unwrap_or_else(|| target.clone());
                let _ = reply.send(Ok(Connected {
                    peer,
                    address,
                    already_connected: true,
                }));
                return;
            }
            Some(peer) => {
                let opts = DialOpts::peer_id(peer)
                    .addresses(vec![addr::without_peer_id(&target)])
                    .condition(PeerCondition::Always);
                if new_port {
                    opts.allocate_new_port().build()
                } else {
                    opts.build()
                }
            }
            None => {
                let opts = DialOpts::unknown_peer_id().address(target.clone());
                if new_port {
                    opts.allocate_new_port().build()
                } else {
                    opts.build()
                }
            }
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.started(id, target, new_port, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(ApiError::new(
                    Code::Failed,
                    format!("cannot dial {target}: {}", error_chain(&e)),
                )));
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(address = %address.clone().with_p2p(self.local_peer_id()).unwrap_or(address), "listening");
                self.on_listen_addrs_changed();
                if self.service.listener_bound(listener_id) {
                    self.dial_join();
                    self.health.set_listeners_bound();
                    self.maybe_ready();
                }
            }
            SwarmEvent::ExpiredListenAddr { .. } => self.on_listen_addrs_changed(),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let direction = if endpoint.is_dialer() {
                    "outbound"
                } else {
                    "inbound"
                };
                tracing::info!(event = "connection_established", peer_id = %peer_id, remote_addr = %addr::remote_path(&endpoint), direction, "connection established");
                self.peers.connected(peer_id, connection_id, &endpoint);
                self.p2p.connections_opened.inc();
                self.count_connections();
                self.swarm
                    .behaviour_mut()
                    .policy
                    .trusted_connected(&peer_id);
                self.dials
                    .established(connection_id, peer_id, endpoint.get_remote_address());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => {
                tracing::debug!(peer_id = %peer_id, cause = ?cause, "connection closed");
                self.peers.disconnected(&peer_id, connection_id);
                if !self.swarm.is_connected(&peer_id) {
                    self.swarm.behaviour().policy.metrics().scores.remove(
                        &crate::policy::metrics::PeerLabels {
                            peer_id: peer_id.to_string(),
                        },
                    );
                }
                self.count_connections();
                self.dials.closed(connection_id, &peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(peer_id = ?peer_id, error = %error, "dial failed");
                self.p2p.dial_failures.inc();
                let why = error_chain(&error);
                let clients = self.dials.waits_for(connection_id);
                if let Some(retry) = self.dials.failed(connection_id, &why) {
                    tracing::debug!(address = %retry.target, "the dial from the listen port collided; dialling from a new port");
                    self.dial_for(retry.target, true, retry.reply);
                } else if !clients && dials::collided(&why) {
                    self.redial_from_new_port(peer_id, &error);
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(remote_addr = %send_back_addr, error = %error, "inbound connection failed");
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(error = %error, "listener error")
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                // A relay reservation's listener says so itself (nat.rs), once.
                let was_relay = self.on_listener_closed(listener_id);
                if !was_relay {
                    tracing::warn!(addresses = ?addresses, reason = ?reason, "listener closed");
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed")
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
        let rt = self.routing_table_size();
        self.health.set_counts(self.peers.len(), rt);
    }

    /// A dial of the node's own (DHT, bootstrap, trusted peers) collided on the listen port:
    /// the same addresses again from a new port, so a peer is not unreachable for the minute a
    /// closed connection stays in TIME_WAIT.
    fn redial_from_new_port(&mut self, peer: Option<PeerId>, error: &libp2p::swarm::DialError) {
        let (Some(peer), libp2p::swarm::DialError::Transport(tried)) = (peer, error) else {
            return;
        };
        if !self.dials.may_redial(peer) {
            return;
        }
        let addrs: Vec<Multiaddr> = tried.iter().map(|(a, _)| a.clone()).collect();
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .allocate_new_port()
            .build();
        tracing::debug!(peer_id = %peer, "a dial from the listen port collided; dialling from a new port");
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(peer_id = %peer, error = %error_chain(&e), "redial not started");
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(ev) => {
                self.metrics.record(&ev);
                if let identify::Event::Received { connection_id, .. }
                | identify::Event::Error { connection_id, .. } = &ev
                {
                    self.dials.identified(*connection_id);
                }
                if let identify::Event::Received { peer_id, info, .. } = ev {
                    self.on_identified(peer_id, info);
                }
            }
            BehaviourEvent::Ping(ev) => {
                self.metrics.record(&ev);
                if let ping::Event {
                    peer,
                    result: Ok(rtt),
                    ..
                } = ev
                {
                    self.peers.pinged(&peer, rtt);
                }
            }
            BehaviourEvent::Kad(ev) => {
                self.metrics.record(&ev);
                match ev {
                    kad::Event::RoutingUpdated {
                        peer,
                        is_new_peer: true,
                        ..
                    } => {
                        tracing::debug!(peer_id = %peer, "added to the routing table");
                    }
                    kad::Event::OutboundQueryProgressed {
                        id,
                        result,
                        step,
                        stats,
                        ..
                    } => {
                        if step.last {
                            if let Some(d) = stats.duration() {
                                self.p2p.dht_query_duration.observe(d.as_secs_f64());
                            }
                        }
                        self.dht
                            .asked(&id, stats.num_requests(), stats.num_successes());
                        self.on_query_progress(id, result, step.last)
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Gossipsub(ev) => {
                self.metrics.record(&ev);
                self.on_gossip_event(ev);
            }
            BehaviourEvent::Blocks(ev) => self.on_block_event(ev),
            BehaviourEvent::Relay(ev) => {
                self.metrics.record(&ev);
                match ev {
                    libp2p::relay::Event::CircuitReqAccepted { .. } => {
                        self.p2p.relay_active.inc();
                    }
                    libp2p::relay::Event::CircuitClosed { .. } => {
                        self.p2p.relay_active.dec();
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Dcutr(ev) => self.on_dcutr(ev),
            BehaviourEvent::Autonat(ev) => self.on_autonat(ev),
            BehaviourEvent::AutonatV2(ev) => self.on_autonat_v2(ev),
            BehaviourEvent::AutonatV2Server(ev) => self.on_autonat_v2_server(ev),
            BehaviourEvent::RelayClient(ev) => self.on_relay_client(ev),
            _ => {}
        }
    }

    /// A host whose only interface is loopback (a container with a private network, a test
    /// rig) is a loopback-only network even when the node listens on 0.0.0.0: what counts is
    /// the addresses actually bound. Its peers' loopback addresses are routable and the DHT
    /// serves (in `auto` mode), as on a node configured for 127.0.0.1.
    fn on_listen_addrs_changed(&mut self) {
        let bound: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        let loopback_only = self
            .config
            .network
            .listen
            .iter()
            .all(|a| addr::is_loopback(a))
            || (!bound.is_empty() && bound.iter().all(addr::is_loopback));
        if loopback_only != self.loopback_only {
            self.loopback_only = loopback_only;
            let mode = kad_mode(&self.config.network, loopback_only);
            tracing::info!(loopback_only, dht_mode = ?mode, "listen addresses changed the DHT mode");
            self.swarm.behaviour_mut().kad.set_mode(mode);
        }
    }

    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        tracing::debug!(event = "identified", peer_id = %peer, protocol = %info.protocol_version, agent = %info.agent_version, "peer identified");
        self.peers.identified(&peer, &info);
        if behaviour::is_dht_server(&info.protocols) {
            for a in info.listen_addrs {
                // A peer's loopback address only means something to a peer on the same host.
                if addr::is_loopback(&a) && !self.loopback_only {
                    continue;
                }
                if let Some(why) = self.swarm.behaviour().policy.refuses_addr(&a) {
                    tracing::debug!(peer_id = %peer, address = %a, why, "address not added to the DHT");
                    continue;
                }
                self.swarm.behaviour_mut().kad.add_address(&peer, a);
            }
        }
        // A relay just met, while this node needs one.
        self.reserve_relays();
    }
}

/// Why a listen address cannot be bound, and what to do: for a port in use, who holds it and
/// how to give p2pd another one.
fn listen_error(addr: &Multiaddr, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    use libp2p::multiaddr::Protocol;
    let port = addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some((crate::ports::Proto::Tcp, port)),
        Protocol::Udp(port) => Some((crate::ports::Proto::Udp, port)),
        _ => None,
    });
    match port {
        Some((proto, port)) if crate::ports::in_use(e) => {
            let who = crate::ports::holder(proto, port);
            let other: Multiaddr = addr
                .iter()
                .map(|p| match p {
                    Protocol::Tcp(n) => Protocol::Tcp(n.wrapping_add(1)),
                    Protocol::Udp(n) => Protocol::Udp(n.wrapping_add(1)),
                    p => p,
                })
                .collect();
            anyhow::anyhow!(
                "cannot listen on {addr} (network.listen): port {port} is in use, {who}. Give p2pd \
                 other addresses: [network] listen = [\"{other}\", ...] in the config file, or \
                 P2P_LISTEN_ADDRS (or stop the other service)"
            )
        }
        _ => anyhow::anyhow!(
            "cannot listen on {addr} (network.listen): {}",
            error_chain(e)
        ),
    }
}

/// The Kademlia mode for a config: server on bootstrap nodes, when told, with external
/// addresses or on a loopback-only network; otherwise libp2p decides from confirmed external
/// addresses (AutoNAT).
fn kad_mode(n: &crate::config::Network, loopback_only: bool) -> Option<kad::Mode> {
    match n.dht_mode {
        _ if n.bootstrap => Some(kad::Mode::Server),
        DhtMode::Server => Some(kad::Mode::Server),
        DhtMode::Client => Some(kad::Mode::Client),
        DhtMode::Auto if !n.external.is_empty() || loopback_only => Some(kad::Mode::Server),
        DhtMode::Auto => None,
    }
}

impl Node {
    /// Once a second: expire bans, redial trusted peers, drop gone subscribers.
    fn count_connections(&self) {
        let n = self
            .swarm
            .network_info()
            .connection_counters()
            .num_established();
        self.p2p.connections_active.set(i64::from(n));
    }

    fn on_tick(&mut self) {
        self.dials.tick();
        self.dial_join();
        let g = &self.swarm.behaviour().gossipsub;
        self.p2p.gossip_peers.set(g.all_mesh_peers().count() as i64);
        self.p2p.pubsub_topics.set(g.topics().count() as i64);
        #[cfg(debug_assertions)]
        self.debug_stall();
        self.refresh_status();
        self.expire_bans();
        self.keep_trusted_connected();
        self.nat_changed();
        self.reserve_relays();
        self.pubsub_sweep();
        self.swarm.behaviour_mut().policy.sweep();
        self.refresh_scores();
    }

    /// Feeds p2pd's misbehaviour scores to Gossipsub (its application score) and exports each
    /// connected peer's Gossipsub score.
    fn refresh_scores(&mut self) {
        let b = self.swarm.behaviour_mut();
        for p in self.peers.ids() {
            let ours = b.policy.score(p);
            b.gossipsub.set_application_score(p, ours);
            if let Some(score) = b.gossipsub.peer_score(p) {
                b.policy
                    .metrics()
                    .scores
                    .get_or_create(&crate::policy::metrics::PeerLabels {
                        peer_id: p.to_string(),
                    })
                    .set(score);
            }
        }
    }
}

/// An error and its causes on one line ("a: b: c"), since libp2p's outer errors say little.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// The routing table and the replay windows, written by atomic replace.
struct DurableState {
    routing: routing_table::Snapshot,
    replay: Vec<u8>,
}

impl DurableState {
    fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        routing_table::save(&dir.join(routing_table::FILE_NAME), &self.routing)?;
        crate::persist::replace(&dir.join(pubsub::REPLAY_FILE), &self.replay, 0o600)
    }
}
