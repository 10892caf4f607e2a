//! Applying a re-read config to the running node without dropping healthy connections: limits,
//! rate limits, trusted and bootstrap peers, the dial filter, bans from disk and the log filter.
//! Keys that only take effect at start-up are reported back instead.

use super::Node;
use crate::behaviour;
use crate::config::Config;
use crate::policy::bans::BanList;
use crate::policy::rate::BucketConfig;
use libp2p::PeerId;
use p2pd_proto::control;
use std::collections::BTreeSet;

/// Keys read only at start-up, with how to compare them.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |key: &str, changed: bool| {
        if changed {
            keys.push(key.to_string());
        }
    };
    check("network.listen", old.network.listen != new.network.listen);
    check(
        "network.external",
        old.network.external != new.network.external,
    );
    check(
        "network.dht_mode",
        old.network.dht_mode != new.network.dht_mode,
    );
    check(
        "network.bootstrap_interval",
        old.network.bootstrap_interval != new.network.bootstrap_interval,
    );
    check(
        "network.bootstrap",
        old.network.bootstrap != new.network.bootstrap,
    );
    check(
        "limits.idle_timeout",
        old.limits.idle_timeout != new.limits.idle_timeout,
    );
    check(
        "limits.stream_idle_timeout",
        old.limits.stream_idle_timeout != new.limits.stream_idle_timeout,
    );
    check(
        "limits.max_negotiating_inbound_streams",
        old.limits.max_negotiating_inbound_streams != new.limits.max_negotiating_inbound_streams,
    );
    check(
        "limits.max_outbound_streams",
        old.limits.max_outbound_streams != new.limits.max_outbound_streams,
    );
    check("control", old.control != new.control);
    check("metrics.addr", old.metrics != new.metrics);
    check("log.format", old.log.format != new.log.format);
    check("storage", old.storage != new.storage);
    keys
}

impl Node {
    pub(super) fn apply_config(&mut self, new: Config, bans: BanList) -> control::ReloadResponse {
        let restart = restart_needed(&self.config, &new);
        let mut applied = Vec::new();

        // Limits that can change at runtime go back to the file's values.
        let mut limits = new.limits.clone();
        let old = &self.config.limits;
        limits.idle_timeout = old.idle_timeout.clone();
        limits.stream_idle_timeout = old.stream_idle_timeout.clone();
        limits.max_negotiating_inbound_streams = old.max_negotiating_inbound_streams;
        limits.max_outbound_streams = old.max_outbound_streams;
        self.config.limits = limits;
        *self.swarm.behaviour_mut().connection_limits.limits_mut() =
            behaviour::connection_limits(&self.config);
        self.swarm.behaviour_mut().memory_limits =
            libp2p::memory_connection_limits::Behaviour::with_max_bytes(
                usize::try_from(self.config.limits.max_memory.0 .0).unwrap_or(usize::MAX),
            );
        self.policy.clear_runtime_limits();
        self.p2p.set_limits(&self.config.limits);
        applied.push("limits");

        let r = &new.rate_limit;
        self.policy.reconfigure(
            BucketConfig {
                capacity: r.capacity.into(),
                refill_per_sec: r.refill_per_sec.into(),
            },
            BucketConfig {
                capacity: r.trusted_capacity.into(),
                refill_per_sec: r.trusted_refill_per_sec.into(),
            },
            r.ban_threshold as f64,
            r.ban_duration.0 .0,
        );
        self.config.rate_limit = new.rate_limit.clone();
        applied.push("rate limits");

        // Trusted peers from the file: drop the ones no longer listed, add the new ones.
        let wanted: BTreeSet<PeerId> = new.trust.peers.iter().map(|t| t.0.peer).collect();
        for p in self.policy.configured_trusted() {
            if !wanted.contains(&p) {
                self.untrust_configured(&p);
            }
        }
        self.config.trust = new.trust.clone();
        self.init_trust();
        applied.push("trusted peers");

        // New bootstrap peers are dialled; known ones keep their connections.
        self.config.network.bootstrap_peers = new.network.bootstrap_peers.clone();
        self.config.network.dial_deny_cidrs = new.network.dial_deny_cidrs.clone();
        let deny = new.network.dial_deny_cidrs.iter().map(|c| c.0).collect();
        self.swarm.behaviour_mut().policy.set_dial_deny(deny);
        self.join_bootstrap_peers();
        applied.push("bootstrap peers and dial filter");

        // Bans as the file has them now (an operator may have edited it).
        self.swarm.behaviour_mut().policy.replace_bans(bans);
        applied.push("bans");

        match crate::logging::set_filter(&new.log.filter) {
            Ok(()) => applied.push("log filter"),
            Err(e) => tracing::warn!(error = %e, "log filter not changed"),
        }
        self.config.log.filter = new.log.filter.clone();
        self.config.shutdown = new.shutdown.clone();
        applied.push("shutdown timeout");

        if !restart.is_empty() {
            tracing::warn!(keys = ?restart, "changed keys that take effect only after a restart");
        }
        control::ReloadResponse {
            message: format!("applied: {}", applied.join(", ")),
            restart_needed: restart,
        }
    }
}
