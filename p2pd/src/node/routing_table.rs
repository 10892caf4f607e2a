//! The routing table on disk (`routing_table.json`): saved periodically and at shutdown, loaded
//! at start so a restarted node finds its network again without bootstrap peers.

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FILE_NAME: &str = "routing_table.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub saved_at_unix: u64,
    pub peers: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub peer_id: String,
    pub addrs: Vec<String>,
}

impl Snapshot {
    pub fn new(peers: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>) -> Self {
        Snapshot {
            version: 1,
            saved_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            peers: peers
                .into_iter()
                .map(|(p, a)| Entry {
                    peer_id: p.to_string(),
                    addrs: a.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
        }
    }

    /// Valid (peer, addresses) pairs; entries that do not parse are skipped.
    pub fn peers(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.peers
            .iter()
            .filter_map(|e| {
                let id = e.peer_id.parse().ok()?;
                let addrs: Vec<Multiaddr> = e.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                (!addrs.is_empty()).then_some((id, addrs))
            })
            .collect()
    }
}

/// Writes the snapshot by atomic replace.
pub fn save(path: &Path, snap: &Snapshot) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(snap).map_err(std::io::Error::other)?;
    crate::persist::replace(path, &json, 0o600)
}

/// Loads the snapshot; a missing file is an empty table, a corrupt one is moved aside.
pub fn load(path: &Path) -> Snapshot {
    crate::persist::load_state(path, "the routing table", |b| serde_json::from_slice(b))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        save(&p, &Snapshot::new([(peer, vec![addr.clone()])])).unwrap();
        assert_eq!(load(&p).peers(), vec![(peer, vec![addr])]);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(load(&p).peers().is_empty());
        assert!(!p.exists(), "corrupt file moved aside");
    }
}
