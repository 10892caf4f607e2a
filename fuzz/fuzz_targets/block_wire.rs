//! p2pd's own peer protocol, `/p2pd/block/1.0.0`, as a hostile peer drives it. The first byte
//! picks what the rest is:
//! - 0: the bytes of a request stream: the codec's reader, then the signed envelope (signature
//!   and replay window), then the request itself answered from a block store;
//! - 1: the bytes of an answer stream: the codec's reader, the envelope, then the answer opened
//!   as a requester opens it (provider signature, bounded decompression, manifest checks);
//! - 2: a payload inside a valid envelope from a known peer, so the decoders behind the
//!   signature check see arbitrary bytes: as a request (an empty hash asks for the stored
//!   block, so the serving paths are reached) and as an answer.
//!
//! Checked beyond "no panic": an envelope this node seals verifies and opens to its payload,
//! the same envelope with its payload changed does not, and its replay is refused.

#![no_main]

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use libp2p::identity::Keypair;
use libp2p::request_response::Codec;
use libp2p::PeerId;
use p2pd::blocks::codec::{self, BlockCodec};
use p2pd::blocks::envelope::{self, Signer};
use p2pd::blocks::{fetch, BlockStore, Hash};
use p2pd::replay::ReplayGuard;
use p2pd_proto::wire::{BlockRequest, BlockResponse, SignedMessage};
use prost::Message;
use std::sync::OnceLock;

struct World {
    key: Keypair,
    peer: PeerId,
    signer: Signer,
    store: BlockStore,
    stored: Hash,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("p2pd-fuzz-blocks.")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let store = BlockStore::open(&dir).expect("a block store");
        // Two chunks, the first compressible: manifests, chunks, compression all reachable.
        let data: Vec<u8> = (0..p2pd::blocks::CHUNK_SIZE + 300)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut w = store.writer(0).expect("a block writer");
        w.write(&data).expect("the block written");
        let meta = w.finish(None).expect("the block stored");
        let stored = p2pd::blocks::parse_hash(&meta.hash).expect("a stored block's hash");
        let key = Keypair::ed25519_from_bytes([7u8; 32]).expect("a fixed key");
        World {
            peer: key.public().to_peer_id(),
            signer: Signer::new(key.clone()),
            key,
            store,
            stored,
        }
    })
}

const PROTOCOL: libp2p::StreamProtocol = codec::PROTOCOL;

/// A request as a serving node handles it once its envelope opened.
fn serve(w: &World, payload: &[u8]) {
    if let Ok(mut req) = BlockRequest::decode(payload) {
        if req.hash.is_empty() {
            req.hash = w.stored.to_vec();
        }
        let resp = codec::serve(&w.store, &w.key, 1024, &req);
        // What we serve, a requester opens.
        if resp.error.is_empty() {
            codec::open(resp, Some(&w.key.public())).expect("our own answer opens");
        }
    }
}

/// An answer as a requester opens it.
fn answer(w: &World, payload: &[u8]) {
    if let Ok(resp) = BlockResponse::decode(payload) {
        let _ = codec::open(resp.clone(), Some(&w.key.public()));
        if let Ok((claimed, data, _)) = codec::open(resp, None) {
            let _ = fetch::check_manifest(&w.stored, &claimed, &data);
            if let Ok(hash) = <Hash>::try_from(claimed.as_slice()) {
                let _ = fetch::check_manifest(&hash, &claimed, &data);
            }
        }
    }
}

fn sealed_round_trip(w: &World, payload: &[u8]) {
    let mut guard = ReplayGuard::new(16);
    let msg = w.signer.seal_for(envelope::ACCEPTS, payload.to_vec());
    let mut changed = msg.clone();
    let mut longer = changed.payload.to_vec();
    longer.push(0);
    changed.payload = longer.into();
    assert!(
        envelope::verify(&changed, &w.peer).is_err(),
        "a changed payload verified"
    );
    let opened = envelope::open(msg.clone(), &w.peer, &mut guard).expect("our own envelope opens");
    assert_eq!(opened, payload);
    assert!(
        envelope::open(msg, &w.peer, &mut guard).is_err(),
        "a replay was accepted"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let mut guard = ReplayGuard::new(16);
    match mode % 3 {
        0 => {
            let mut io = futures::io::Cursor::new(rest);
            if let Ok(msg) = block_on(BlockCodec.read_request(&PROTOCOL, &mut io)) {
                if let Ok(payload) = envelope::open(msg, &w.peer, &mut guard) {
                    serve(w, &payload);
                }
            }
        }
        1 => {
            let mut io = futures::io::Cursor::new(rest);
            if let Ok(msg) = block_on(BlockCodec.read_response(&PROTOCOL, &mut io)) {
                let _ = SignedMessage::encode_to_vec(&msg);
                if let Ok(payload) = envelope::open(msg, &w.peer, &mut guard) {
                    answer(w, &payload);
                }
            }
        }
        _ => {
            sealed_round_trip(w, rest);
            serve(w, rest);
            answer(w, rest);
        }
    }
});
