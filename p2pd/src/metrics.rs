//! p2pd's own metrics (the names the alert rules and `p2pctl diag` use), beside libp2p's, and
//! process metrics read from /proc at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// "in" or "out".
    pub direction: String,
    pub protocol: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// "in" or "out".
    pub direction: String,
}

/// NAT traversal: AutoNAT probes, relay reservations and circuits, hole punching.
#[derive(Debug, Clone, Default)]
pub struct NatMetrics {
    /// AutoNAT probes of this node by result: public, private, error.
    pub probes: Family<ResultLabels, Counter>,
    /// AutoNAT v2 tests of this node's addresses by result: reachable, unreachable.
    pub address_tests: Family<ResultLabels, Counter>,
    /// AutoNAT v2 dial-backs this node made for other nodes by result: ok, failed.
    pub dial_backs: Family<ResultLabels, Counter>,
    /// Reservations this node holds on relays now.
    pub reservations: Gauge,
    /// Reservations relays accepted (renewals included) or refused.
    pub reservation_results: Family<ResultLabels, Counter>,
    /// Circuits through a relay this node opened (out) or accepted (in).
    pub circuits: Family<DirectionLabels, Counter>,
    /// Direct connection upgrades (DCUtR hole punching) by result: success, failure.
    pub hole_punches: Family<ResultLabels, Counter>,
}

