//! Fetching a block: find providers through the DHT, take the manifest from one, pull its
//! chunks one by one verifying each against the manifest as it arrives, verify the whole against
//! the requested hash, and only then store it. A provider that serves anything wrong is dropped
//! and the next one is tried; nothing unverified is ever stored.

use super::codec;
use super::store::{BlockStore, Meta};
use super::{sha256, to_hex, Hash, CHUNK_SIZE, MAX_BLOCK_SIZE};
use crate::node::Code;
use crate::node::{ApiError, DhtAnswer, DhtQuery, NodeHandle};
use libp2p::identity::PublicKey;
use libp2p::PeerId;
use p2pd_proto::wire::{BlockManifest, BlockRequest};
use prost::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Serves the node's side of block exchange: the store, the signing key and the wire rules.
#[derive(Clone)]
pub struct BlockService {
    pub store: BlockStore,
    pub key: libp2p::identity::Keypair,
    pub compress_threshold: usize,
    /// Seals this node's block requests and answers.
    pub signer: std::sync::Arc<super::envelope::Signer>,
}

/// The public key inside an identity-hashed PeerId (ed25519), to check block signatures.
fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    (mh.code() == 0)
        .then(|| PublicKey::try_decode_protobuf(mh.digest()).ok())
        .flatten()
}

/// Asks `peer` for the manifest (`chunk` -1) or a chunk of `hash`: the hash the answer claims
/// for its data, the data, its TTL, and the data's BLAKE3 hash when the envelope checked it.
async fn request(
    node: &NodeHandle,
    peer: PeerId,
    hash: &Hash,
    chunk: i64,
) -> Result<(Vec<u8>, bytes::Bytes, u64, Option<Hash>), String> {
    let req = BlockRequest {
        hash: hash.to_vec(),
        chunk,
        envelope: super::envelope::ACCEPTS,
    };
    let answer = node
        .ask(move |n, reply| n.block_request(peer, req, reply))
        .await
        .map_err(|e| e.message)?;
    let (claimed, data, block) = codec::open(answer.response, public_key_of(&peer).as_ref())?;
    Ok((claimed, data, block.ttl, answer.data_blake3))
}

/// Announcements of fetched blocks run in the background, this many DHT queries at once; the
/// rest wait their turn (a small task each).
static ANNOUNCING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// A chunk on its way to the writer with the hashes the manifest lists for it: SHA-256, and
/// the BLAKE3 it was checked against when listed.
type Verified = (bytes::Bytes, Hash, Option<Hash>);

/// Where a fetch hands each chunk, in order, as soon as it matches the manifest (before the
/// whole is checked): the client of a `block get` asked with `early`. A receiver that went
/// away is let go; the fetch goes on for the store.
pub type Early = tokio::sync::mpsc::Sender<bytes::Bytes>;

/// Where a fetch hands each chunk once it verified: the store's writer, and the client when it
/// asked for the data early.
struct Outlets {
    disk: tokio::sync::mpsc::Sender<Verified>,
    early: Option<Early>,
}

impl Outlets {
    /// Hands on one verified chunk; false when the writer failed (its error is the caller's).
    async fn hand(&mut self, chunk: Verified) -> bool {
        let data = chunk.0.clone();
        if self.disk.send(chunk).await.is_err() {
            return false;
        }
        if let Some(client) = &self.early {
            if client.send(data).await.is_err() {
                self.early = None;
            }
        }
        true
    }
}

/// Chunk requests in flight per provider: enough to keep a loopback or LAN link busy while
/// each answer is read, signed and checked off the event loop.
const PIPELINE: usize = 8;

/// The manifest of `hash` from `peer`, checked for plausibility.
async fn manifest(
    node: &NodeHandle,
    hash: &Hash,
    peer: PeerId,
) -> Result<(BlockManifest, u64), String> {
    let (claimed, manifest, ttl, _) = request(node, peer, hash, -1).await?;
    Ok((check_manifest(hash, &claimed, &manifest)?, ttl))
}

