//! The signed envelope of p2pd's own request/response messages (`wire.SignedMessage`): the
//! sender signs a domain tag, a sequence number and the payload with its identity key; the
//! receiver checks the signature against the sender's PeerId and the sequence number against a
//! per-sender replay window. Sequence numbers start at the current time in nanoseconds, so they
//! keep increasing across restarts.

use crate::replay::{ReplayGuard, Verdict};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use p2pd_proto::wire::SignedMessage;
use std::sync::atomic::{AtomicU64, Ordering};

const DOMAIN: &[u8] = b"p2pd-envelope/1:";

fn signed_bytes(seq_no: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(DOMAIN.len() + 8 + payload.len());
    v.extend_from_slice(DOMAIN);
    v.extend_from_slice(&seq_no.to_le_bytes());
    v.extend_from_slice(payload);
    v
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

    pub fn seal(&self, payload: Vec<u8>) -> SignedMessage {
        let seq_no = self.next.fetch_add(1, Ordering::Relaxed);
        let signature = self
            .key
            .sign(&signed_bytes(seq_no, &payload))
            .unwrap_or_default();
        let derivable = PeerId::from_public_key(&self.key.public()).as_ref().code() == 0;
        SignedMessage {
            payload,
            signature,
            seq_no,
            public_key: if derivable {
                Vec::new()
            } else {
                self.key.public().encode_protobuf()
            },
            compressed: false,
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
    Replay(Verdict),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadSignature(why) => write!(f, "bad envelope signature: {why}"),
            Refusal::Replay(v) => write!(f, "replayed envelope ({v:?})"),
        }
    }
}

/// Verifies an envelope from `from` and returns its payload.
pub fn open(
    msg: SignedMessage,
    from: &PeerId,
    guard: &mut ReplayGuard<PeerId>,
) -> Result<Vec<u8>, Refusal> {
    verify(&msg, from)?;
    fresh(&msg, from, guard)?;
    Ok(msg.payload)
}

/// The signature check alone: the expensive half (a hash over the whole payload), which needs
/// no state and may run off the event loop.
pub fn verify(msg: &SignedMessage, from: &PeerId) -> Result<(), Refusal> {
    let pk = public_key(msg, from).map_err(Refusal::BadSignature)?;
    if !pk.verify(&signed_bytes(msg.seq_no, &msg.payload), &msg.signature) {
        return Err(Refusal::BadSignature("signature does not verify".into()));
    }
    Ok(())
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

    #[test]
    fn seal_open_replay_tamper() {
        let key = Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let signer = Signer::new(key);
        let mut guard = ReplayGuard::new(16);
        let m = signer.seal(b"hello".to_vec());
        assert_eq!(open(m.clone(), &me, &mut guard).unwrap(), b"hello");
        assert!(matches!(
            open(m.clone(), &me, &mut guard),
            Err(Refusal::Replay(Verdict::Replay))
        ));
        let mut t = signer.seal(b"x".to_vec());
        t.payload = b"y".to_vec();
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
}
