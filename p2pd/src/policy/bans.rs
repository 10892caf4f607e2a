//! The ban list and the trusted peers, as persisted in `bans.json` (atomic replace on every
//! change). Bans name a peer, an IP or a CIDR; they are permanent or expire at a given time.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

pub const FILE_NAME: &str = "bans.json";

/// What a ban names; shared with clients through the control API's crate.
pub use p2pd_proto::target::BanTarget;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub target: BanTarget,
    pub reason: String,
    pub created_unix: u64,
    /// `None` = permanent.
    pub expires_unix: Option<u64>,
    /// "uid N" for an operator, "p2pd" for automatic bans.
    pub created_by: String,
}

impl Ban {
    pub fn active(&self, now: u64) -> bool {
        self.expires_unix.is_none_or(|e| e > now)
    }
}

/// The ban list and the runtime-trusted peers, indexed: by target, by network (to find the bans
/// covering an address) and by expiry, so a change or a lookup costs the same with 10 bans or
/// 100,000. On disk: `{"bans": [...], "trusted": [...]}`.
#[derive(Debug, Clone, Default)]
pub struct BanList {
    bans: std::collections::BTreeMap<BanTarget, Ban>,
    /// IP and CIDR targets (an IP as a /32 or /128), with how many targets name each network
    /// (`192.0.2.7` and `192.0.2.7/32` are two bans on one).
    nets: super::netindex::NetIndex<u8>,
    /// Timed bans by expiry.
    expiries: BTreeSet<(u64, BanTarget)>,
    /// Peers trusted at runtime (`p2pctl trust add`); configured ones come from the config.
    pub trusted: BTreeSet<PeerId>,
}

impl PartialEq for BanList {
    fn eq(&self, other: &Self) -> bool {
        self.bans == other.bans && self.trusted == other.trusted
    }
}

impl Eq for BanList {}

/// The file's form.
#[derive(Serialize, Deserialize)]
struct Stored<B> {
    #[serde(default)]
    bans: B,
    #[serde(default, with = "peer_set")]
    trusted: BTreeSet<PeerId>,
}

impl Serialize for BanList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Bans<'a>(&'a std::collections::BTreeMap<BanTarget, Ban>);
        impl Serialize for Bans<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.values())
            }
        }
        Stored {
            bans: Bans(&self.bans),
            trusted: self.trusted.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for BanList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Stored::<Vec<Ban>>::deserialize(d)?;
        let mut list = BanList {
            trusted: stored.trusted,
            ..Default::default()
        };
        for b in stored.bans {
            list.add(b);
        }
        Ok(list)
    }
}

/// Peer ids as strings on disk.
mod peer_set {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeSet;

