//! Anti-replay for signed messages: per sender, each sequence number is accepted once, inside a
//! sliding window (as IPsec does), so legitimate reordering in a mesh is tolerated while anything
//! older than the window, or already seen, is refused.

use std::collections::HashMap;
use std::hash::Hash;

/// Width of the window in sequence numbers.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    /// Seen before.
    Replay,
    /// Older than the window: cannot be told apart from a replay.
    TooOld,
}

/// The window of one sender: the highest sequence number seen and a bitmap of the `WINDOW`
/// numbers at and below it (bit i = top - i).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    top: u64,
    started: bool,
    seen: [u64; WORDS],
}

impl Window {
    fn bit(&self, i: u64) -> bool {
        self.seen[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u64) {
        self.seen[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// Shifts the bitmap by `n` positions (the top moved up by `n`).
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let (words, bits) = ((n / 64) as usize, (n % 64) as u32);
        for w in (0..WORDS).rev() {
            let src = w.checked_sub(words);
            let hi = src.map(|s| self.seen[s]).unwrap_or(0);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map(|s| self.seen[s])
                .unwrap_or(0);
            self.seen[w] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }

    /// Checks `seq` and records it when fresh.
    pub fn check(&mut self, seq: u64) -> Verdict {
        if !self.started || seq > self.top {
            let n = if self.started { seq - self.top } else { WINDOW };
            self.shift(n);
            self.top = seq;
            self.started = true;
            self.set(0);
            return Verdict::Fresh;
        }
        let back = self.top - seq;
        if back >= WINDOW {
            return Verdict::TooOld;
        }
        if self.bit(back) {
            return Verdict::Replay;
        }
        self.set(back);
        Verdict::Fresh
    }
}

/// Windows for many senders, bounded: past `max_senders` the least recently active are dropped.
#[derive(Debug)]
pub struct ReplayGuard<K> {
    windows: HashMap<K, (Window, u64)>,
    max_senders: usize,
    clock: u64,
}

/// One sender's window on disk.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedWindow {
    sender: String,
    window: Window,
}

impl<K: Hash + Eq + Clone + std::fmt::Display + std::str::FromStr> ReplayGuard<K> {
    /// The windows as JSON, most recently active last (so a reload keeps the same order).
    pub fn to_json(&self) -> Vec<u8> {
        let mut entries: Vec<(&K, &(Window, u64))> = self.windows.iter().collect();
        entries.sort_by_key(|(_, (_, used))| *used);
        let saved: Vec<SavedWindow> = entries
            .into_iter()
            .map(|(k, (w, _))| SavedWindow {
                sender: k.to_string(),
                window: w.clone(),
            })
            .collect();
        serde_json::to_vec(&saved).unwrap_or_default()
    }

    /// Restores windows saved by [`ReplayGuard::to_json`]; unreadable entries are skipped.
    pub fn load_json(&mut self, bytes: &[u8]) -> Result<usize, serde_json::Error> {
        let saved: Vec<SavedWindow> = serde_json::from_slice(bytes)?;
        let mut n = 0;
        for s in saved {
            if let Ok(k) = s.sender.parse::<K>() {
                self.clock += 1;
                self.windows.insert(k, (s.window, self.clock));
                n += 1;
            }
        }
        Ok(n)
    }
}

impl<K: Hash + Eq + Clone> ReplayGuard<K> {
    pub fn new(max_senders: usize) -> Self {
        ReplayGuard {
            windows: HashMap::new(),
            max_senders: max_senders.max(1),
            clock: 0,
        }
    }

    /// Drops the least recently active sixteenth of the senders (at least one) in one pass, so
    /// a flood of new senders at the bound costs a pass per `max_senders / 16` of them, not a
    /// scan of every window for each.
    fn evict(&mut self) {
        let drop = (self.max_senders / 16).max(1);
        let mut used: Vec<u64> = self.windows.values().map(|(_, u)| *u).collect();
        if used.len() <= drop {
            self.windows.clear();
            return;
        }
        let (_, cutoff, _) = used.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        self.windows.retain(|_, (_, u)| *u > cutoff);
    }

    pub fn check(&mut self, sender: &K, seq: u64) -> Verdict {
        self.clock += 1;
        if !self.windows.contains_key(sender) && self.windows.len() >= self.max_senders {
            self.evict();
        }
        let clock = self.clock;
        let entry = self
            .windows
            .entry(sender.clone())
            .or_insert_with(|| (Window::default(), clock));
        entry.1 = clock;
        entry.0.check(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_once_and_tolerates_reordering() {
        let mut w = Window::default();
        assert_eq!(w.check(100), Verdict::Fresh);
        assert_eq!(w.check(100), Verdict::Replay);
        assert_eq!(w.check(98), Verdict::Fresh);
        assert_eq!(w.check(99), Verdict::Fresh);
        assert_eq!(w.check(98), Verdict::Replay);
        assert_eq!(w.check(200), Verdict::Fresh);
        assert_eq!(w.check(99), Verdict::Replay);
        assert_eq!(w.check(150), Verdict::Fresh);
        assert_eq!(w.check(200 + WINDOW), Verdict::Fresh);
        assert_eq!(w.check(200), Verdict::TooOld);
        assert_eq!(w.check(201), Verdict::Fresh);
        assert_eq!(w.check(201), Verdict::Replay);
    }

    #[test]
    fn shifts_across_word_boundaries() {
        let mut w = Window::default();
        for s in (1000..1000 + WINDOW).step_by(3) {
            assert_eq!(w.check(s), Verdict::Fresh);
        }
        let top = (1000..1000 + WINDOW).step_by(3).last().unwrap();
        for s in (1000..1000 + WINDOW).step_by(3) {
            let back = top - s;
            let want = if back < WINDOW {
                Verdict::Replay
            } else {
                Verdict::TooOld
            };
            assert_eq!(w.check(s), want, "seq {s}");
        }
    }

    #[test]
    fn windows_survive_a_round_trip() {
        let mut g: ReplayGuard<String> = ReplayGuard::new(10);
        assert_eq!(g.check(&"a".to_string(), 7), Verdict::Fresh);
        let mut h: ReplayGuard<String> = ReplayGuard::new(10);
        assert_eq!(h.load_json(&g.to_json()).unwrap(), 1);
        assert_eq!(h.check(&"a".to_string(), 7), Verdict::Replay);
        assert_eq!(h.check(&"a".to_string(), 8), Verdict::Fresh);
    }

    #[test]
    fn guard_is_bounded() {
        let mut g = ReplayGuard::new(2);
        assert_eq!(g.check(&"a", 1), Verdict::Fresh);
        assert_eq!(g.check(&"b", 1), Verdict::Fresh);
        assert_eq!(g.check(&"a", 1), Verdict::Replay);
        assert_eq!(g.check(&"c", 1), Verdict::Fresh);
        assert_eq!(g.windows.len(), 2);
        assert_eq!(
            g.check(&"a", 1),
            Verdict::Replay,
            "a was used more recently than b"
        );
    }

    #[test]
    fn a_flood_of_new_senders_evicts_the_least_recently_active_in_batches() {
        let mut g = ReplayGuard::new(1600);
        for i in 0..1600u32 {
            g.check(&i, 1);
        }
        // Sender 0 stays active; the flood pushes out the others, oldest first.
        for i in 1600..3200u32 {
            assert_eq!(g.check(&0, u64::from(i)), Verdict::Fresh);
            g.check(&i, 1);
            assert!(g.windows.len() <= 1600);
        }
        assert_eq!(
            g.check(&0, 3199),
            Verdict::Replay,
            "the active sender kept its window"
        );
        assert!(!g.windows.contains_key(&1), "the oldest went first");
        assert!(g.windows.contains_key(&3199));
        assert!(
            g.windows.len() >= 1600 - 100,
            "a sixteenth at a time: {}",
            g.windows.len()
        );
    }
}
