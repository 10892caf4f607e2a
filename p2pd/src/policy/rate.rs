//! Per-peer token buckets for inbound application traffic, and a misbehaviour score.
//!
//! Verdicts fit the offence: a message over the bucket is dropped and counted, and costs a
//! little score, sized so that only sustained abuse far above the rate reaches the ban threshold
//! (see [`ABUSE_FACTOR`]); a provably invalid message costs much more. Scores recover over time.
//! State for a peer that is indistinguishable from a fresh one (full bucket, clean score) is
//! evicted, so memory follows the peers that are active, not every identity ever seen.

use libp2p::PeerId;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketConfig {
    pub capacity: f64,
    pub refill_per_sec: f64,
}

/// A peer is banned for rate abuse only when it keeps sending more than this many times its
/// refill rate: each dropped message costs `1 / (ABUSE_FACTOR * refill)` points and the score
/// recovers one point a second, so at 10x the rate the score stands still, and at 100x a
/// threshold of -100 is reached about 11 s after the burst allowance is spent.
pub const ABUSE_FACTOR: f64 = 10.0;

/// Score points regained per second, up to 0.
const RECOVERY_PER_SEC: f64 = 1.0;

/// What a peer did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A message over its rate limit (dropped).
    RateExceeded,
    /// A provably invalid message: bad signature, malformed, oversized, hash mismatch.
    Invalid,
}

#[derive(Debug, Clone)]
struct PeerRate {
    tokens: f64,
    last: Instant,
    score: f64,
    score_at: Instant,
    /// Messages dropped for rate since the state was created.
    dropped: u64,
}

/// What [`RateLimiter::allow`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Dropped; `ban` is true when the peer has now fallen to the ban threshold.
    Dropped {
        ban: bool,
    },
}

#[derive(Debug)]
pub struct RateLimiter {
    normal: BucketConfig,
    trusted: BucketConfig,
    peers: HashMap<PeerId, PeerRate>,
    /// At or below this score the peer is disconnected and banned.
    ban_threshold: f64,
}

impl RateLimiter {
    pub fn new(normal: BucketConfig, trusted: BucketConfig, ban_threshold: f64) -> Self {
        RateLimiter {
            normal,
            trusted,
            peers: HashMap::new(),
            ban_threshold,
        }
    }

    /// New bucket sizes and threshold; existing buckets refill toward the new capacity.
    pub fn reconfigure(&mut self, normal: BucketConfig, trusted: BucketConfig, ban_threshold: f64) {
        self.normal = normal;
        self.trusted = trusted;
        self.ban_threshold = ban_threshold;
    }

    fn config(&self, trusted: bool) -> BucketConfig {
        if trusted {
            self.trusted
        } else {
            self.normal
        }
    }

    fn entry(&mut self, peer: &PeerId, cfg: BucketConfig, now: Instant) -> &mut PeerRate {
        self.peers.entry(*peer).or_insert(PeerRate {
            tokens: cfg.capacity,
            last: now,
            score: 0.0,
            score_at: now,
            dropped: 0,
        })
    }

    /// Takes one token for a message from `peer`.
    pub fn allow(&mut self, peer: &PeerId, trusted: bool, now: Instant) -> Admit {
        let cfg = self.config(trusted);
        let threshold = self.ban_threshold;
        let p = self.entry(peer, cfg, now);
        let elapsed = now.saturating_duration_since(p.last).as_secs_f64();
        p.tokens = (p.tokens + elapsed * cfg.refill_per_sec).min(cfg.capacity);
        p.last = now;
        if p.tokens >= 1.0 {
            p.tokens -= 1.0;
            return Admit::Yes;
        }
        p.dropped += 1;
        let penalty = 1.0 / (ABUSE_FACTOR * cfg.refill_per_sec.max(1.0));
        Admit::Dropped {
            ban: p.penalise(penalty, now) <= threshold,
        }
    }

    /// Records a provably invalid message; true when the peer has fallen to the ban threshold.
    pub fn invalid(&mut self, peer: &PeerId, now: Instant) -> bool {
        let cfg = self.normal;
        let threshold = self.ban_threshold;
        self.entry(peer, cfg, now).penalise(10.0, now) <= threshold
    }

    /// The current score (0 is clean; recovers toward 0 over time).
    pub fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        self.peers.get(peer).map_or(0.0, |p| p.score_now(now))
    }

    /// Messages dropped for rate, for the ban reason.
    pub fn dropped(&self, peer: &PeerId) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.dropped)
    }

    /// Forgets a peer (after it was banned).
    pub fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Drops the state of peers that a fresh entry would reproduce (bucket refilled, score
    /// recovered), and gives the memory back when the table has shrunk a lot.
    pub fn evict(&mut self, now: Instant, trusted: impl Fn(&PeerId) -> bool) {
        let (normal, trusted_cfg) = (self.normal, self.trusted);
        self.peers.retain(|peer, p| {
            let cfg = if trusted(peer) { trusted_cfg } else { normal };
            let elapsed = now.saturating_duration_since(p.last).as_secs_f64();
            let full = p.tokens + elapsed * cfg.refill_per_sec >= cfg.capacity;
            !(full && p.score_now(now) >= 0.0)
        });
        if self.peers.capacity() > 64 && self.peers.capacity() > 4 * self.peers.len() {
            self.peers.shrink_to_fit();
        }
    }

    /// Peers with state, and the table's allocated slots (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        (self.peers.len(), self.peers.capacity())
    }
}

