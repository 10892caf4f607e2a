//! The `/p2pd/block/1.0.0` request-response codec (length-prefixed protobuf, sizes capped), and
//! the rules both ends apply to a block on the wire: compression above a threshold, a bound on
//! the decompressed size checked before allocating, and the provider's signature.

use super::{to_hex, BlockStore, CHUNK_SIZE};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::StreamProtocol;
use p2pd_proto::wire::{Block, BlockManifest, BlockRequest, BlockResponse, SignedMessage};
use prost::Message;
use std::io;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/p2pd/block/1.0.0");
/// A block request in its envelope (with room for a non-inlined public key).
const MAX_REQUEST: usize = 4096;
/// A chunk plus the envelope; also bounds a manifest (1 GiB / 1 MiB chunks * 2 * 34 bytes).
const MAX_RESPONSE: usize = CHUNK_SIZE + 64 * 1024;
const VERSION: u32 = 1;

/// The request-response behaviour for [`PROTOCOL`] (30 s per request).
pub fn behaviour() -> libp2p::request_response::Behaviour<BlockCodec> {
    libp2p::request_response::Behaviour::with_codec(
        BlockCodec,
        [(PROTOCOL, libp2p::request_response::ProtocolSupport::Full)],
        libp2p::request_response::Config::default()
            .with_request_timeout(std::time::Duration::from_secs(30)),
    )
}

#[derive(Debug, Clone, Default)]
pub struct BlockCodec;

async fn read_msg<M: Message + Default, T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<M> {
    let mut len: u64 = 0;
    let mut ended = false;
    // At most nine bytes: a longer length prefix is malformed, never wrapped around.
    for shift in (0..63).step_by(7) {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        len |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            ended = true;
            break;
        }
    }
    if !ended {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "length prefix longer than nine bytes",
        ));
    }
    if len > max as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds {max}"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    io.read_exact(&mut buf).await?;
    // Decoded from the frame itself: a chunk's bytes stay where they were read.
    M::decode(bytes::Bytes::from(buf)).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes a signed message as one frame, its payload (a whole chunk, in an answer) straight from
/// where it is rather than copied into the frame first: the other fields, then the payload as
/// the last field (protobuf fields may come in any order; prost reads them so).
async fn write_msg<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    msg: &SignedMessage,
) -> io::Result<()> {
    let (head, payload) = frame_parts(msg);
    io.write_all(&head).await?;
    io.write_all(payload).await?;
    io.close().await
}

/// `msg` as a frame in two parts: everything up to its bulk's bytes (the body of a version 4
/// envelope, else the payload), and those bytes.
fn frame_parts(msg: &SignedMessage) -> (Vec<u8>, &[u8]) {
    let (tag, payload, rest) = if msg.body.is_empty() {
        let rest = SignedMessage {
            payload: bytes::Bytes::new(),
            ..msg.clone()
        };
        (1, &msg.payload[..], rest)
    } else {
        let rest = SignedMessage {
            body: bytes::Bytes::new(),
            ..msg.clone()
        };
        (7, &msg.body[..], rest)
    };
    let mut field = Vec::with_capacity(11);
    if !payload.is_empty() {
        // The field, length-delimited.
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut field);
        prost::encoding::encode_varint(payload.len() as u64, &mut field);
    }
    let body = rest.encoded_len() + field.len() + payload.len();
    let mut head = Vec::with_capacity(10 + rest.encoded_len() + field.len());
    prost::encoding::encode_varint(body as u64, &mut head);
    // Encoding into a Vec cannot fail: it grows as needed.
    let _ = rest.encode(&mut head);
    head.extend_from_slice(&field);
    (head, payload)
}