impl NatMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = NatMetrics::default();
        registry.register(
            "p2p_autonat_probes",
            "AutoNAT probes of this node's reachability by result (public, private, error)",
            m.probes.clone(),
        );
        registry.register(
            "p2p_autonat_v2_tests",
            "AutoNAT v2 tests of this node's addresses by result (reachable, unreachable)",
            m.address_tests.clone(),
        );
        registry.register(
            "p2p_autonat_v2_dial_backs",
            "AutoNAT v2 dial-backs this node made to test other nodes' addresses, by result (ok, failed)",
            m.dial_backs.clone(),
        );
        registry.register(
            "p2p_relay_reservations",
            "Reservations this node holds on relays now (it is reachable through them)",
            m.reservations.clone(),
        );
        registry.register(
            "p2p_relay_reservation_results",
            "Reservation requests to relays by result (accepted, renewed, failed)",
            m.reservation_results.clone(),
        );
        registry.register(
            "p2p_relay_client_circuits",
            "Circuits through a relay this node opened (out) or accepted (in)",
            m.circuits.clone(),
        );
        registry.register(
            "p2p_hole_punch",
            "Direct connection upgrades of relayed connections (DCUtR) by result (success, failure)",
            m.hole_punches.clone(),
        );
        for result in ["public", "private", "error"] {
            let _ = m.probes.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        for (family, results) in [
            (&m.address_tests, ["reachable", "unreachable"]),
            (&m.dial_backs, ["ok", "failed"]),
        ] {
            for result in results {
                let _ = family.get_or_create(&ResultLabels {
                    result: result.into(),
                });
            }
        }
        for result in ["accepted", "renewed", "failed"] {
            let _ = m.reservation_results.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        for result in ["success", "failure"] {
            let _ = m.hole_punches.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        for direction in ["in", "out"] {
            let _ = m.circuits.get_or_create(&DirectionLabels {
                direction: direction.into(),
            });
        }
        m
    }

    pub fn count(family: &Family<ResultLabels, Counter>, result: &str) {
        family
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }
}

#[derive(Debug, Clone)]
pub struct P2pMetrics {
    /// Limits in effect, so alerts can compare usage with them.
    pub limits: Family<LimitLabels, Gauge>,
    pub pubsub_topics: Gauge,
    /// Messages dropped for local subscribers that fell too far behind.
    pub pubsub_dropped: Counter,
    pub connections_opened: Counter,
    pub connections_active: Gauge,
    pub dht_query_duration: Histogram,
    pub gossip_received: Counter,
    pub gossip_peers: Gauge,
    pub relay_active: Gauge,
    pub message_processing: Histogram,
    pub dial_failures: Counter,
    pub messages: Family<MessageLabels, Counter>,
    pub message_bytes: Family<MessageLabels, Counter>,
    pub nat: NatMetrics,
}

impl P2pMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = P2pMetrics {
            limits: Family::default(),
            pubsub_topics: Gauge::default(),
            pubsub_dropped: Counter::default(),
            connections_opened: Counter::default(),
            connections_active: Gauge::default(),
            dht_query_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            gossip_received: Counter::default(),
            gossip_peers: Gauge::default(),
            relay_active: Gauge::default(),
            message_processing: Histogram::new(exponential_buckets(0.0001, 4.0, 10)),
            dial_failures: Counter::default(),
            messages: Family::default(),
            message_bytes: Family::default(),
            nat: NatMetrics::register(registry),
        };
        registry.register(
            "libp2p_connections_opened",
            "Connections established, in and out",
            m.connections_opened.clone(),
        );
        registry.register(
            "libp2p_connections_active",
            "Connections open now",
            m.connections_active.clone(),
        );
        registry.register(
            "libp2p_dht_query_duration_seconds",
            "Duration of finished Kademlia queries",
            m.dht_query_duration.clone(),
        );
        registry.register(
            "libp2p_gossipsub_messages_received",
            "Gossipsub messages received (before validation)",
            m.gossip_received.clone(),
        );
        registry.register(
            "libp2p_gossipsub_peers",
            "Peers known to Gossipsub",
            m.gossip_peers.clone(),
        );
        registry.register(
            "libp2p_relay_connections_active",
            "Relayed circuits this node serves now",
            m.relay_active.clone(),
        );
        registry.register(
            "p2p_message_processing_seconds",
            "Time to validate and deliver an inbound message",
            m.message_processing.clone(),
        );
        registry.register(
            "p2p_peer_dial_failures",
            "Outbound dials that failed",
            m.dial_failures.clone(),
        );
        registry.register(
            "p2p_messages",
            "Application messages by direction (in, out) and protocol (gossipsub, block)",
            m.messages.clone(),
        );
        registry.register(
            "p2p_message_bytes",
            "Application payload bytes by direction (in, out) and protocol (gossipsub, block)",
            m.message_bytes.clone(),
        );
        registry.register(
            "p2p_limit",
            "Limits in effect, by name (max_connections, max_inbound, max_memory, max_relay_circuits, ...)",
            m.limits.clone(),
        );
        registry.register(
            "p2p_pubsub_topics",
            "Topics this node is subscribed to",
            m.pubsub_topics.clone(),
        );
        registry.register(
            "p2p_pubsub_dropped",
            "Messages dropped for local subscribers too slow to read them",
            m.pubsub_dropped.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        // Every series exists from the start, so dashboards and alerts see zeros, not gaps.
        for direction in ["in", "out"] {
            for protocol in ["gossipsub", "block"] {
                let labels = MessageLabels {
                    direction: direction.into(),
                    protocol: protocol.into(),
                };
                let _ = m.messages.get_or_create(&labels);
                let _ = m.message_bytes.get_or_create(&labels);
            }
        }
        m
    }

    /// Publishes the limits in effect.
    pub fn set_limits(&self, l: &crate::config::Limits) {
        let set = |name: &str, v: u64| {
            self.limits
                .get_or_create(&LimitLabels { name: name.into() })
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        // Durations in seconds, sizes in bytes, counts as they are.
        for spec in crate::config::limits::LIMITS {
            set(spec.name, (spec.get)(l));
        }
        set(
            "max_relay_circuits",
            crate::behaviour::MAX_RELAY_CIRCUITS as u64,
        );
    }

    /// Counts one application message of `bytes` bytes.
    pub fn message(&self, direction: &str, protocol: &str, bytes: usize) {
        let labels = MessageLabels {
            direction: direction.into(),
            protocol: protocol.into(),
        };
        self.messages.get_or_create(&labels).inc();
        self.message_bytes
            .get_or_create(&labels)
            .inc_by(bytes as u64);
    }
}

/// process_* metrics from /proc/self, read at each scrape.
#[derive(Debug)]
struct ProcessCollector;

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as u64)
        .unwrap_or(4096)
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as f64)
        .unwrap_or(100.0)
}

/// Resident memory of this process in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * page_size())
        .unwrap_or(0)
}

pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / ticks_per_second()
}

fn max_fds() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(0)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss_bytes(),
            ),
            ("process_open_fds", "Open file descriptors", open_fds()),
            (
                "process_max_fds",
                "Open file descriptor limit (RLIMIT_NOFILE)",
                max_fds(),
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value as i64);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let cpu = ConstCounter::new(cpu_seconds());
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        Ok(())
    }
}