/// A provider's manifest of `hash` (`claimed` is the hash its answer names), decoded and
/// checked for plausibility before anything is allocated for the block.
pub fn check_manifest(
    hash: &Hash,
    claimed: &[u8],
    manifest: &[u8],
) -> Result<BlockManifest, String> {
    if claimed != hash {
        return Err("the manifest names another block".into());
    }
    let m = BlockManifest::decode(manifest).map_err(|e| format!("undecodable manifest: {e}"))?;
    let expected_chunks = m.size.div_ceil(CHUNK_SIZE as u64).max(1);
    if m.size > MAX_BLOCK_SIZE
        || m.chunk_size as usize != CHUNK_SIZE
        || m.chunk_hashes.len() as u64 != expected_chunks
        || m.chunk_hashes.iter().any(|h| h.len() != 32)
        || !(m.chunk_blake3.is_empty() || m.chunk_blake3.len() == m.chunk_hashes.len())
        || m.chunk_blake3.iter().any(|h| h.len() != 32)
    {
        return Err(format!(
            "implausible manifest ({} bytes, {} chunks, {} BLAKE3 hashes)",
            m.size,
            m.chunk_hashes.len(),
            m.chunk_blake3.len()
        ));
    }
    Ok(m)
}

/// What the manifest lists for one chunk: its SHA-256, and its BLAKE3 when the provider gave
/// them (the chunk is then checked with BLAKE3 alone).
#[derive(Clone, Copy)]
struct Want<'a> {
    sha256: &'a [u8],
    blake3: Option<&'a [u8]>,
}

impl<'a> Want<'a> {
    fn of(m: &'a BlockManifest, index: usize) -> Self {
        Want {
            sha256: &m.chunk_hashes[index],
            blake3: m.chunk_blake3.get(index).map(Vec::as_slice),
        }
    }
}

/// One chunk from `peer`, verified against the manifest (hashing off the async workers).
async fn chunk(
    node: &NodeHandle,
    hash: &Hash,
    peer: PeerId,
    index: usize,
    want: Want<'_>,
) -> Result<bytes::Bytes, String> {
    let (claimed, data, _, checked) = request(node, peer, hash, index as i64).await?;
    let with_blake3 = want.blake3.is_some();
    let (data, got) = match checked {
        // The envelope's check of its body hashed these very bytes.
        Some(h) if with_blake3 => (data, h),
        // Hashed on the blocking pool, so chunks in flight are checked side by side.
        _ => tokio::task::spawn_blocking(move || {
            let got = match with_blake3 {
                true => super::blake3(&data),
                false => sha256(&data),
            };
            (data, got)
        })
        .await
        .map_err(|e| format!("chunk check failed: {e}"))?,
    };
    let ok = claimed == want.sha256 && got.as_slice() == want.blake3.unwrap_or(want.sha256);
    if !ok {
        return Err(format!(
            "chunk {index} failed verification (corrupt or forged data)"
        ));
    }
    Ok(data)
}

/// Fetches the block from `providers` (the first `connected` of them connected now): the
/// manifest from the first that gives a plausible one, then the chunks spread over those
/// connected, [`PIPELINE`] requests in flight per provider, written in order as they verify.
/// The others are dialled only when those fail: a dead provider's record must not stall the
/// in-order stream behind a dial. A provider that fails or serves anything wrong is dropped and
/// its chunks go to the others; nothing unverified is ever stored.
async fn from_providers(
    node: &NodeHandle,
    store: &BlockStore,
    hash: &Hash,
    mut providers: Vec<PeerId>,
    mut connected: usize,
    reasons: &mut Vec<String>,
    early: Option<Early>,
) -> Result<(Meta, Vec<PeerId>), String> {
    let (m, ttl) = loop {
        let Some(&peer) = providers.first() else {
            return Err("no provider gave a usable manifest".into());
        };
        match manifest(node, hash, peer).await {
            Ok(found) => break found,
            Err(e) => {
                tracing::warn!(hash = %to_hex(hash), provider = %peer, error = %e, "block provider failed; trying the next");
                reasons.push(format!("{peer}: {e}"));
                providers.remove(0);
                connected = connected.saturating_sub(1);
            }
        }
    };
    // The one that gave the manifest is connected now, whatever it was before.
    let mut spares = providers.split_off(connected.clamp(1, providers.len()));
    let writer = tokio::task::block_in_place(|| store.writer(ttl)).map_err(|e| e.to_string())?;
    // The store is written by a thread of its own, so writing (and hashing the whole) overlaps
    // receiving and checking the chunks that follow.
    let (to_disk, from_fetch) = tokio::sync::mpsc::channel::<Verified>(PIPELINE);
    let whole = *hash;
    // Set when the fetch fails: the writer then drops its file instead of finishing it, and
    // the failure is answered only once the file is gone (nothing stored means nothing left).
    let aborted = Arc::new(AtomicBool::new(false));
    let disk = tokio::task::spawn_blocking({
        let aborted = aborted.clone();
        move || write_chunks(writer, from_fetch, &whole, &aborted)
    });
    let mut out = Outlets {
        disk: to_disk,
        early,
    };
    let received = receive(
        node,
        hash,
        &m,
        &mut providers,
        &mut spares,
        reasons,
        &mut out,
    )
    .await;
    if received.is_err() {
        aborted.store(true, Ordering::SeqCst);
    }
    drop(out);
    let written = disk
        .await
        .map_err(|e| format!("the block writer failed: {e}"));
    received?;
    match written?.map_err(|e| e.to_string())? {
        Some(meta) => Ok((meta, providers)),
        None => Err("the block writer stopped".into()),
    }
}

