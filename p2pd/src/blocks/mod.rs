//! Content-addressed blocks: a store in the data dir, the `/p2pd/block/1.0.0` wire protocol,
//! and fetching from providers found through the DHT with verification chunk by chunk.

pub mod codec;
pub mod envelope;
pub mod fetch;
pub mod store;
pub mod streaming;

pub use store::{BlockStore, Meta};

/// Chunks are at most this large on the wire and on disk.
pub const CHUNK_SIZE: usize = 1 << 20;
/// Largest block accepted.
pub const MAX_BLOCK_SIZE: u64 = 1 << 30;

pub type Hash = [u8; 32];

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a 64-digit hex SHA-256.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

pub fn sha256(data: &[u8]) -> Hash {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// BLAKE3 of a chunk: what chunks are checked against when the manifest or metadata lists it.
pub fn blake3(data: &[u8]) -> Hash {
    blake3::hash(data).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trip() {
        let h = super::sha256(b"abc");
        assert_eq!(super::parse_hash(&super::to_hex(&h)), Some(h));
        assert_eq!(super::parse_hash("zz"), None);
    }
}
