//! The daemon's configuration: the schema with its defaults, and validation of ranges.
//!
//! Layers, lowest first: built-in defaults (which differ between system and user mode) < the
//! config file < `P2P_*` environment variables < command-line flags. See [`load`].

pub mod limits;
mod load;
pub mod values;

pub use load::{load, ConfigError, Overrides, Source};

use p2pd_proto::paths::{self, Mode};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use values::{ByteSize, HumanDuration, IpRange, PeerRef, Text};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub network: Network,
    pub limits: Limits,
    pub rate_limit: RateLimit,
    pub trust: Trust,
    pub control: Control,
    pub metrics: Metrics,
    pub log: Log,
    pub shutdown: Shutdown,
    pub storage: Storage,
    pub pubsub: PubSub,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Listen multiaddrs (TCP and QUIC-v1).
    pub listen: Vec<Text<libp2p::Multiaddr>>,
    /// Addresses announced to peers in addition to the observed ones.
    pub external: Vec<Text<libp2p::Multiaddr>>,
    /// Multiaddrs with /p2p/ID to join the network through.
    pub bootstrap_peers: Vec<Text<libp2p::Multiaddr>>,
    /// Act as a bootstrap node: DHT server mode, no outbound bootstrap needed.
    pub bootstrap: bool,
    /// "auto", "server" or "client".
    pub dht_mode: DhtMode,
    /// How often the DHT re-bootstraps.
    pub bootstrap_interval: Text<HumanDuration>,
    /// CIDRs never dialled nor announced.
    pub dial_deny_cidrs: Vec<Text<ipnet::IpNet>>,
    /// Relays (multiaddrs ending in /p2p/ID) to reserve a slot on when AutoNAT finds this node
    /// private; empty: connected peers that offer relaying.
    pub relays: Vec<Text<libp2p::Multiaddr>>,
    /// AutoNAT also asks about and answers for private and documentation addresses (a lab, or
    /// a private network that is the nodes' "internet"). Off: public addresses only.
    pub autonat_private_addrs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DhtMode {
    /// Server when a bootstrap node, when external addresses are configured, when every listen
    /// address is loopback (nothing to be behind), or once AutoNAT confirms reachability.
    Auto,
    Server,
    Client,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_connections: u32,
    pub max_inbound: u32,
    pub max_outbound: u32,
    pub max_pending_inbound: u32,
    pub max_per_peer: u32,
    /// Established inbound connections from one address (IPv4 /32, IPv6 /64).
    pub max_inbound_per_ip: u32,
    /// Inbound connections still in their handshake from one address.
    pub max_pending_inbound_per_ip: u32,
    /// New inbound connections per second from one address (token bucket refill)...
    pub inbound_rate_per_ip: u32,
    /// ...and the burst it allows (bucket capacity).
    pub inbound_burst_per_ip: u32,
    pub max_negotiating_inbound_streams: u32,
    pub max_outbound_streams: u32,
    pub idle_timeout: Text<HumanDuration>,
    pub stream_idle_timeout: Text<HumanDuration>,
    /// A connection that has not finished its security and muxer handshake by then is cut.
    pub handshake_timeout: Text<HumanDuration>,
    pub max_memory: Text<ByteSize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    pub capacity: u32,
    pub refill_per_sec: u32,
    pub trusted_capacity: u32,
    pub trusted_refill_per_sec: u32,
    /// A peer whose misbehaviour score falls to this value is disconnected and banned.
    pub ban_threshold: i64,
    /// How long such an automatic ban lasts.
    pub ban_duration: Text<HumanDuration>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trust {
    pub peers: Vec<Text<PeerRef>>,
    /// IPs and CIDRs that bypass the per-address and pending limits.
    pub addresses: Vec<Text<IpRange>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    pub socket: PathBuf,
    /// Group that may use the control socket.
    pub group: String,
    /// The read-only socket (queries only); empty: none.
    pub query_socket: PathBuf,
    /// Group that may use the read-only socket.
    pub query_group: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address of /metrics and /health/*; port 0 picks a free one.
    pub addr: Text<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Journald,
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    pub timeout: Text<HumanDuration>,
}

/// Gossipsub v1.1 peer scoring, with parameters that do not depend on the application's topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PubSub {
    pub scoring: bool,
    /// More peers than this on one IP address lose score (quadratically).
    pub ip_colocation_threshold: u32,
    /// Below this score no gossip is exchanged with a peer...
    pub gossip_threshold: i64,
    /// ...below this our own messages are not sent to it...
    pub publish_threshold: i64,
    /// ...and below this everything it sends is ignored.
    pub graylist_threshold: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub data_dir: PathBuf,
    /// Block data at least this large is snappy-compressed on the wire.
    pub compress_threshold: Text<ByteSize>,
}

fn addrs(list: &[&str]) -> Vec<Text<libp2p::Multiaddr>> {
    list.iter()
        .filter_map(|a| a.parse().ok().map(Text))
        .collect()
}

fn secs(n: u64) -> Text<HumanDuration> {
    Text(HumanDuration(std::time::Duration::from_secs(n)))
}

impl Config {
    /// Built-in defaults for the given mode.
    pub fn defaults(mode: Mode) -> Config {
        let (listen, metrics) = match mode {
            Mode::System => (
                addrs(&["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]),
                std::net::SocketAddr::from(([127, 0, 0, 1], 9100)),
            ),
            Mode::User => (
                addrs(&["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]),
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ),
        };
        Config {
            network: Network {
                listen,
                external: vec![],
                bootstrap_peers: vec![],
                bootstrap: false,
                dht_mode: DhtMode::Auto,
                bootstrap_interval: secs(300),
                dial_deny_cidrs: vec![],
                relays: vec![],
                autonat_private_addrs: false,
            },
            limits: Limits {
                max_connections: 400,
                max_inbound: 1024,
                max_outbound: 512,
                max_pending_inbound: 128,
                // Three, not two: AutoNAT dials back on a connection of its own, and two peers
                // probing each other each need one beside the connection they share.
                max_per_peer: 3,
                max_inbound_per_ip: 16,
                max_pending_inbound_per_ip: 8,
                inbound_rate_per_ip: 4,
                inbound_burst_per_ip: 32,
                max_negotiating_inbound_streams: 128,
                max_outbound_streams: 256,
                idle_timeout: secs(30),
                stream_idle_timeout: secs(60),
                handshake_timeout: secs(10),
                max_memory: Text(ByteSize(256 << 20)),
            },
            rate_limit: RateLimit {
                capacity: 100_000,
                refill_per_sec: 25_000,
                trusted_capacity: 500_000,
                trusted_refill_per_sec: 125_000,
                ban_threshold: -100,
                ban_duration: secs(600),
            },
            trust: Trust::default(),
            control: Control {
                socket: paths::default_socket(mode),
                group: "p2pd".into(),
                query_socket: paths::query_socket_for(&paths::default_socket(mode)),
                query_group: paths::QUERY_GROUP.into(),
            },
            metrics: Metrics {
                addr: Text(metrics),
            },
            log: Log {
                format: LogFormat::Auto,
                filter: "info".into(),
            },
            shutdown: Shutdown { timeout: secs(10) },
            pubsub: PubSub {
                scoring: true,
                ip_colocation_threshold: 10,
                gossip_threshold: -10,
                publish_threshold: -50,
                graylist_threshold: -80,
            },
            storage: Storage {
                data_dir: paths::default_data_dir(mode),
                compress_threshold: Text(ByteSize(1024)),
            },
        }
    }

    /// Range and consistency checks that a type alone cannot express. Each problem names the
    /// dotted key it is about.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut bad: Vec<(String, String)> = limits::check(&self.limits)
            .into_iter()
            .map(|(name, message)| (format!("limits.{name}"), message))
            .collect();
        for r in RANGES {
            let v = (r.get)(self);
            if v < r.lo || v > r.hi {
                bad.push((
                    r.key.to_string(),
                    format!("{v} is out of range; accepted: {} to {}", r.lo, r.hi),
                ));
            }
        }
        let p = &self.pubsub;
        if !(p.graylist_threshold <= p.publish_threshold
            && p.publish_threshold <= p.gossip_threshold
            && p.gossip_threshold <= 0)
        {
            bad.push((
                "pubsub.gossip_threshold".into(),
                format!(
                    "the thresholds must satisfy graylist ({}) <= publish ({}) <= gossip ({}) <= 0",
                    p.graylist_threshold, p.publish_threshold, p.gossip_threshold
                ),
            ));
        }
        let n = &self.network;
        if n.listen.is_empty() {
            bad.push((
                "network.listen".into(),
                "at least one listen address is required".into(),
            ));
        }
        for a in &n.listen {
            if crate::addr::transport_of(a).is_none() {
                bad.push(("network.listen".into(),
                    format!("{} is not a TCP or QUIC-v1 address; accepted: /ip4|ip6/HOST/tcp/PORT or /ip4|ip6/HOST/udp/PORT/quic-v1", a.0),
                ));
            }
        }
        let peers = [
            ("network.bootstrap_peers", &n.bootstrap_peers),
            ("network.relays", &n.relays),
        ];
        for (key, a) in peers
            .iter()
            .flat_map(|(k, l)| l.iter().map(move |a| (*k, a)))
        {
            if crate::addr::peer_id_of(a).is_none() {
                bad.push((
                    key.into(),
                    format!(
                        "{} has no /p2p/PEER_ID part; accepted: a multiaddr ending in /p2p/PEER_ID",
                        a.0
                    ),
                ));
            }
        }
        if let Err(e) = crate::logging::parse_filter(&self.log.filter) {
            bad.push(("log.filter".into(),
                format!("\"{}\" is not a valid filter ({e}); accepted: e.g. \"info\" or \"info,libp2p_kad=debug\"", self.log.filter),
            ));
        }
        if !self.storage.data_dir.is_absolute() {
            bad.push((
                "storage.data_dir".into(),
                format!(
                    "{} is not an absolute path{RELATIVE_HINT}",
                    self.storage.data_dir.display()
                ),
            ));
        }
        if !self.control.socket.is_absolute() {
            bad.push((
                "control.socket".into(),
                format!(
                    "{} is not an absolute path{RELATIVE_HINT}",
                    self.control.socket.display()
                ),
            ));
        }
        bad
    }
}

/// Why a config file's path must be absolute, and where a relative one is accepted.
const RELATIVE_HINT: &str = "; in a config file paths must be absolute (a relative one is taken \
against the working directory only from a flag or a P2P_* variable)";

impl Default for Config {
    fn default() -> Self {
        Config::defaults(Mode::User)
    }
}

macro_rules! default_from_config {
    ($($t:ident . $f:ident),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                Config::default().$f
            }
        }
    )*};
}
default_from_config!(
    Network.network,
    Limits.limits,
    RateLimit.rate_limit,
    Control.control,
    Metrics.metrics,
    Log.log,
    Shutdown.shutdown,
    Storage.storage,
    PubSub.pubsub
);
/// A numeric key outside `[limits]` and the range it accepts (durations in seconds, sizes in
/// bytes): checked by [`Config::check`] and named in type errors.
pub struct Range {
    pub key: &'static str,
    pub lo: i64,
    pub hi: i64,
    get: fn(&Config) -> i64,
}

fn as_secs(d: &Text<HumanDuration>) -> i64 {
    i64::try_from(d.0 .0.as_secs()).unwrap_or(i64::MAX)
}

pub const RANGES: &[Range] = &[
    Range {
        key: "rate_limit.capacity",
        lo: 1,
        hi: 1_000_000,
        get: |c| c.rate_limit.capacity.into(),
    },
    Range {
        key: "rate_limit.refill_per_sec",
        lo: 1,
        hi: 1_000_000,
        get: |c| c.rate_limit.refill_per_sec.into(),
    },
    Range {
        key: "rate_limit.trusted_capacity",
        lo: 1,
        hi: 1_000_000,
        get: |c| c.rate_limit.trusted_capacity.into(),
    },
    Range {
        key: "rate_limit.trusted_refill_per_sec",
        lo: 1,
        hi: 1_000_000,
        get: |c| c.rate_limit.trusted_refill_per_sec.into(),
    },
    Range {
        key: "rate_limit.ban_duration",
        lo: 1,
        hi: 30 * 86_400,
        get: |c| as_secs(&c.rate_limit.ban_duration),
    },
    Range {
        key: "rate_limit.ban_threshold",
        lo: -1_000_000,
        hi: -1,
        get: |c| c.rate_limit.ban_threshold,
    },
    Range {
        key: "storage.compress_threshold",
        lo: 0,
        hi: 1 << 20,
        get: |c| i64::try_from(c.storage.compress_threshold.0 .0).unwrap_or(i64::MAX),
    },
    Range {
        key: "shutdown.timeout",
        lo: 0,
        hi: 3600,
        get: |c| as_secs(&c.shutdown.timeout),
    },
    Range {
        key: "network.bootstrap_interval",
        lo: 10,
        hi: 86_400,
        get: |c| as_secs(&c.network.bootstrap_interval),
    },
    Range {
        key: "pubsub.ip_colocation_threshold",
        lo: 1,
        hi: 100_000,
        get: |c| c.pubsub.ip_colocation_threshold.into(),
    },
];

/// The accepted range of a numeric key, e.g. "1 to 1000000", for error messages.
pub fn accepted(key: &str) -> Option<String> {
    if let Some(spec) = key.strip_prefix("limits.").and_then(limits::spec) {
        return Some(format!(
            "{} to {}",
            spec.unit.show(spec.min),
            spec.unit.show(spec.max)
        ));
    }
    RANGES
        .iter()
        .find(|r| r.key == key)
        .map(|r| format!("{} to {}", r.lo, r.hi))
}
