//! Applying a re-read config to the running node without dropping healthy connections: limits,
//! rate limits, trusted and bootstrap peers, the dial filter, bans from disk and the log filter.
//! Keys that only take effect at start-up are reported back instead.

use super::{Node, Reloaded};
use crate::config::Config;
use crate::policy::store::Edits;

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
    check("network.relays", old.network.relays != new.network.relays);
    check(
        "network.autonat_private_addrs",
        old.network.autonat_private_addrs != new.network.autonat_private_addrs,
    );
    check("control", old.control != new.control);
    check("metrics.addr", old.metrics != new.metrics);
    check("log.format", old.log.format != new.log.format);
    check("storage", old.storage != new.storage);
    check("pubsub", old.pubsub != new.pubsub);
    for spec in crate::config::limits::LIMITS.iter().filter(|s| !s.runtime) {
        if (spec.get)(&old.limits) != (spec.get)(&new.limits) {
            keys.push(format!("limits.{}", spec.name));
        }
    }
    keys
}

impl Node {
    /// Applies a re-read, validated config and what the operator edited in bans.json.
    pub fn apply_config(&mut self, new: Config, bans: Edits) -> Reloaded {
        let restart = restart_needed(&self.config, &new);
        let mut applied = Vec::new();

        // Limits that can change at runtime go back to the file's values; the others stay
        // until a restart.
        let mut limits = new.limits.clone();
        for spec in crate::config::limits::LIMITS.iter().filter(|s| !s.runtime) {
            (spec.set)(&mut limits, (spec.get)(&self.config.limits));
        }
        self.config.limits = limits;
        self.config.rate_limit = new.rate_limit.clone();
        self.config.trust = new.trust.clone();
        self.config.network.bootstrap_peers = new.network.bootstrap_peers.clone();
        self.config.network.dial_deny_cidrs = new.network.dial_deny_cidrs.clone();
        self.swarm.behaviour_mut().policy.reconfigure(&self.config);
        self.p2p.set_limits(&self.config.limits);
        self.learn_trusted_addrs();
        applied.push("limits, rate limits, trusted peers and addresses, dial filter");

        // New bootstrap peers are dialled; known ones keep their connections.
        self.join_bootstrap_peers();
        applied.push("bootstrap peers");

        // Bans and runtime trust as edited in the file; nothing acknowledged since is lost.
        if !bans.is_empty() {
            tracing::info!(
                bans = bans.bans.len(),
                unbans = bans.unbans.len(),
                trusted = bans.trusted.len(),
                untrusted = bans.untrusted.len(),
                "applying edits made to bans.json"
            );
            let banned: Vec<_> = bans.bans.iter().map(|b| b.target.clone()).collect();
            self.swarm.behaviour_mut().policy.apply_edits(bans, None);
            for t in &banned {
                self.purge_from_dht(t);
            }
        }
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
        Reloaded {
            message: format!("applied: {}", applied.join(", ")),
            restart_needed: restart,
        }
    }
}
