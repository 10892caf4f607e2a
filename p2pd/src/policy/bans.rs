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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanList {
    #[serde(default)]
    pub bans: Vec<Ban>,
    /// Peers trusted at runtime (`p2pctl trust add`); configured ones come from the config.
    #[serde(default, with = "peer_set")]
    pub trusted: BTreeSet<PeerId>,
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

impl BanList {
    /// Adds or replaces the ban on `ban.target`.
    pub fn add(&mut self, ban: Ban) {
        self.bans.retain(|b| b.target != ban.target);
        self.bans.push(ban);
    }

    pub fn remove(&mut self, target: &BanTarget) -> Option<Ban> {
        let i = self.bans.iter().position(|b| b.target == *target)?;
        Some(self.bans.remove(i))
    }

    pub fn peer_ban(&self, peer: &PeerId, now: u64) -> Option<&Ban> {
        self.bans
            .iter()
            .find(|b| b.active(now) && b.target == BanTarget::Peer(*peer))
    }

    pub fn ip_ban(&self, ip: &IpAddr, now: u64) -> Option<&Ban> {
        self.bans
            .iter()
            .find(|b| b.active(now) && b.target.covers_ip(ip))
    }

    /// Drops expired bans and returns them.
    pub fn expire(&mut self, now: u64) -> Vec<Ban> {
        let (gone, kept) = std::mem::take(&mut self.bans)
            .into_iter()
            .partition(|b| !b.active(now));
        self.bans = kept;
        gone
    }

    /// Loads `bans.json`; a missing file is an empty list, a corrupt one is moved aside.
    pub fn load(path: &Path) -> BanList {
        crate::persist::load_state(path, "the ban list", |b| serde_json::from_slice(b))
            .unwrap_or_default()
    }

    /// Writes the list by atomic replace; returns the bytes written.
    pub fn save(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::persist::replace(path, &json, 0o600)?;
        Ok(json)
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
        assert_eq!(l.bans.len(), 2);
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
