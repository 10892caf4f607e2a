//! The block store: `blocks/HASH` holds the data, `blocks/HASH.json` its metadata. Data is
//! written to a temp file, hashed as it streams in, fsynced and renamed into place only when the
//! hash is right; nothing unverified is ever visible under a hash name.

use super::streaming::{self, WriteBehind};
use super::{parse_hash, to_hex, Hash, CHUNK_SIZE, MAX_BLOCK_SIZE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub hash: String,
    pub size: u64,
    pub chunk_size: u32,
    /// Hex SHA-256 of each chunk (what peers without BLAKE3 check chunks against). For a block
    /// fetched from a provider that listed BLAKE3 hashes these are that provider's claim, never
    /// used to check anything here: `chunks_blake3` are.
    pub chunks: Vec<String>,
    /// Hex BLAKE3 of each chunk, each checked against the chunk's bytes before it was stored;
    /// when present, chunks are checked against these (a quarter of SHA-256's cost here).
    /// Empty in metadata written before them and for blocks fetched from peers that do not list
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks_blake3: Vec<String>,
    pub created_unix: u64,
    /// 0 = never expires.
    pub ttl_secs: u64,
}

impl Meta {
    pub fn expires_unix(&self) -> u64 {
        if self.ttl_secs == 0 {
            0
        } else {
            self.created_unix.saturating_add(self.ttl_secs)
        }
    }

    fn expired(&self, now: u64) -> bool {
        self.ttl_secs != 0 && self.expires_unix() <= now
    }

    pub fn chunk_hashes(&self) -> Vec<Hash> {
        self.chunks.iter().filter_map(|c| parse_hash(c)).collect()
    }

    /// The hash of chunk `index` alone (serving one chunk parses one hash, not all of them).
    pub fn chunk_hash(&self, index: usize) -> Option<Hash> {
        self.chunks.get(index).and_then(|c| parse_hash(c))
    }

    /// The BLAKE3 hash of chunk `index` alone, when the metadata lists them.
    pub fn chunk_blake3(&self, index: usize) -> Option<Hash> {
        self.chunks_blake3.get(index).and_then(|c| parse_hash(c))
    }

    pub fn chunk_blake3s(&self) -> Vec<Hash> {
        self.chunks_blake3
            .iter()
            .filter_map(|c| parse_hash(c))
            .collect()
    }

    /// Whether `data` is chunk `index`: against its BLAKE3 when the metadata lists them, else
    /// against its SHA-256.
    pub fn chunk_matches(&self, index: usize, data: &[u8]) -> bool {
        if self.chunks_blake3.is_empty() {
            self.chunk_hash(index) == Some(super::sha256(data))
        } else {
            self.chunks_blake3.get(index).and_then(|c| parse_hash(c)) == Some(super::blake3(data))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("block store i/o error: {0} (disk full or read-only?)")]
    Io(#[from] std::io::Error),
    #[error("content hash mismatch: expected {expected}, got {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("the block is larger than {MAX_BLOCK_SIZE} bytes")]
    TooLarge,
    #[error("chunks out of shape: {0}")]
    Shape(&'static str),
    #[error("block {hash} is corrupt on this node ({why}); it was moved aside to {aside}")]
    Corrupt {
        hash: String,
        why: String,
        aside: String,
    },
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Blocks this process has seen whole and intact (see [`BlockStore::trusted`]), at most this many
/// (each at least a chunk long): 64 Ki hashes, ~4 MiB, for at least 64 GiB of blocks.
const TRUSTED_MAX: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct BlockStore {
    dir: PathBuf,
    /// Blocks of at least a chunk whose every byte this process has checked against the hash
    /// (written through a [`BlockWriter`] or read whole by [`BlockStore::verify`]): their chunks
    /// are served to peers without hashing them again ([`BlockStore::serve_chunk`]), like Kubo's
    /// default (no hash on read), but only for what this process checked itself; a restart
    /// forgets it. Peers check every chunk and the whole block whatever a provider sends, and
    /// fail over to another provider. Local reads (`block get` of a stored block) are always
    /// checked: a local client never gets rotten bytes.
    trusted: Arc<Mutex<HashSet<Hash>>>,
    /// Blocks moved aside because what is stored does not match its hash
    /// (`p2p_blocks_quarantined_total`).
    pub quarantined: prometheus_client::metrics::counter::Counter,
}

impl BlockStore {
    /// Opens (creating) `data_dir/blocks` and removes uploads left by a crash.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("blocks");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        for entry in fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".upload-") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(BlockStore {
            dir,
            trusted: Default::default(),
            quarantined: Default::default(),
        })
    }

    fn data_path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(to_hex(hash))
    }