/// Takes the chunks of `m` from `providers`, in order, and hands each to the writer (and to
/// `early`) once it verified; a spare joins when every provider in use has failed.
async fn receive(
    node: &NodeHandle,
    hash: &Hash,
    m: &BlockManifest,
    providers: &mut Vec<PeerId>,
    spares: &mut Vec<PeerId>,
    reasons: &mut Vec<String>,
    out: &mut Outlets,
) -> Result<(), String> {
    use futures::stream::{FuturesOrdered, StreamExt};
    let wants = m.chunk_hashes.len();
    let mut inflight = FuturesOrdered::new();
    let mut next = 0;
    let mut written = 0;
    while written < wants {
        if providers.is_empty() {
            if spares.is_empty() {
                return Err("every provider failed".into());
            }
            providers.push(spares.remove(0));
        }
        while next < wants && inflight.len() < PIPELINE * providers.len().max(1) {
            let peer = providers[next % providers.len()];
            let i = next;
            inflight.push_back(async move {
                (i, peer, chunk(node, hash, peer, i, Want::of(m, i)).await)
            });
            next += 1;
        }
        let Some((i, peer, got)) = inflight.next().await else {
            break;
        };
        let data = match got {
            Ok(d) => d,
            Err(e) => {
                // Drop the provider and take this chunk from the others, one after another.
                tracing::warn!(hash = %to_hex(hash), provider = %peer, chunk = i, error = %e, "block provider failed; its chunks go to the others");
                reasons.push(format!("{peer}: {e}"));
                providers.retain(|p| *p != peer);
                let mut found = None;
                while found.is_none() {
                    let other = match providers.first() {
                        Some(&p) => p,
                        None if !spares.is_empty() => {
                            let p = spares.remove(0);
                            providers.push(p);
                            p
                        }
                        None => break,
                    };
                    match chunk(node, hash, other, i, Want::of(m, i)).await {
                        Ok(d) => found = Some(d),
                        Err(e) => {
                            reasons.push(format!("{other}: {e}"));
                            providers.retain(|p| *p != other);
                        }
                    }
                }
                match found {
                    Some(d) => d,
                    None => return Err(format!("no provider served chunk {i}")),
                }
            }
        };
        // Verified against the manifest just now: the writer takes its hashes as they are.
        let want = Want::of(m, i);
        let sha: Hash = want.sha256.try_into().map_err(|_| "bad chunk hash")?;
        let blake3 = want
            .blake3
            .map(Hash::try_from)
            .transpose()
            .map_err(|_| "bad chunk hash")?;
        if !out.hand((data, sha, blake3)).await {
            break;
        }
        written += 1;
    }
    Ok(())
}

/// Writes verified chunks in order as they come, then checks the whole against `hash`; `None`
/// (and nothing left on disk) when the fetch was `aborted`.
fn write_chunks(
    mut writer: super::store::BlockWriter,
    mut chunks: tokio::sync::mpsc::Receiver<Verified>,
    hash: &Hash,
    aborted: &AtomicBool,
) -> Result<Option<Meta>, super::store::StoreError> {
    while let Some((data, sha, blake3)) = chunks.blocking_recv() {
        writer.write_chunk(&data, &sha, blake3.as_ref())?;
    }
    if aborted.load(Ordering::SeqCst) {
        return Ok(None);
    }
    writer.finish(Some(hash)).map(Some)
}

