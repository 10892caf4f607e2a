//! The policy's metrics: bans, messages refused, inbound connections refused, peer scores.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BanLabels {
    pub action: String,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer_id: String,
}

/// Reasons an inbound message is dropped. Only `bad_signature` (and other provably invalid
/// messages) costs the sender score; the others are dropped without penalty.
pub const MESSAGE_REASONS: &[&str] = &[
    "rate_limit",
    "replay",
    "too_old",
    "self_origin",
    "bad_signature",
];

/// Reasons an inbound connection is refused before or at the handshake.
pub const CONNECTION_REASONS: &[&str] = &[
    "banned",
    "pending",
    "pending_per_ip",
    "inbound_per_ip",
    "rate_per_ip",
    "per_peer",
];

#[derive(Clone)]
pub struct PolicyMetrics {
    blacklist: Family<BanLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    /// Gossipsub score of each connected peer (bounded by the connection limit).
    pub scores: Family<PeerLabels, Gauge<f64, AtomicU64>>,
}

impl PolicyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = PolicyMetrics {
            blacklist: Family::default(),
            rejected: Family::default(),
            refused: Family::default(),
            scores: Family::default(),
        };
        for action in ["ban", "unban"] {
            for kind in ["peer", "ip", "cidr"] {
                let _ = m.blacklist.get_or_create(&BanLabels {
                    action: action.into(),
                    kind: kind.into(),
                });
            }
        }
        for r in MESSAGE_REASONS {
            let _ = m.rejected.get_or_create(&reason(r));
        }
        for r in CONNECTION_REASONS {
            let _ = m.refused.get_or_create(&reason(r));
        }
        registry.register(
            "p2p_blacklist",
            "Bans and unbans, by action (ban, unban) and kind (peer, ip, cidr)",
            m.blacklist.clone(),
        );
        registry.register(
            "p2p_messages_rejected",
            "Inbound messages dropped before delivery, by reason (rate_limit, replay, too_old, self_origin, bad_signature)",
            m.rejected.clone(),
        );
        registry.register(
            "p2p_inbound_refused",
            "Inbound connections refused, by reason (banned, pending, pending_per_ip, inbound_per_ip, rate_per_ip)",
            m.refused.clone(),
        );
        registry.register(
            "p2p_peer_score",
            "Gossipsub score of each connected peer",
            m.scores.clone(),
        );
        m
    }

    pub fn ban(&self, action: &str, kind: &str) {
        self.blacklist
            .get_or_create(&BanLabels {
                action: action.into(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn rejected(&self, why: &str) {
        self.rejected.get_or_create(&reason(why)).inc();
    }

    pub fn refused(&self, why: &str) {
        self.refused.get_or_create(&reason(why)).inc();
    }
}

fn reason(r: &str) -> ReasonLabels {
    ReasonLabels { reason: r.into() }
}