    fn meta_path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(format!("{}.json", to_hex(hash)))
    }

    /// Metadata of a stored, unexpired block. Metadata that does not parse, or that does not
    /// agree with the data file (size, number of chunks), puts the block in quarantine.
    pub fn stat(&self, hash: &Hash) -> Option<Meta> {
        let bytes = fs::read(self.meta_path(hash)).ok()?;
        let data_len = fs::metadata(self.data_path(hash)).ok().map(|m| m.len());
        let meta: Meta = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.quarantine(hash, &format!("unreadable metadata: {e}"));
                return None;
            }
        };
        let chunks = meta.size.div_ceil(CHUNK_SIZE as u64).max(1);
        let why = if data_len.is_some_and(|l| l != meta.size) {
            Some(format!(
                "metadata says {} bytes, the data file has {:?}",
                meta.size, data_len
            ))
        } else if meta.chunks.len() as u64 != chunks
            || meta.chunk_hashes().len() != meta.chunks.len()
            || !(meta.chunks_blake3.is_empty()
                || meta.chunk_blake3s().len() as u64 == chunks
                    && meta.chunks_blake3.len() as u64 == chunks)
        {
            Some(format!(
                "metadata lists {} chunk hashes for {} bytes",
                meta.chunks.len(),
                meta.size
            ))
        } else {
            None
        };
        if let Some(why) = why {
            self.quarantine(hash, &why);
            return None;
        }
        (!meta.expired(now_unix()) && data_len.is_some()).then_some(meta)
    }

    /// Reads chunk `index` of a stored block, letting go of a large block's cached pages behind.
    pub fn read_chunk(&self, hash: &Hash, index: usize) -> std::io::Result<bytes::Bytes> {
        self.read_chunk_as(hash, index, false)
    }

    /// [`BlockStore::read_chunk`]; `direct`: a large block's chunk is read past the page cache
    /// (see [`streaming::read_direct`]), for chunks served to peers.
    fn read_chunk_as(
        &self,
        hash: &Hash,
        index: usize,
        direct: bool,
    ) -> std::io::Result<bytes::Bytes> {
        let path = self.data_path(hash);
        let mut f = File::open(&path)?;
        let len = f.metadata()?.len();
        let start = (index as u64).saturating_mul(CHUNK_SIZE as u64);
        if start >= len && !(len == 0 && index == 0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such chunk",
            ));
        }
        let large = len >= streaming::DROP_BEHIND_MIN;
        if direct && large {
            let want = CHUNK_SIZE.min((len - start) as usize);
            match streaming::read_direct(&path, start, want)? {
                Some(data) if data.len() == want => return Ok(data),
                // Not taken, or the file changed under the read: through the cache.
                _ => {}
            }
        }
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity(CHUNK_SIZE.min((len - start) as usize));
        (&mut f).take(CHUNK_SIZE as u64).read_to_end(&mut buf)?;
        if large {
            streaming::drop_cached(&f, start, buf.len() as u64);
        }
        Ok(buf.into())
    }

    /// Whether this process has checked every byte of block `hash` (see the `trusted` field).
    pub fn trusted(&self, hash: &Hash) -> bool {
        self.trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(hash)
    }

    fn trust(&self, hash: &Hash, size: u64) {
        if size < CHUNK_SIZE as u64 {
            return;
        }
        let mut set = self.trusted.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() < TRUSTED_MAX {
            set.insert(*hash);
        }
    }

    /// Chunk `index` for a peer: a trusted block's as it is on disk, any other checked
    /// ([`BlockStore::read_verified`]).
    pub fn serve_chunk(&self, meta: &Meta, index: usize) -> Result<bytes::Bytes, StoreError> {
        match parse_hash(&meta.hash) {
            Some(h) if self.trusted(&h) => self.read_chunk_as(&h, index, true).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    self.quarantine(&h, &format!("chunk {index} is missing: {e}"))
                } else {
                    e.into()
                }
            }),
            _ => self.read_verified_as(meta, index, true),
        }
    }

    /// A block that is gone (expired, moved aside) leaves the set.
    fn untrust(&self, hash: &Hash) {
        self.trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
    }

    /// Reads chunk `index` and checks it against the block's manifest: a block whose bytes do not
    /// match is moved aside and never served.
    pub fn read_verified(&self, meta: &Meta, index: usize) -> Result<bytes::Bytes, StoreError> {
        self.read_verified_as(meta, index, false)
    }

    fn read_verified_as(
        &self,
        meta: &Meta,
        index: usize,
        direct: bool,
    ) -> Result<bytes::Bytes, StoreError> {
        let hash = parse_hash(&meta.hash).ok_or_else(|| StoreError::Corrupt {
            hash: meta.hash.clone(),
            why: "malformed hash in the metadata".into(),
            aside: String::new(),
        })?;
        let data = match self.read_chunk_as(&hash, index, direct) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.quarantine(&hash, &format!("chunk {index} is missing: {e}")))
            }
            Err(e) => return Err(e.into()),
        };
        if !meta.chunk_matches(index, &data) {
            return Err(self.quarantine(&hash, &format!("chunk {index} does not match its hash")));
        }
        Ok(data)
    }

    /// Reads a stored block whole, against its manifest and its hash. `Ok(false)`: not stored.
    pub fn verify(&self, hash: &Hash) -> Result<bool, StoreError> {
        let had_meta = self.meta_path(hash).exists();
        let Some(meta) = self.stat(hash) else {
            // stat quarantines what does not add up; an expired block is simply not stored.
            return match had_meta && !self.meta_path(hash).exists() {
                true => Err(StoreError::Corrupt {
                    hash: to_hex(hash),
                    why: "metadata and data disagree".into(),
                    aside: self.dir.join("quarantine").display().to_string(),
                }),
                false => Ok(false),
            };
        };
        let mut whole = Sha256::new();
        for i in 0..meta.chunks.len() {
            whole.update(self.read_verified(&meta, i)?);
        }
        let got: Hash = whole.finalize().into();
        if got != *hash {
            return Err(self.quarantine(hash, "the chunks do not add up to the block's hash"));
        }
        self.trust(hash, meta.size);
        Ok(true)
    }

    /// The hashes of every stored block (by their metadata files).
    pub fn hashes(&self) -> Vec<Hash> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").and_then(parse_hash)
            })
            .collect()
    }

    /// Moves a corrupt block aside (`blocks/quarantine/HASH-UNIXTIME`, data and metadata), logs
    /// it loudly and counts it; returns the error to give the reader.
    pub fn quarantine(&self, hash: &Hash, why: &str) -> StoreError {
        self.untrust(hash);
        let hex = to_hex(hash);
        let dir = self.dir.join("quarantine");
        let aside = dir.join(format!("{hex}-{}", now_unix()));
        let moved = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| {
                let _ = fs::rename(self.meta_path(hash), aside.with_extension("json"));
                fs::rename(self.data_path(hash), &aside)
            });
        match &moved {
            Ok(()) => {
                tracing::error!(event = "block_quarantined", hash = %hex, why, moved_to = %aside.display(), "a stored block does not match its hash; moved it aside")
            }
            Err(e) => {
                tracing::error!(event = "block_quarantined", hash = %hex, why, error = %e, "a stored block does not match its hash and could not be moved aside")
            }
        }
        self.quarantined.inc();
        StoreError::Corrupt {
            hash: hex,
            why: why.into(),
            aside: aside.display().to_string(),
        }
    }

    /// A writer for a new block.
    pub fn writer(&self, ttl_secs: u64) -> std::io::Result<BlockWriter> {
        let tmp = self.dir.join(format!(
            ".upload-{}-{:016x}",
            std::process::id(),
            rand_u64()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        Ok(BlockWriter {
            store: self.clone(),
            tmp,
            file: Some(file),
            behind: WriteBehind::default(),
            whole: Sha256::new(),
            chunk: Sha256::new(),
            chunk_blake3: blake3::Hasher::new(),
            chunk_fill: 0,
            chunks: Vec::new(),
            chunks_blake3: Some(Vec::new()),
            ended: false,
            size: 0,
            ttl_secs,
        })
    }

    /// Removes expired blocks; returns how many.
    pub fn expire(&self) -> usize {
        let now = now_unix();
        let mut removed = 0;
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hash) = name.strip_suffix(".json").and_then(parse_hash) else {
                continue;
            };
            let expired = fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
                .is_some_and(|m| m.expired(now));
            if expired {
                self.untrust(&hash);
                let _ = fs::remove_file(self.meta_path(&hash));
                let _ = fs::remove_file(self.data_path(&hash));
                removed += 1;
            }
        }
        removed
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Streams a block into the store. Dropped without `finish`, it leaves nothing behind.
pub struct BlockWriter {
    store: BlockStore,
    tmp: PathBuf,
    file: Option<File>,
    /// The file's data goes to disk as it is written (see [`streaming`]).
    behind: WriteBehind,
    whole: Sha256,
    chunk: Sha256,
    chunk_blake3: blake3::Hasher,
    chunk_fill: usize,
    chunks: Vec<String>,
    /// `None` once a chunk came without its BLAKE3 (fetched from a peer that does not list
    /// them): the block is then stored with SHA-256 chunk hashes only.
    chunks_blake3: Option<Vec<String>>,
    /// A short chunk was written with `write_chunk`: the block ends there.
    ended: bool,
    size: u64,
    ttl_secs: u64,
}

impl BlockWriter {
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        if self.ended && !data.is_empty() {
            return Err(StoreError::Shape("data after the block's short last chunk"));
        }
        self.append(data)?;
        while !data.is_empty() {
            let take = (CHUNK_SIZE - self.chunk_fill).min(data.len());
            self.chunk.update(&data[..take]);
            self.chunk_blake3.update(&data[..take]);
            self.chunk_fill += take;
            data = &data[take..];
            if self.chunk_fill == CHUNK_SIZE {
                self.close_chunk();
            }
        }
        Ok(())
    }

    /// Appends one fetched chunk, verified against its manifest just now, with the hashes the
    /// manifest lists for it instead of computing them again: `blake3` when the chunk was
    /// checked against it (the SHA-256 is then the provider's claim, kept only to list to peers
    /// that check SHA-256), else `hash` is the SHA-256 it was checked against. Only the last
    /// chunk of a block may be shorter than [`CHUNK_SIZE`]; nothing may follow it.
    pub fn write_chunk(
        &mut self,
        data: &[u8],
        hash: &Hash,
        blake3: Option<&Hash>,
    ) -> Result<(), StoreError> {
        if self.chunk_fill != 0 || self.ended || data.len() > CHUNK_SIZE {
            return Err(StoreError::Shape(
                "a chunk must start at a chunk boundary and follow no short chunk",
            ));
        }
        self.append(data)?;
        self.chunks.push(to_hex(hash));
        match (blake3, self.chunks_blake3.as_mut()) {
            (Some(b), Some(list)) => list.push(to_hex(b)),
            _ => self.chunks_blake3 = None,
        }
        self.ended = data.len() < CHUNK_SIZE;
        Ok(())
    }

    /// Adds `data` to the file and to the whole block's hash, within the size limit.
    fn append(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.size += data.len() as u64;
        if self.size > MAX_BLOCK_SIZE {
            return Err(StoreError::TooLarge);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(data)?;
            self.behind.wrote(f, self.size)?;
        }
        self.whole.update(data);
        Ok(())
    }

    fn close_chunk(&mut self) {
        let h = std::mem::take(&mut self.chunk).finalize();
        self.chunks.push(to_hex(&h));
        let b = std::mem::take(&mut self.chunk_blake3).finalize();
        if let Some(list) = self.chunks_blake3.as_mut() {
            list.push(b.to_hex().to_string());
        }
        self.chunk_fill = 0;
    }

    /// Verifies against `expect` (when given), then makes the block visible under its hash.
    pub fn finish(mut self, expect: Option<&Hash>) -> Result<Meta, StoreError> {
        if self.chunk_fill > 0 || self.chunks.is_empty() {
            self.close_chunk();
        }
        let hash: Hash = std::mem::take(&mut self.whole).finalize().into();
        if let Some(e) = expect {
            if *e != hash {
                return Err(StoreError::HashMismatch {
                    expected: to_hex(e),
                    actual: to_hex(&hash),
                });
            }
        }
        if let Some(f) = self.file.take() {
            f.sync_all()?;
            self.behind.synced(&f);
        }
        let meta = Meta {
            hash: to_hex(&hash),
            size: self.size,
            chunk_size: CHUNK_SIZE as u32,
            chunks: std::mem::take(&mut self.chunks),
            chunks_blake3: self.chunks_blake3.take().unwrap_or_default(),
            created_unix: now_unix(),
            ttl_secs: self.ttl_secs,
        };
        fs::rename(&self.tmp, self.store.data_path(&hash))?;
        let json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
        crate::persist::replace(&self.store.meta_path(&hash), &json, 0o600)?;
        // Every byte went through the hash on its way in.
        self.store.trust(&hash, meta.size);
        Ok(meta)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_with_known_hashes_make_the_same_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(CHUNK_SIZE + 7)).map(|i| (i % 13) as u8).collect();
        let hash = super::super::sha256(&data);
        let mut w = store.writer(0).unwrap();
        for part in data.chunks(CHUNK_SIZE) {
            w.write_chunk(part, &super::super::sha256(part), None)
                .unwrap();
        }
        // Nothing may follow the short last chunk.
        assert!(matches!(w.write(b"x"), Err(StoreError::Shape(_))));
        assert!(matches!(
            w.write_chunk(b"x", &[0; 32], None),
            Err(StoreError::Shape(_))
        ));
        let meta = w.finish(Some(&hash)).unwrap();
        assert_eq!(meta.chunks.len(), 2);
        assert!(
            meta.chunks_blake3.is_empty(),
            "no BLAKE3 came with the chunks"
        );
        assert!(store.verify(&hash).unwrap());
        // The whole is still hashed: chunks that do not add up to the block are refused.
        let mut w = store.writer(0).unwrap();
        w.write_chunk(&data[..CHUNK_SIZE], &[7; 32], None).unwrap();
        assert!(matches!(
            w.finish(Some(&hash)),
            Err(StoreError::HashMismatch { .. })
        ));
    }

    #[test]
    fn chunks_checked_with_blake3_are_read_back_with_blake3_and_a_claimed_sha256_is_never_trusted()
    {
        use super::super::{blake3, sha256};
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(CHUNK_SIZE + 99)).map(|i| (i % 17) as u8).collect();
        let hash = sha256(&data);
        // A provider listed the right BLAKE3 hashes and forged SHA-256 ones: the chunks were
        // checked with BLAKE3, the whole with SHA-256, and the block is good.
        let mut w = store.writer(0).unwrap();
        for part in data.chunks(CHUNK_SIZE) {
            w.write_chunk(part, &[9; 32], Some(&blake3(part))).unwrap();
        }
        let meta = w.finish(Some(&hash)).unwrap();
        assert_eq!(meta.chunk_blake3s().len(), 2);
        // Local reads check BLAKE3, so the forged SHA-256 list quarantines nothing.
        let reopened = BlockStore::open(dir.path()).unwrap();
        let meta = reopened.stat(&hash).expect("the metadata round-trips");
        assert_eq!(
            reopened.read_verified(&meta, 1).unwrap(),
            data[CHUNK_SIZE..]
        );
        assert!(reopened.verify(&hash).unwrap());
        // Rot is still found, by BLAKE3.
        let mut bytes = fs::read(reopened.data_path(&hash)).unwrap();
        bytes[5] ^= 1;
        fs::write(reopened.data_path(&hash), &bytes).unwrap();
        assert!(matches!(
            reopened.read_verified(&meta, 0),
            Err(StoreError::Corrupt { .. })
        ));

        // Written whole: both lists computed here; metadata from before BLAKE3 (no such field)
        // is read and checked with SHA-256.
        let mut w = store.writer(0).unwrap();
        w.write(&data).unwrap();
        let meta = w.finish(Some(&hash)).unwrap();
        assert_eq!(
            meta.chunk_blake3s(),
            vec![blake3(&data[..CHUNK_SIZE]), blake3(&data[CHUNK_SIZE..])]
        );
        let mut old = serde_json::to_value(&meta).unwrap();
        old.as_object_mut().unwrap().remove("chunks_blake3");
        fs::write(store.meta_path(&hash), serde_json::to_vec(&old).unwrap()).unwrap();
        let meta = store.stat(&hash).expect("old metadata is read");
        assert!(meta.chunks_blake3.is_empty());
        assert!(meta.chunk_matches(1, &data[CHUNK_SIZE..]));
        assert!(!meta.chunk_matches(0, &data[CHUNK_SIZE..]));
        assert!(store.verify(&hash).unwrap());
        // A BLAKE3 list of the wrong length is metadata that does not add up.
        let mut short = serde_json::to_value(&meta).unwrap();
        short["chunks_blake3"] = serde_json::json!([to_hex(&blake3(&data))]);
        fs::write(store.meta_path(&hash), serde_json::to_vec(&short).unwrap()).unwrap();
        assert_eq!(store.stat(&hash), None);
        assert!(!store.data_path(&hash).exists(), "moved aside");
    }

    #[test]
    fn blocks_checked_whole_are_served_without_hashing_and_local_reads_still_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(CHUNK_SIZE * 2)).map(|i| (i % 241) as u8).collect();
        let hash = super::super::sha256(&data);
        let mut w = store.writer(0).unwrap();
        w.write(&data).unwrap();
        let meta = w.finish(Some(&hash)).unwrap();
        assert!(store.trusted(&hash), "written whole through the hash");
        // Rot on disk while the process runs: peers get the bytes as they are (and check them);
        // a local read checks and moves the block aside, which ends the trust.
        let mut bytes = fs::read(store.data_path(&hash)).unwrap();
        bytes[CHUNK_SIZE + 1] ^= 0xff;
        fs::write(store.data_path(&hash), &bytes).unwrap();
        assert_eq!(store.serve_chunk(&meta, 1).unwrap(), bytes[CHUNK_SIZE..]);
        assert!(matches!(
            store.read_verified(&meta, 1),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(!store.trusted(&hash));
        // A fresh process (another store on the same directory) trusts nothing until it has
        // checked the block whole; a block smaller than a chunk is never kept in the set.
        let small = b"small block".to_vec();
        let small_hash = super::super::sha256(&small);
        let mut w = store.writer(0).unwrap();
        w.write(&small).unwrap();
        w.finish(Some(&small_hash)).unwrap();
        assert!(!store.trusted(&small_hash));
        let mut w = store.writer(0).unwrap();
        w.write(&data).unwrap();
        w.finish(Some(&hash)).unwrap();
        let reopened = BlockStore::open(dir.path()).unwrap();
        assert!(!reopened.trusted(&hash));
        assert!(reopened.verify(&hash).unwrap());
        assert!(reopened.trusted(&hash));
        // An expired block leaves the set with its files.
        let mut aged = reopened.stat(&hash).unwrap();
        aged.ttl_secs = 1;
        aged.created_unix -= 10;
        fs::write(
            reopened.meta_path(&hash),
            serde_json::to_vec(&aged).unwrap(),
        )
        .unwrap();
        assert!(reopened.expire() >= 1);
        assert!(!reopened.trusted(&hash));
    }

    #[test]
    fn a_large_block_is_served_whole_and_checked_past_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let len = streaming::DROP_BEHIND_MIN as usize + 4099;
        let data: Vec<u8> = (0..len).map(|i| (i % 239) as u8).collect();
        let hash = super::super::sha256(&data);
        let mut w = store.writer(0).unwrap();
        w.write(&data).unwrap();
        let meta = w.finish(Some(&hash)).unwrap();
        let last = meta.chunks.len() - 1;
        // Trusted (checked whole as written), then a fresh process's store, which checks.
        for store in [store.clone(), BlockStore::open(dir.path()).unwrap()] {
            for i in [0, 1, last] {
                let want = &data[i * CHUNK_SIZE..len.min((i + 1) * CHUNK_SIZE)];
                assert!(store.serve_chunk(&meta, i).unwrap() == want, "chunk {i}");
            }
        }
        // Rot in the short last chunk is caught by the checked read.
        let mut bytes = fs::read(store.data_path(&hash)).unwrap();
        bytes[len - 2] ^= 0xff;
        fs::write(store.data_path(&hash), &bytes).unwrap();
        let fresh = BlockStore::open(dir.path()).unwrap();
        assert!(matches!(
            fresh.serve_chunk(&meta, last),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn write_verify_read_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(CHUNK_SIZE * 2 + 10))
            .map(|i| (i % 251) as u8)
            .collect();
        let hash = super::super::sha256(&data);
        let mut w = store.writer(0).unwrap();
        for part in data.chunks(70_000) {
            w.write(part).unwrap();
        }
        let meta = w.finish(Some(&hash)).unwrap();
        assert_eq!(meta.chunks.len(), 3);
        assert_eq!(store.stat(&hash), Some(meta.clone()));
        assert_eq!(store.read_chunk(&hash, 2).unwrap(), data[2 * CHUNK_SIZE..]);
        assert_eq!(
            meta.chunk_hashes()[1],
            super::super::sha256(&data[CHUNK_SIZE..2 * CHUNK_SIZE])
        );

        let mut bad = store.writer(0).unwrap();
        bad.write(b"not it").unwrap();
        assert!(matches!(
            bad.finish(Some(&hash)),
            Err(StoreError::HashMismatch { .. })
        ));
        let names: Vec<_> = fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "only the good block and its metadata: {names:?}"
        );

        let mut short = store.writer(1).unwrap();
        short.write(b"brief").unwrap();
        let m = short.finish(None).unwrap();
        let h = parse_hash(&m.hash).unwrap();
        let mut meta_aged = m.clone();
        meta_aged.created_unix -= 10;
        fs::write(store.meta_path(&h), serde_json::to_vec(&meta_aged).unwrap()).unwrap();
        assert_eq!(store.stat(&h), None);
        assert_eq!(store.expire(), 1);
        assert!(!store.data_path(&h).exists());
    }
}
