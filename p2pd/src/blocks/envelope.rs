//! The signed envelope of p2pd's own request/response messages (`wire.SignedMessage`): the
//! sender signs a domain tag, a sequence number and the payload with its identity key; the
//! receiver checks the signature against the sender's PeerId and the sequence number against a
//! per-sender replay window. Sequence numbers start at the current time in nanoseconds, so they
//! keep increasing across restarts.
//!
//! Version 1 signs the payload itself; version 2 signs its SHA-256 instead, which costs one
//! hardware-accelerated pass over a 1 MiB chunk rather than the two SHA-512 passes of an Ed25519
//! signature (and the one of its verification) plus a copy; version 3 signs its BLAKE3 hash,
//! about three times faster again than SHA-256 with the CPU's SHA extensions (AVX-512 or AVX2
//! lanes hash the chunk's 1 KiB pieces side by side); version 4 carries the bulk of an answer (a
//! chunk's bytes) as a separate body, signed by the BLAKE3 hash its sender states for it: the
//! receiver's one pass over the body both checks it against that hash and gives the hash the
//! chunk is checked against in the manifest (version 3 hashed the chunk twice: once inside the
//! payload for the signature, once alone for the manifest), and a provider states the hash its
//! store already holds. A body that does not match its stated hash is corrupt data, not a forged
//! signature: its sender signed a claim the bytes did not meet ([`Refusal::BadBody`]). A node
//! answers with a newer version only when the request said it accepts it ([`ACCEPTS`]), so
//! nodes that predate it keep working.

use crate::replay::{ReplayGuard, Verdict};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use p2pd_proto::wire::SignedMessage;
use std::sync::atomic::{AtomicU64, Ordering};

/// The highest envelope version this node reads: what its requests accept for the answer.
pub const ACCEPTS: u32 = 4;

/// What the signature covers, by envelope version (`body_blake3`: version 4's stated hash of
/// the body); `None` for a version this node cannot read.
fn signed_bytes(version: u32, seq_no: u64, payload: &[u8], body_blake3: &[u8]) -> Option<Vec<u8>> {
    let (domain, digest): (&[u8], std::borrow::Cow<[u8]>) = match version {
        0 | 1 => (b"p2pd-envelope/1:", payload.into()),
        2 => (b"p2pd-envelope/2:", super::sha256(payload).to_vec().into()),
        3 => (
            b"p2pd-envelope/3:",
            blake3::hash(payload).as_bytes().to_vec().into(),
        ),
        4 if body_blake3.len() == 32 => (
            b"p2pd-envelope/4:",
            [blake3::hash(payload).as_bytes(), body_blake3]
                .concat()
                .into(),
        ),
        _ => return None,
    };
    let mut v = Vec::with_capacity(domain.len() + 8 + digest.len());
    v.extend_from_slice(domain);
    v.extend_from_slice(&seq_no.to_le_bytes());
    v.extend_from_slice(&digest);
    Some(v)
}

pub struct Signer {
    key: Keypair,
    next: AtomicU64,
}

impl Signer {
    pub fn new(key: Keypair) -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Signer {
            key,
            next: AtomicU64::new(start),
        }
    }

    /// Seals with version 1, which every p2pd reads (requests, and answers to old requesters).
    pub fn seal(&self, payload: Vec<u8>) -> SignedMessage {
        self.seal_as(1, payload)
    }

    /// Seals with the highest version without a body (at most 3) that both this node and the
    /// requester (`accepts`) know.
    pub fn seal_for(&self, accepts: u32, payload: Vec<u8>) -> SignedMessage {
        self.seal_as(accepts.clamp(1, 3), payload)
    }

    /// Seals with version 4: `payload` and, beside it, `body` with the BLAKE3 hash its bytes
    /// have (the caller's statement: the receiver checks it). Only for a requester that
    /// accepts version 4.
    pub fn seal_with_body(
        &self,
        payload: Vec<u8>,
        body: bytes::Bytes,
        body_blake3: [u8; 32],
    ) -> SignedMessage {
        SignedMessage {
            body,
            body_blake3: body_blake3.to_vec(),
            ..self.seal_as_stating(4, payload, &body_blake3)
        }
    }

    fn seal_as(&self, version: u32, payload: Vec<u8>) -> SignedMessage {
        self.seal_as_stating(version, payload, &[])
    }

    fn seal_as_stating(&self, version: u32, payload: Vec<u8>, body_blake3: &[u8]) -> SignedMessage {
        let seq_no = self.next.fetch_add(1, Ordering::Relaxed);
        let signature = signed_bytes(version, seq_no, &payload, body_blake3)
            .and_then(|b| self.key.sign(&b).ok())
            .unwrap_or_default();
        let derivable = PeerId::from_public_key(&self.key.public()).as_ref().code() == 0;
        SignedMessage {
            payload: payload.into(),
            signature,
            seq_no,
            public_key: if derivable {
                Vec::new()
            } else {
                self.key.public().encode_protobuf()
            },
            compressed: false,
            version: if version == 1 { 0 } else { version },
            body: bytes::Bytes::new(),
            body_blake3: Vec::new(),
        }
    }
}

