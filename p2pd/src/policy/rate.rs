//! Per-peer token buckets for inbound application traffic, and a misbehaviour score that leads
//! to disconnection and a timed ban when it falls below the threshold. Scores recover over time.

use libp2p::PeerId;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketConfig {
    pub capacity: f64,
    pub refill_per_sec: f64,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// What a peer's message costs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// Over its rate limit.
    RateExceeded,
    /// A message that failed validation (replay, bad signature, corrupt data).
    Invalid,
}

impl Offence {
    fn penalty(self) -> f64 {
        match self {
            Offence::RateExceeded => 1.0,
            Offence::Invalid => 10.0,
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    normal: BucketConfig,
    trusted: BucketConfig,
    buckets: HashMap<PeerId, Bucket>,
    scores: HashMap<PeerId, (f64, Instant)>,
    /// Score points regained per second, up to 0.
    recovery_per_sec: f64,
    /// At or below this score the peer is disconnected and banned.
    ban_threshold: f64,
    /// Messages dropped per peer, for `p2pctl` and metrics.
    pub dropped: HashMap<PeerId, u64>,
}

impl RateLimiter {
    pub fn new(normal: BucketConfig, trusted: BucketConfig) -> Self {
        Self::with_threshold(normal, trusted, -100.0)
    }

    pub fn with_threshold(normal: BucketConfig, trusted: BucketConfig, ban_threshold: f64) -> Self {
        RateLimiter {
            normal,
            trusted,
            buckets: HashMap::new(),
            scores: HashMap::new(),
            recovery_per_sec: 1.0,
            ban_threshold,
            dropped: HashMap::new(),
        }
    }

    /// New bucket sizes and threshold; existing buckets refill toward the new capacity.
    pub fn reconfigure(&mut self, normal: BucketConfig, trusted: BucketConfig, ban_threshold: f64) {
        self.normal = normal;
        self.trusted = trusted;
        self.ban_threshold = ban_threshold;
    }

    /// Takes one token for a message from `peer`; false = drop it.
    pub fn allow(&mut self, peer: &PeerId, trusted: bool, now: Instant) -> bool {
        let cfg = if trusted { self.trusted } else { self.normal };
        let b = self.buckets.entry(*peer).or_insert(Bucket {
            tokens: cfg.capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * cfg.refill_per_sec).min(cfg.capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            *self.dropped.entry(*peer).or_default() += 1;
            false
        }
    }

    /// Records an offence; returns true when the peer has fallen to the ban threshold.
    pub fn offend(&mut self, peer: &PeerId, offence: Offence, now: Instant) -> bool {
        let score = self.score(peer, now) - offence.penalty();
        self.scores.insert(*peer, (score, now));
        score <= self.ban_threshold
    }

    /// The current score (0 is clean; recovers toward 0 over time).
    pub fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        match self.scores.get(peer) {
            Some((s, at)) => (s + now.saturating_duration_since(*at).as_secs_f64()
                * self.recovery_per_sec)
                .min(0.0),
            None => 0.0,
        }
    }

    /// Forgets a peer (after it was banned or disconnected for good).
    pub fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
        self.scores.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_limits_and_refills() {
        let cfg = BucketConfig {
            capacity: 5.0,
            refill_per_sec: 2.0,
        };
        let mut r = RateLimiter::new(
            cfg,
            BucketConfig {
                capacity: 50.0,
                refill_per_sec: 20.0,
            },
        );
        let p = PeerId::random();
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| r.allow(&p, false, t0)).count(), 5);
        assert_eq!(r.dropped[&p], 5);
        assert_eq!(
            (0..10)
                .filter(|_| r.allow(&p, false, t0 + Duration::from_secs(1)))
                .count(),
            2
        );
        let t = PeerId::random();
        assert_eq!((0..100).filter(|_| r.allow(&t, true, t0)).count(), 50);
    }

    #[test]
    fn scores_fall_and_recover() {
        let cfg = BucketConfig {
            capacity: 1.0,
            refill_per_sec: 1.0,
        };
        let mut r = RateLimiter::new(cfg, cfg);
        let p = PeerId::random();
        let t0 = Instant::now();
        for _ in 0..9 {
            assert!(!r.offend(&p, Offence::Invalid, t0));
        }
        assert!(r.offend(&p, Offence::Invalid, t0));
        assert!(r.score(&p, t0 + Duration::from_secs(30)) > -100.0 + 29.0);
        assert_eq!(r.score(&p, t0 + Duration::from_secs(1000)), 0.0);
    }
}