    pub fn serialize<S: Serializer>(set: &BTreeSet<PeerId>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(set.iter().map(|p| p.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<PeerId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// The network an IP or CIDR ban covers.
pub fn net_of(target: &BanTarget) -> Option<ipnet::IpNet> {
    match target {
        BanTarget::Ip(ip) => Some((*ip).into()),
        BanTarget::Cidr(n) => Some(*n),
        BanTarget::Peer(_) => None,
    }
}

impl BanList {
    /// Adds or replaces the ban on `ban.target`.
    pub fn add(&mut self, ban: Ban) {
        self.remove(&ban.target);
        if let Some(net) = net_of(&ban.target) {
            match self.nets.get_mut(&net) {
                Some(n) => *n += 1,
                None => {
                    self.nets.insert(net, 1);
                }
            }
        }
        if let Some(e) = ban.expires_unix {
            self.expiries.insert((e, ban.target.clone()));
        }
        self.bans.insert(ban.target.clone(), ban);
    }

    pub fn remove(&mut self, target: &BanTarget) -> Option<Ban> {
        let ban = self.bans.remove(target)?;
        if let Some(net) = net_of(target) {
            if let Some(n) = self.nets.get_mut(&net) {
                *n -= 1;
                if *n == 0 {
                    self.nets.remove(&net);
                }
            }
        }
        if let Some(e) = ban.expires_unix {
            self.expiries.remove(&(e, target.clone()));
        }
        Some(ban)
    }

    /// The ban on exactly `target`, active or not yet swept.
    pub fn get(&self, target: &BanTarget) -> Option<&Ban> {
        self.bans.get(target)
    }

    /// Every ban, by target.
    pub fn iter(&self) -> impl Iterator<Item = &Ban> {
        self.bans.values()
    }

    pub fn len(&self) -> usize {
        self.bans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    pub fn peer_ban(&self, peer: &PeerId, now: u64) -> Option<&Ban> {
        self.get(&BanTarget::Peer(*peer)).filter(|b| b.active(now))
    }

    /// The most specific active ban covering `ip`.
    pub fn ip_ban(&self, ip: &IpAddr, now: u64) -> Option<&Ban> {
        self.nets.covering(*ip).find_map(|(net, _)| {
            let host = (net.prefix_len() == net.max_prefix_len())
                .then(|| self.get(&BanTarget::Ip(net.addr())))
                .flatten();
            [host, self.get(&BanTarget::Cidr(net))]
                .into_iter()
                .flatten()
                .find(|b| b.active(now))
        })
    }

    /// Drops expired bans and returns them.
    pub fn expire(&mut self, now: u64) -> Vec<Ban> {
        let due: Vec<BanTarget> = self
            .expiries
            .iter()
            .take_while(|(e, _)| *e <= now)
            .map(|(_, t)| t.clone())
            .collect();
        due.iter().filter_map(|t| self.remove(t)).collect()
    }

    /// Loads `bans.json` and replays the changes journalled after it (`bans.journal`); a
    /// missing file is an empty list, a corrupt one is moved aside; a journal line cut short by a
    /// crash (never acknowledged) ends the replay.
    pub fn load(path: &Path) -> BanList {
        let mut list: BanList =
            crate::persist::load_state(path, "the ban list", |b| serde_json::from_slice(b))
                .unwrap_or_default();
        let journal = journal_path(path);
        let Ok(text) = std::fs::read_to_string(&journal) else {
            return list;
        };
        let mut replayed = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Change>(line) {
                Ok(c) => {
                    c.apply(&mut list);
                    replayed += 1;
                }
                Err(e) => {
                    tracing::warn!(path = %journal.display(), error = %e, replayed, "the ban journal ends in a line cut short (a crash before it was acknowledged); the rest is ignored");
                    break;
                }
            }
        }
        if replayed > 0 {
            tracing::info!(changes = replayed, "replayed the ban journal");
        }
        list
    }

    /// Writes the list by atomic replace; returns the bytes written.
    pub fn save(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::persist::replace(path, &json, 0o600)?;
        Ok(json)
    }
}

/// The journal beside `bans.json`: changes made since it was last written, one JSON line each.
pub fn journal_path(bans: &Path) -> std::path::PathBuf {
    bans.with_extension("journal")
}

/// One change to the list, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Ban { ban: Ban },
    Unban { target: BanTarget },
    Trust { peer: String },
    Untrust { peer: String },
}

impl Change {
    /// Applies the change; applying it twice is the same as once (a journal replayed onto a
    /// list that already holds it changes nothing).
    pub fn apply(&self, list: &mut BanList) {
        match self {
            Change::Ban { ban } => list.add(ban.clone()),
            Change::Unban { target } => {
                list.remove(target);
            }
            Change::Trust { peer } => {
                if let Ok(p) = peer.parse() {
                    list.trusted.insert(p);
                }
            }
            Change::Untrust { peer } => {
                if let Ok(p) = peer.parse::<PeerId>() {
                    list.trusted.remove(&p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(t: &str, expires: Option<u64>) -> Ban {
        Ban {
            target: t.parse().unwrap(),
            reason: "test".into(),
            created_unix: 100,
            expires_unix: expires,
            created_by: "uid 0".into(),
        }
    }

    #[test]
    fn targets_match_and_expire() {
        let mut l = BanList::default();
        l.add(ban("10.0.0.0/8", None));
        l.add(ban("192.0.2.7", Some(200)));
        let peer = PeerId::random();
        l.add(ban(&peer.to_string(), None));
        assert!(l.ip_ban(&"10.1.2.3".parse().unwrap(), 150).is_some());
        assert!(l.ip_ban(&"192.0.2.7".parse().unwrap(), 150).is_some());
        assert!(l.ip_ban(&"192.0.2.7".parse().unwrap(), 250).is_none());
        assert!(l.peer_ban(&peer, 150).is_some());
        assert_eq!(l.expire(250).len(), 1);
        assert_eq!(l.len(), 2);
        // An address and the /32 of it are two bans on one network.
        l.add(ban("192.0.2.9", None));
        l.add(ban("192.0.2.9/32", None));
        l.remove(&"192.0.2.9".parse().unwrap());
        assert!(l.ip_ban(&"192.0.2.9".parse().unwrap(), 150).is_some());
        l.remove(&"192.0.2.9/32".parse().unwrap());
        assert!(l.ip_ban(&"192.0.2.9".parse().unwrap(), 150).is_none());
        assert!("nonsense".parse::<BanTarget>().is_err());
        assert_eq!(
            "10.1.2.3/8".parse::<BanTarget>().unwrap().to_string(),
            "10.0.0.0/8"
        );

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        l.trusted.insert(PeerId::random());
        l.save(&p).unwrap();
        assert_eq!(BanList::load(&p), l);
        std::fs::write(&p, b"{broken").unwrap();
        assert_eq!(BanList::load(&p), BanList::default());
    }
}