/// The sender's public key: carried in the envelope, or inlined in an identity-hashed PeerId.
fn public_key(msg: &SignedMessage, from: &PeerId) -> Result<PublicKey, String> {
    let pk = if msg.public_key.is_empty() {
        let mh: &libp2p::multihash::Multihash<64> = from.as_ref();
        if mh.code() != 0 {
            return Err("the envelope lacks the sender's public key".into());
        }
        PublicKey::try_decode_protobuf(mh.digest()).map_err(|e| e.to_string())?
    } else {
        PublicKey::try_decode_protobuf(&msg.public_key).map_err(|e| e.to_string())?
    };
    if pk.to_peer_id() != *from {
        return Err("the envelope's key does not belong to the sender".into());
    }
    Ok(pk)
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadSignature(String),
    /// A version 4 body whose bytes do not have the hash its sender signed for them: corrupt
    /// data (a provider's disk, or a forger), refused like a chunk that fails the manifest.
    BadBody,
    Replay(Verdict),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadSignature(why) => write!(f, "bad envelope signature: {why}"),
            Refusal::BadBody => write!(
                f,
                "failed verification: the bytes do not match the hash their sender signed for them (corrupt or forged data)"
            ),
            Refusal::Replay(v) => write!(f, "replayed envelope ({v:?})"),
        }
    }
}

/// Verifies an envelope from `from` and returns its payload.
pub fn open(
    msg: SignedMessage,
    from: &PeerId,
    guard: &mut ReplayGuard<PeerId>,
) -> Result<bytes::Bytes, Refusal> {
    verify(&msg, from)?;
    fresh(&msg, from, guard)?;
    Ok(msg.payload)
}

/// The signature check alone: the expensive half (a hash over the whole payload and body),
/// which needs no state and may run off the event loop. Returns the BLAKE3 hash of a version 4
/// body, checked.
pub fn verify(msg: &SignedMessage, from: &PeerId) -> Result<Option<[u8; 32]>, Refusal> {
    let pk = public_key(msg, from).map_err(Refusal::BadSignature)?;
    let v4 = msg.version == 4;
    let bodiless = msg.body.is_empty() && msg.body_blake3.is_empty();
    if !v4 && !bodiless {
        return Err(Refusal::BadSignature(format!(
            "a body in a version {} envelope",
            msg.version
        )));
    }
    let Some(signed) = signed_bytes(msg.version, msg.seq_no, &msg.payload, &msg.body_blake3) else {
        return Err(Refusal::BadSignature(format!(
            "unknown envelope version {} (or a stated body hash that is not 32 bytes)",
            msg.version
        )));
    };
    if !pk.verify(&signed, &msg.signature) {
        return Err(Refusal::BadSignature("signature does not verify".into()));
    }
    if !v4 {
        return Ok(None);
    }
    let got: [u8; 32] = *blake3::hash(&msg.body).as_bytes();
    if got[..] != msg.body_blake3[..] {
        return Err(Refusal::BadBody);
    }
    Ok(Some(got))
}

/// The replay check alone. Checking it before the signature is sound because `from` is the
/// transport-authenticated sender: only that peer can spend its own sequence numbers.
pub fn fresh(
    msg: &SignedMessage,
    from: &PeerId,
    guard: &mut ReplayGuard<PeerId>,
) -> Result<(), Refusal> {
    match guard.check(from, msg.seq_no) {
        Verdict::Fresh => Ok(()),
        v => Err(Refusal::Replay(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signer, its peer id, and an empty replay guard of `senders` windows.
    fn sender(senders: usize) -> (PeerId, Signer, ReplayGuard<PeerId>) {
        let key = Keypair::generate_ed25519();
        (
            key.public().to_peer_id(),
            Signer::new(key),
            ReplayGuard::new(senders),
        )
    }

    #[test]
    fn seal_open_replay_tamper() {
        let (me, signer, mut guard) = sender(16);
        let m = signer.seal(b"hello".to_vec());
        assert_eq!(open(m.clone(), &me, &mut guard).unwrap(), &b"hello"[..]);
        assert!(matches!(
            open(m.clone(), &me, &mut guard),
            Err(Refusal::Replay(Verdict::Replay))
        ));
        let mut t = signer.seal(b"x".to_vec());
        t.payload = b"y".to_vec().into();
        assert!(matches!(
            open(t, &me, &mut guard),
            Err(Refusal::BadSignature(_))
        ));
        let other = PeerId::random();
        assert!(matches!(
            open(signer.seal(b"z".to_vec()), &other, &mut guard),
            Err(Refusal::BadSignature(_))
        ));
    }

    #[test]
    fn versions_negotiate_and_do_not_mix() {
        let (me, signer, mut guard) = sender(64);
        // An old requester (0) gets version 1, written as 0 on the wire like an old sender.
        let old = signer.seal_for(0, b"a".to_vec());
        assert_eq!(old.version, 0);
        assert_eq!(open(old, &me, &mut guard).unwrap(), &b"a"[..]);
        // A newer requester than us gets our highest without a body.
        let v2 = signer.seal_for(9, b"b".to_vec());
        assert_eq!(v2.version, 3);
        assert_eq!(open(v2.clone(), &me, &mut guard).unwrap(), &b"b"[..]);
        // A requester that knows version 2 (the SHA-256 digest) but not 3 gets version 2.
        let v2 = signer.seal_for(2, b"d".to_vec());
        assert_eq!(v2.version, 2);
        assert_eq!(open(v2, &me, &mut guard).unwrap(), &b"d"[..]);
        // The version is bound by the signature's domain: relabelling it breaks the signature,
        // and so does changing the payload under a digest signature.
        for version in [2, 3] {
            for tamper in [
                |m: &mut SignedMessage| m.version = 1,
                |m: &mut SignedMessage| m.version = if m.version == 2 { 3 } else { 2 },
                |m: &mut SignedMessage| m.payload = b"c".to_vec().into(),
                |m: &mut SignedMessage| m.version = 7,
            ] {
                let mut m = signer.seal_for(version, b"b".to_vec());
                assert_eq!(m.version, version);
                tamper(&mut m);
                assert!(matches!(
                    open(m, &me, &mut guard),
                    Err(Refusal::BadSignature(_))
                ));
            }
        }
    }
}