/// A block in the store, and whether this call fetched it (so every byte of it was verified
/// against its hash moments ago).
pub struct Fetched {
    pub meta: Meta,
    pub just_verified: bool,
}

/// Returns the stored block, fetching it from the network first if needed (handing its chunks
/// to `early` as they verify; a block already stored is not).
pub async fn fetch(
    node: &NodeHandle,
    store: &BlockStore,
    me: PeerId,
    hash: &Hash,
    early: Option<Early>,
) -> Result<Fetched, ApiError> {
    if let Some(meta) = store.stat(hash) {
        return Ok(Fetched {
            meta,
            just_verified: false,
        });
    }
    let key = hash.to_vec();
    let query = DhtQuery::Providers(key.clone());
    let providers = match node.ask(move |n, reply| n.dht(query, reply)).await {
        Ok(DhtAnswer::Peers(peers)) => peers,
        Ok(_) => Vec::new(),
        Err(e) if e.code == Code::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut reasons = Vec::new();
    // Each peer once (the DHT answers from several peers' records), never this node itself.
    let mut seen = std::collections::HashSet::new();
    let providers: Vec<PeerId> = providers
        .into_iter()
        .filter(|p| *p != me && seen.insert(*p))
        .collect();
    let (providers, connected) = node
        .ask(move |n, reply| n.connected_first(providers, reply))
        .await?;
    if !providers.is_empty() {
        match from_providers(node, store, hash, providers, connected, &mut reasons, early).await {
            Ok((meta, served)) => {
                tracing::info!(hash = %to_hex(hash), providers = served.len(), size = meta.size, "fetched and verified a block");
                // Announced in the background: on a real network the announcement is a whole
                // DHT query (closest peers, then a record to each, some of which never answer),
                // and the block is already here for the caller; a failure is logged and the
                // DHT's republishing announces it later.
                let query = DhtQuery::Provide(key.clone());
                let announcer = node.clone();
                let shown = to_hex(hash);
                tokio::spawn(async move {
                    // A client may fetch again at once: the queries are not left to pile up.
                    let _turn = ANNOUNCING.acquire().await;
                    match announcer.ask(move |n, reply| n.dht(query, reply)).await {
                        Ok(_) => tracing::debug!(hash = %shown, "announced a fetched block"),
                        Err(e) => {
                            tracing::warn!(hash = %shown, error = %e, "fetched the block but could not announce it yet; the DHT republishes later")
                        }
                    }
                });
                return Ok(Fetched {
                    meta,
                    just_verified: true,
                });
            }
            Err(e) => reasons.push(e),
        }
    }
    if reasons.is_empty() {
        return Err(ApiError::new(
            Code::NotFound,
            format!("no providers for block {} in the DHT", to_hex(hash)),
        ));
    }
    Err(ApiError::new(
        Code::Failed,
        format!(
            "block {} could not be fetched; nothing was stored. {}",
            to_hex(hash),
            reasons.join("; ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_lists_blake3_for_every_chunk_or_for_none() {
        let hash = [1u8; 32];
        let m = |chunks: usize, blake3: usize| BlockManifest {
            size: (CHUNK_SIZE * 2) as u64,
            chunk_size: CHUNK_SIZE as u32,
            chunk_hashes: vec![vec![2; 32]; chunks],
            chunk_blake3: vec![vec![3; 32]; blake3],
        };
        // From a peer that lists BLAKE3, and from one that does not.
        let with = check_manifest(&hash, &hash, &m(2, 2).encode_to_vec()).unwrap();
        assert_eq!(Want::of(&with, 1).blake3, Some(&[3u8; 32][..]));
        let without = check_manifest(&hash, &hash, &m(2, 0).encode_to_vec()).unwrap();
        assert_eq!(Want::of(&without, 1).blake3, None);
        // Some chunks without their BLAKE3, or hashes of the wrong length: implausible.
        let e = check_manifest(&hash, &hash, &m(2, 1).encode_to_vec()).unwrap_err();
        assert!(e.contains("1 BLAKE3 hashes"), "{e}");
        let mut short = m(2, 2);
        short.chunk_blake3[0].pop();
        assert!(check_manifest(&hash, &hash, &short.encode_to_vec()).is_err());
        assert!(check_manifest(&hash, &[0; 32], &m(2, 2).encode_to_vec()).is_err());
    }
}
