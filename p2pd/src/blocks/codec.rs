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
/// A chunk plus the envelope; also bounds a manifest (1 GiB / 1 MiB chunks * 34 bytes).
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
    for shift in (0..64).step_by(7) {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        len |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    if len > max as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds {max}"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    io.read_exact(&mut buf).await?;
    M::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_msg<M: Message, T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    msg: &M,
) -> io::Result<()> {
    io.write_all(&p2pd_proto::frame::encode_frame(msg)).await?;
    io.close().await
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
    let Ok(hash) = <[u8; 32]>::try_from(req.hash.as_slice()) else {
        return error("a block hash is 32 bytes".into());
    };
    let Some(meta) = store.stat(&hash) else {
        return error(format!("block {} not found", to_hex(&hash)));
    };
    let (block_hash, data) = if req.chunk < 0 {
        let manifest = BlockManifest {
            size: meta.size,
            chunk_size: meta.chunk_size,
            chunk_hashes: meta.chunk_hashes().iter().map(|h| h.to_vec()).collect(),
        };
        (hash.to_vec(), manifest.encode_to_vec())
    } else {
        let index = req.chunk as usize;
        let Some(chunk_hash) = meta.chunk_hash(index) else {
            return error(format!("block {} has no chunk {index}", meta.hash));
        };
        // Never serve bytes that do not match: a corrupt block is quarantined and the peer told,
        // so it fails over to another provider.
        match store.read_verified(&meta, index) {
            Ok(d) => (chunk_hash.to_vec(), d),
            Err(e) => return error(format!("cannot serve chunk {index}: {e}")),
        }
    };
    // Compressed only when that makes it smaller: random or already-compressed data goes as
    // it is, and the requester skips decompressing it.
    let (data, compressed) = if data.len() >= compress_threshold {
        match snap::raw::Encoder::new().compress_vec(&data) {
            Ok(c) if c.len() < data.len() => (c, true),
            Ok(_) => (data, false),
            Err(e) => return error(format!("compression failed: {e}")),
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
    BlockResponse {
        block: Some(block),
        compressed,
        error: String::new(),
    }
}

/// Opens a response: checks the provider's signature, bounds and decompresses the data, and
/// verifies it against the hash the block claims. Returns (claimed hash, data, block).
pub fn open(
    resp: BlockResponse,
    provider: Option<&PublicKey>,
) -> Result<(Vec<u8>, Vec<u8>, Block), String> {
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
    } else {
        data
    };
    Ok((block.hash.clone(), data, block))
}