impl libp2p::request_response::Codec for BlockCodec {
    type Protocol = StreamProtocol;
    type Request = SignedMessage;
    type Response = SignedMessage;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SignedMessage> {
        read_msg(io, MAX_REQUEST).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SignedMessage> {
        read_msg(io, MAX_RESPONSE).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SignedMessage,
    ) -> io::Result<()> {
        write_msg(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SignedMessage,
    ) -> io::Result<()> {
        write_msg(io, &res).await
    }
}

fn signed_bytes(b: &Block) -> Vec<u8> {
    let mut v = b"p2pd-block:".to_vec();
    v.extend_from_slice(&b.hash);
    v.extend_from_slice(&b.timestamp.to_le_bytes());
    v.extend_from_slice(&b.ttl.to_le_bytes());
    v.extend_from_slice(&b.version.to_le_bytes());
    v
}

/// A chunk larger than twice this is first compressed on its first this many bytes, and sent as
/// it is when they do not shrink by an eighth: compressing a whole chunk of random data
/// allocates (and zeroes) an output buffer larger than the chunk only to give it up, measured
/// 8% of a provider's CPU for a block of random data. A chunk whose start is random and whose
/// rest would compress goes uncompressed: a little more on the wire, never a wrong byte.
const PROBE: usize = 64 * 1024;

fn worth_compressing(data: &[u8]) -> bool {
    if data.len() <= 2 * PROBE {
        return true;
    }
    match snap::raw::Encoder::new().compress_vec(&data[..PROBE]) {
        Ok(c) => c.len() < PROBE - PROBE / 8,
        Err(_) => true,
    }
}

fn error(msg: String) -> BlockResponse {
    BlockResponse {
        error: msg,
        ..Default::default()
    }
}

/// Answers a block request from the local store (blocking file I/O: call off the event loop).
pub fn serve(
    store: &BlockStore,
    key: &Keypair,
    compress_threshold: usize,
    req: &BlockRequest,
) -> BlockResponse {
    serve_answer(store, key, compress_threshold, req).0
}

/// [`serve`], with the BLAKE3 hash the store records for the answer's data when the data is a
/// stored chunk as it is (not compressed): what a version 4 envelope states for its body.
pub fn serve_answer(
    store: &BlockStore,
    key: &Keypair,
    compress_threshold: usize,
    req: &BlockRequest,
) -> (BlockResponse, Option<super::Hash>) {
    let Ok(hash) = <[u8; 32]>::try_from(req.hash.as_slice()) else {
        return (error("a block hash is 32 bytes".into()), None);
    };
    let Some(meta) = store.stat(&hash) else {
        return (error(format!("block {} not found", to_hex(&hash))), None);
    };
    let stored_blake3 = (req.chunk >= 0)
        .then(|| meta.chunk_blake3(req.chunk as usize))
        .flatten();
    let (block_hash, data) = if req.chunk < 0 {
        let manifest = BlockManifest {
            size: meta.size,
            chunk_size: meta.chunk_size,
            chunk_hashes: meta.chunk_hashes().iter().map(|h| h.to_vec()).collect(),
            chunk_blake3: meta.chunk_blake3s().iter().map(|h| h.to_vec()).collect(),
        };
        (hash.to_vec(), manifest.encode_to_vec().into())
    } else {
        let index = req.chunk as usize;
        let Some(chunk_hash) = meta.chunk_hash(index) else {
            return (
                error(format!("block {} has no chunk {index}", meta.hash)),
                None,
            );
        };
        // Bytes that do not match are not served: a corrupt block is quarantined and the peer
        // told, so it fails over to another provider. A block this process checked whole is
        // served without hashing it again (the peer checks every chunk either way).
        match store.serve_chunk(&meta, index) {
            Ok(d) => (chunk_hash.to_vec(), d),
            Err(e) => return (error(format!("cannot serve chunk {index}: {e}")), None),
        }
    };
    // Compressed only when that makes it smaller: random or already-compressed data goes as
    // it is, and the requester skips decompressing it.
    let (data, compressed) = if data.len() >= compress_threshold && worth_compressing(&data) {
        match snap::raw::Encoder::new().compress_vec(&data) {
            Ok(c) if c.len() < data.len() => (c.into(), true),
            Ok(_) => (data, false),
            Err(e) => return (error(format!("compression failed: {e}")), None),
        }
    } else {
        (data, false)
    };
    let mut block = Block {
        hash: block_hash,
        data,
        timestamp: meta.created_unix,
        ttl: meta.ttl_secs,
        version: VERSION,
        signature: Vec::new(),
    };
    block.signature = key.sign(&signed_bytes(&block)).unwrap_or_default();
    let response = BlockResponse {
        block: Some(block),
        compressed,
        error: String::new(),
    };
    (response, stored_blake3.filter(|_| !compressed))
}

/// Seals an answer for a requester that accepts envelope version `accepts`: from version 4 the
/// block's data rides as the body, stated by `data_blake3` when the store knows it (else hashed
/// here), so it is neither copied into the payload nor hashed twice.
pub fn seal(
    signer: &super::envelope::Signer,
    accepts: u32,
    mut response: BlockResponse,
    data_blake3: Option<super::Hash>,
) -> SignedMessage {
    match response.block.as_mut() {
        Some(block) if accepts >= 4 => {
            let body = std::mem::take(&mut block.data);
            let stated = data_blake3.unwrap_or_else(|| *blake3::hash(&body).as_bytes());
            signer.seal_with_body(response.encode_to_vec(), body, stated)
        }
        _ => signer.seal_for(accepts, response.encode_to_vec()),
    }
}

/// An opened answer: the response, with its block's data back in place, and the BLAKE3 hash
/// of that data when the envelope checked it (a version 4 body; `None` when compressed, as the
/// hash is then of the compressed bytes).
pub struct Answer {
    pub response: BlockResponse,
    pub data_blake3: Option<super::Hash>,
}

/// Decodes the payload of a verified envelope; `body_blake3` is what [`super::envelope::verify`]
/// returned for its body.
pub fn unseal(msg: SignedMessage, body_blake3: Option<super::Hash>) -> Result<Answer, String> {
    let mut response =
        BlockResponse::decode(msg.payload).map_err(|e| format!("undecodable message: {e}"))?;
    let Some(hash) = body_blake3 else {
        return Ok(Answer {
            response,
            data_blake3: None,
        });
    };
    match response.block.as_mut() {
        Some(block) if block.data.is_empty() => block.data = msg.body,
        Some(_) => return Err("data both in the payload and as the body".into()),
        None if msg.body.is_empty() => {}
        None => return Err("a body without a block".into()),
    }
    let data_blake3 = (!response.compressed).then_some(hash);
    Ok(Answer {
        response,
        data_blake3,
    })
}

/// Opens a response: checks the provider's signature, bounds and decompresses the data, and
/// verifies it against the hash the block claims. Returns (claimed hash, data, block).
pub fn open(
    resp: BlockResponse,
    provider: Option<&PublicKey>,
) -> Result<(Vec<u8>, bytes::Bytes, Block), String> {
    if !resp.error.is_empty() {
        return Err(format!("the provider said: {}", resp.error));
    }
    let mut block = resp.block.ok_or("empty response")?;
    if let Some(pk) = provider {
        if !pk.verify(&signed_bytes(&block), &block.signature) {
            return Err("bad signature on the block".into());
        }
    }
    let data = std::mem::take(&mut block.data);
    let data = if resp.compressed {
        let len = snap::raw::decompress_len(&data)
            .map_err(|e| format!("corrupt compressed data: {e}"))?;
        if len > CHUNK_SIZE.max(MAX_RESPONSE) {
            return Err(format!(
                "decompressed size {len} exceeds the {CHUNK_SIZE}-byte chunk limit"
            ));
        }
        snap::raw::Decoder::new()
            .decompress_vec(&data)
            .map_err(|e| format!("corrupt compressed data: {e}"))?
            .into()
    } else {
        data
    };
    Ok((block.hash.clone(), data, block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::sha256;

    /// A store holding one block of `data`; returns it with the block's hash.
    fn store_with(data: &[u8]) -> (tempfile::TempDir, BlockStore, [u8; 32]) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let mut w = store.writer(0).unwrap();
        w.write(data).unwrap();
        let meta = w.finish(None).unwrap();
        assert_eq!(meta.size, data.len() as u64);
        (dir, store, sha256(data))
    }

    fn ask(hash: &[u8; 32], chunk: i64) -> BlockRequest {
        BlockRequest {
            hash: hash.to_vec(),
            chunk,
            envelope: 0,
        }
    }

    #[test]
    fn manifest_and_chunks_round_trip_signed_and_compressed_when_smaller() {
        let data: Vec<u8> = (0..CHUNK_SIZE + 100).map(|i| (i % 7) as u8).collect();
        let (_dir, store, hash) = store_with(&data);
        let key = Keypair::generate_ed25519();
        let public = key.public();

        let manifest = serve(&store, &key, 1024, &ask(&hash, -1));
        let (claimed, bytes, _) = open(manifest, Some(&public)).unwrap();
        assert_eq!(claimed, hash.to_vec());
        let manifest = BlockManifest::decode(bytes).unwrap();
        assert_eq!(
            (manifest.size, manifest.chunk_hashes.len()),
            (data.len() as u64, 2)
        );

        // Repetitive data compresses: sent compressed, opened whole.
        let first = serve(&store, &key, 1024, &ask(&hash, 0));
        assert!(first.compressed);
        let (claimed, bytes, _) = open(first, Some(&public)).unwrap();
        assert_eq!(bytes, data[..CHUNK_SIZE]);
        assert_eq!(claimed, sha256(&data[..CHUNK_SIZE]).to_vec());
        // Below the threshold: sent as it is.
        let last = serve(&store, &key, 1024, &ask(&hash, 1));
        assert!(!last.compressed);
        assert_eq!(open(last, Some(&public)).unwrap().1, data[CHUNK_SIZE..]);
    }

    #[test]
    fn version_4_carries_the_chunk_as_its_body_stated_by_the_stores_hash() {
        use crate::blocks::envelope::{self, Refusal, Signer};
        let noise: Vec<u8> = (0..(CHUNK_SIZE as u32 + 4096) / 32)
            .flat_map(|i| sha256(&i.to_le_bytes()))
            .collect();
        let (_dir, store, hash) = store_with(&noise);
        let key = Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let signer = Signer::new(key.clone());
        let (resp, stored) = serve_answer(&store, &key, 1024, &ask(&hash, 0));
        assert_eq!(stored, Some(*blake3::hash(&noise[..CHUNK_SIZE]).as_bytes()));
        let sealed = seal(&signer, 4, resp.clone(), stored);
        assert_eq!((sealed.version, sealed.body.len()), (4, CHUNK_SIZE));
        assert!(
            sealed.payload.len() < 1024,
            "the chunk is not in the payload"
        );
        let checked = envelope::verify(&sealed, &me).unwrap();
        assert_eq!(checked, stored);
        let answer = unseal(sealed.clone(), checked).unwrap();
        assert_eq!(answer.data_blake3, stored);
        let (_, data, _) = open(answer.response, Some(&key.public())).unwrap();
        assert_eq!(data, noise[..CHUNK_SIZE]);

        // A requester that knows version 3 gets the chunk inside the payload, as before.
        let old = seal(&signer, 3, resp.clone(), stored);
        assert_eq!((old.version, old.body.len()), (3, 0));
        assert_eq!(envelope::verify(&old, &me).unwrap(), None);
        let answer = unseal(old, None).unwrap();
        assert_eq!(answer.data_blake3, None);
        let (_, data, _) = open(answer.response, Some(&key.public())).unwrap();
        assert_eq!(data, noise[..CHUNK_SIZE]);

        // Bytes that do not have the stated hash (a corrupt disk, or a forger): a bad body,
        // which costs the provider nothing beyond this fetch, not a bad signature.
        let mut corrupt = sealed.clone();
        let mut b = corrupt.body.to_vec();
        b[7] ^= 1;
        corrupt.body = b.into();
        assert_eq!(envelope::verify(&corrupt, &me), Err(Refusal::BadBody));
        let wrong = seal(&signer, 4, resp, Some([0; 32]));
        assert_eq!(envelope::verify(&wrong, &me), Err(Refusal::BadBody));
        // Restating the hash, or moving the body into a version 3 envelope, breaks the signature.
        let mut restated = sealed.clone();
        restated.body_blake3 = vec![0; 32];
        let mut relabelled = sealed;
        relabelled.version = 3;
        for m in [restated, relabelled] {
            assert!(matches!(
                envelope::verify(&m, &me),
                Err(Refusal::BadSignature(_))
            ));
        }

        // Compressed data: the body is the compressed bytes, hashed by the provider; their
        // hash is not the chunk's, so the requester does not take it for one.
        let text = b"the quick brown fox ".repeat(CHUNK_SIZE / 20);
        let (_d2, store2, h2) = store_with(&text);
        let (resp, stored) = serve_answer(&store2, &key, 1024, &ask(&h2, 0));
        assert!(resp.compressed && stored.is_none());
        let sealed = seal(&signer, 4, resp, stored);
        let checked = envelope::verify(&sealed, &me).unwrap();
        assert!(checked.is_some());
        let answer = unseal(sealed, checked).unwrap();
        assert_eq!(answer.data_blake3, None);
        assert_eq!(open(answer.response, Some(&key.public())).unwrap().1, text);

        // An answer without a block (an error) goes as version 3, with no body.
        let (missing, stored) = serve_answer(&store, &key, 1024, &ask(&[1; 32], 0));
        let sealed = seal(&signer, 4, missing, stored);
        assert_eq!((sealed.version, sealed.body.len()), (3, 0));
    }

    #[test]
    fn random_data_goes_uncompressed() {
        // Hash output: incompressible.
        let data: Vec<u8> = (0..2048u32)
            .flat_map(|i| sha256(&i.to_le_bytes()))
            .collect();
        let (_dir, store, hash) = store_with(&data);
        let key = Keypair::generate_ed25519();
        let r = serve(&store, &key, 1024, &ask(&hash, 0));
        assert!(!r.compressed);
        assert_eq!(open(r, Some(&key.public())).unwrap().1, data);
    }

    #[test]
    fn a_forged_or_tampered_answer_is_refused() {
        let (_dir, store, hash) = store_with(b"some block");
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let r = serve(&store, &key, 1024, &ask(&hash, 0));
        assert!(open(r.clone(), Some(&other.public()))
            .unwrap_err()
            .contains("bad signature"));
        let mut tampered = r;
        tampered.block.as_mut().unwrap().ttl += 1;
        assert!(open(tampered, Some(&key.public()))
            .unwrap_err()
            .contains("bad signature"));
    }

    #[test]
    fn a_length_prefix_longer_than_nine_bytes_is_refused() {
        let mut bytes = vec![0x80u8; 9];
        bytes.push(0x01);
        bytes.extend_from_slice(&[0u8; 16]);
        let mut io = futures::io::Cursor::new(bytes);
        let r = futures::executor::block_on(read_msg::<SignedMessage, _>(&mut io, MAX_REQUEST));
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("nine bytes"), "{e}");
    }

    #[test]
    fn unknown_blocks_bad_hashes_and_missing_chunks_are_answered_with_an_error() {
        let (_dir, store, hash) = store_with(b"x");
        let key = Keypair::generate_ed25519();
        let said = |r: BlockResponse| open(r, None).unwrap_err();
        assert!(said(serve(&store, &key, 1024, &ask(&[9; 32], 0))).contains("not found"));
        let short = BlockRequest {
            hash: vec![1, 2],
            chunk: 0,
            envelope: 0,
        };
        assert!(said(serve(&store, &key, 1024, &short)).contains("32 bytes"));
        assert!(said(serve(&store, &key, 1024, &ask(&hash, 5))).contains("no chunk 5"));
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_allocating() {
        let huge = vec![0u8; CHUNK_SIZE * 4];
        let packed = snap::raw::Encoder::new().compress_vec(&huge).unwrap();
        let r = BlockResponse {
            block: Some(Block {
                data: packed.into(),
                ..Default::default()
            }),
            compressed: true,
            ..Default::default()
        };
        assert!(open(r, None).unwrap_err().contains("exceeds"));
    }

    #[test]
    fn compression_is_tried_on_a_sample_first() {
        let noise: Vec<u8> = (0..CHUNK_SIZE as u32 / 32)
            .flat_map(|i| sha256(&i.to_le_bytes()))
            .collect();
        assert!(!worth_compressing(&noise));
        // Small data is always tried whole; data that starts compressible is tried.
        assert!(worth_compressing(&noise[..2 * PROBE]));
        let mut text = b"the quick brown fox ".repeat(CHUNK_SIZE / 20);
        assert!(worth_compressing(&text));
        // Random at its start, compressible after: sent as it is (never wrong, only larger).
        text[..PROBE].copy_from_slice(&noise[..PROBE]);
        assert!(!worth_compressing(&text));
    }

    #[tokio::test]
    async fn a_message_written_payload_or_body_last_reads_back_as_it_was() {
        let sizes = || [vec![], vec![7u8; 5], vec![1u8; CHUNK_SIZE]];
        let with_body = sizes().into_iter().map(|body| SignedMessage {
            payload: vec![9u8; 40].into(),
            body: body.into(),
            body_blake3: vec![5; 32],
            version: 4,
            ..Default::default()
        });
        for msg in sizes()
            .into_iter()
            .map(|payload| SignedMessage {
                payload: payload.into(),
                signature: vec![3; 64],
                seq_no: 300,
                public_key: vec![4; 36],
                compressed: true,
                version: 3,
                ..Default::default()
            })
            .chain(with_body)
        {
            let mut wire = Vec::new();
            write_msg(&mut futures::io::Cursor::new(&mut wire), &msg)
                .await
                .unwrap();
            // The same length as prost's own encoding, and the same message read back.
            assert_eq!(wire.len(), p2pd_proto::frame::encode_frame(&msg).len());
            let back: SignedMessage = read_msg(&mut futures::io::Cursor::new(wire), MAX_RESPONSE)
                .await
                .unwrap();
            assert_eq!(back, msg);
        }
    }

    #[tokio::test]
    async fn frames_over_the_cap_are_refused() {
        let mut wire = Vec::new();
        let big = SignedMessage {
            payload: vec![0; MAX_REQUEST + 1].into(),
            ..Default::default()
        };
        write_msg(&mut futures::io::Cursor::new(&mut wire), &big)
            .await
            .unwrap();
        let e = read_msg::<SignedMessage, _>(&mut futures::io::Cursor::new(wire), MAX_REQUEST)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("exceeds"), "{e}");
    }
}