impl PeerRate {
    fn score_now(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.score_at).as_secs_f64();
        (self.score + elapsed * RECOVERY_PER_SEC).min(0.0)
    }

    fn penalise(&mut self, points: f64, now: Instant) -> f64 {
        self.score = self.score_now(now) - points;
        self.score_at = now;
        self.score
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(capacity: f64, refill_per_sec: f64) -> BucketConfig {
        BucketConfig {
            capacity,
            refill_per_sec,
        }
    }

    #[test]
    fn bucket_limits_and_refills() {
        let mut r = RateLimiter::new(cfg(5.0, 2.0), cfg(50.0, 20.0), -100.0);
        let p = PeerId::random();
        let t0 = Instant::now();
        let admitted = |r: &mut RateLimiter, p: &PeerId, t: bool, now: Instant, n: usize| {
            (0..n).filter(|_| r.allow(p, t, now) == Admit::Yes).count()
        };
        assert_eq!(admitted(&mut r, &p, false, t0, 10), 5);
        assert_eq!(r.dropped(&p), 5);
        assert_eq!(
            admitted(&mut r, &p, false, t0 + Duration::from_secs(1), 10),
            2
        );
        let t = PeerId::random();
        assert_eq!(admitted(&mut r, &t, true, t0, 100), 50);
    }

    /// The defaults let an honest publisher burst 10,000 and keep 1,000/s without a drop.
    #[test]
    fn honest_rates_pass_untouched() {
        let mut r = RateLimiter::new(cfg(20_000.0, 2_000.0), cfg(1e5, 2e4), -100.0);
        let p = PeerId::random();
        let t0 = Instant::now();
        for i in 0..10_000 {
            assert_eq!(r.allow(&p, false, t0), Admit::Yes, "message {i}");
        }
        for s in 0..120u64 {
            for i in 0..1_000u64 {
                let at = t0 + Duration::from_millis(s * 1000 + i);
                assert_eq!(r.allow(&p, false, at), Admit::Yes);
            }
        }
        assert_eq!(r.score(&p, t0), 0.0);
    }

    /// Twice the rate for minutes is dropped but never banned; 100x is banned within seconds.
    #[test]
    fn only_sustained_abuse_is_banned() {
        let refill = 100.0;
        let mut r = RateLimiter::new(cfg(1_000.0, refill), cfg(1e4, 1e3), -100.0);
        let t0 = Instant::now();
        let twice = PeerId::random();
        let ms = |n: u64| t0 + Duration::from_micros(n);
        for i in 0..(200 * 300u64) {
            let verdict = r.allow(&twice, false, ms(i * 5_000));
            assert!(matches!(
                verdict,
                Admit::Yes | Admit::Dropped { ban: false }
            ));
        }
        let abuser = PeerId::random();
        let mut banned_at = None;
        for i in 0..(10_000 * 60u64) {
            if r.allow(&abuser, false, ms(i * 100)) == (Admit::Dropped { ban: true }) {
                banned_at = Some(i * 100 / 1_000_000);
                break;
            }
        }
        let secs = banned_at.expect("the abuser was never banned");
        assert!((5..=30).contains(&secs), "banned after {secs} s");
    }

    #[test]
    fn invalid_messages_cost_more_and_scores_recover() {
        let mut r = RateLimiter::new(cfg(1.0, 1.0), cfg(1.0, 1.0), -100.0);
        let p = PeerId::random();
        let t0 = Instant::now();
        for _ in 0..9 {
            assert!(!r.invalid(&p, t0));
        }
        assert!(r.invalid(&p, t0));
        assert!(r.score(&p, t0 + Duration::from_secs(30)) > -100.0 + 29.0);
        assert_eq!(r.score(&p, t0 + Duration::from_secs(1000)), 0.0);
    }

    /// 20,000 identities each touching the limiter: once idle and recovered, all state goes and
    /// the table gives its memory back.
    #[test]
    fn state_of_gone_peers_is_evicted() {
        let mut r = RateLimiter::new(cfg(100.0, 50.0), cfg(1e3, 5e2), -100.0);
        let t0 = Instant::now();
        let (_, baseline) = r.tracked();
        for _ in 0..20_000 {
            let p = PeerId::random();
            for _ in 0..150 {
                let _ = r.allow(&p, false, t0);
            }
        }
        assert_eq!(r.tracked().0, 20_000);
        r.evict(t0 + Duration::from_secs(1), |_| false);
        assert_eq!(r.tracked().0, 20_000, "penalised peers were evicted early");
        r.evict(t0 + Duration::from_secs(60), |_| false);
        let (len, cap) = r.tracked();
        assert_eq!(len, 0);
        assert!(cap <= baseline.max(64), "capacity {cap} after eviction");
    }
}
