//! Every state file the daemon reads at start-up, as a crash, a full disk or a careless edit
//! leaves it. The first byte picks the file; the rest is its content:
//! - 0: `bans.json`, then after a NUL its journal `bans.journal` (`BanList::load`);
//! - 1: `routing_table.json`; 2: `replay.json` (the anti-replay windows); 3: `identity.key`;
//! - 4: a stored block's metadata, then after a NUL its data (`BlockStore::stat`, reads that
//!   verify every chunk, `verify`, `expire`).
//!
//! Checked beyond "no panic": what loads, saved again, loads back the same (ban list, routing
//! table, replay windows, identity); a file that does not parse is moved aside (never left in
//! place to fail the next start, never deleted); block reads only ever return bytes that match.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p::PeerId;
use p2pd::blocks::{BlockStore, Hash};
use p2pd::node::routing_table;
use p2pd::policy::bans::{self, BanList};
use p2pd::replay::ReplayGuard;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("p2pd-fuzz-state.")
            .tempdir()
            .expect("a temporary directory")
            .keep()
    })
}

/// An empty directory for this input.
fn fresh() -> PathBuf {
    let d = dir().join("data");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("the data dir created");
    d
}

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    }
}

/// The file is still there (it parsed), or a `NAME.corrupt-*` copy of it is.
fn kept_or_quarantined(path: &Path) {
    if path.exists() {
        return;
    }
    let name = path
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let aside = std::fs::read_dir(path.parent().expect("a parent"))
        .expect("the data dir")
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}.corrupt-"))
        });
    assert!(aside, "{name} was neither kept nor moved aside");
}

fn ban_list(d: &Path, data: &[u8]) {
    let (list, journal) = split(data);
    let path = d.join(bans::FILE_NAME);
    std::fs::write(&path, list).expect("bans.json written");
    std::fs::write(bans::journal_path(&path), journal).expect("bans.journal written");
    let loaded = BanList::load(&path);
    if !list.is_empty() {
        kept_or_quarantined(&path);
    }
    let again = d.join("again.json");
    loaded.save(&again).expect("the ban list saved");
    assert_eq!(
        BanList::load(&again),
        loaded,
        "the saved ban list loads differently"
    );
}

fn routing(d: &Path, data: &[u8]) {
    let path = d.join(routing_table::FILE_NAME);
    std::fs::write(&path, data).expect("the routing table written");
    let snap = routing_table::load(&path);
    kept_or_quarantined(&path);
    // What the node keeps of it, saved as the node saves it, reads back the same.
    let peers = snap.peers();
    let again = d.join("again.json");
    routing_table::save(&again, &routing_table::Snapshot::new(peers.clone()))
        .expect("the routing table saved");
    assert_eq!(routing_table::load(&again).peers(), peers);
}

fn replay(d: &Path, data: &[u8]) {
    let path = d.join("replay.json");
    std::fs::write(&path, data).expect("replay.json written");
    let mut guard = ReplayGuard::<PeerId>::new(1024);
    let loaded = p2pd::persist::load_state(&path, "the replay windows", |b| guard.load_json(b));
    kept_or_quarantined(&path);
    if loaded.is_some() {
        let saved = guard.to_json();
        let mut back = ReplayGuard::<PeerId>::new(1024);
        back.load_json(&saved).expect("saved windows load");
        assert_eq!(
            back.to_json(),
            saved,
            "the saved replay windows load differently"
        );
    }
}

fn identity(d: &Path, data: &[u8]) {
    let path = d.join(p2pd::identity::FILE_NAME);
    std::fs::write(&path, data).expect("identity.key written");
    // An unreadable key is refused, not replaced: the node's PeerId depends on it.
    if let Ok(key) = p2pd::identity::load_or_create(&path) {
        let again = d.join("again.key");
        p2pd::identity::write_new(&again, &key).expect("the key written");
        let back = p2pd::identity::load_or_create(&again).expect("a written key loads");
        assert_eq!(back.public(), key.public());
    }
    assert!(path.exists(), "the identity key was removed");
}

fn block(d: &Path, data: &[u8]) {
    let (meta, bytes) = split(data);
    let store = BlockStore::open(d).expect("a block store");
    let hash: Hash = p2pd::blocks::sha256(bytes);
    let hex = p2pd::blocks::to_hex(&hash);
    let blocks = d.join("blocks");
    std::fs::write(blocks.join(format!("{hex}.json")), meta).expect("the metadata written");
    std::fs::write(blocks.join(&hex), bytes).expect("the data written");
    if let Some(m) = store.stat(&hash) {
        for i in 0..m.size.div_ceil(p2pd::blocks::CHUNK_SIZE as u64).min(4) as usize {
            if let Ok(chunk) = store.read_verified(&m, i) {
                // Against its BLAKE3 when the metadata lists them, else its SHA-256.
                let ok = match m.chunks_blake3.get(i) {
                    Some(b) => p2pd::blocks::parse_hash(b) == Some(p2pd::blocks::blake3(&chunk)),
                    None => m.chunk_hash(i) == Some(p2pd::blocks::sha256(&chunk)),
                };
                assert!(ok, "an unverified chunk was read");
            }
        }
        let _ = store.verify(&hash);
    }
    store.expire();
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let d = fresh();
    match which % 5 {
        0 => ban_list(&d, rest),
        1 => routing(&d, rest),
        2 => replay(&d, rest),
        3 => identity(&d, rest),
        _ => block(&d, rest),
    }
});
