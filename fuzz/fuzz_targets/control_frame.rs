//! The control socket's frame decoding, as a hostile local client drives it: the bytes a client
//! sends, read by the daemon's bounded reader (`control::bounds::read_frame`, with its budget
//! and deadlines) and by the shared codec (`p2pd_proto::frame`, which p2pctl uses for the
//! daemon's answers); each request then goes through the field bounds (`bounds::check`) and the
//! parsers of the names it carries, and every decoded frame through p2pctl's JSON output.
//!
//! Checked beyond "no panic": both readers agree on every frame, a decoded frame encodes back
//! to a frame that decodes to the same message, and a ban target prints as text that parses
//! back to the same target.

#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pd::control::bounds::{self, Budget, Deadlines};
use p2pd_proto::control::{client_frame, request::Kind, ClientFrame, ServerFrame};
use p2pd_proto::frame;
use p2pd_proto::target::{BanTarget, Multiaddr, PeerId, PeerRef};
use prost::Message;
use std::sync::OnceLock;
use std::time::Duration;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

/// The input is all in memory: nothing ever waits, so the deadlines only have to be finite.
const DEADLINES: Deadlines = Deadlines {
    idle: Duration::from_secs(60),
    frame: Duration::from_secs(60),
};

/// The names a request carries, parsed as the handlers parse them.
fn parse_names(kind: &Kind) {
    let texts: Vec<&str> = match kind {
        Kind::Connect(r) => vec![&r.multiaddr],
        Kind::Disconnect(r) => vec![&r.peer_id],
        Kind::DhtFindPeer(r) => vec![&r.peer_id],
        Kind::StreamOpen(r) => vec![&r.peer_id, &r.protocol],
        Kind::Ban(r) => vec![&r.target],
        Kind::Unban(r) => vec![&r.target],
        Kind::BanImport(r) => r.targets.iter().map(String::as_str).collect(),
        Kind::Trust(r) => vec![&r.target],
        Kind::BlockGet(r) => vec![&r.hash],
        Kind::BlockStat(r) => vec![&r.hash],
        Kind::BlockVerify(r) => vec![&r.hash],
        _ => vec![],
    };
    for t in texts {
        let _ = t.parse::<Multiaddr>();
        let _ = t.parse::<PeerId>();
        let _ = p2pd::blocks::parse_hash(t);
        if let Ok(r) = t.parse::<PeerRef>() {
            let again: PeerRef = r
                .to_string()
                .parse()
                .expect("a peer reference prints as one");
            assert_eq!(again.peer, r.peer);
        }
        if let Ok(target) = t.parse::<BanTarget>() {
            let printed = target.to_string();
            let again: BanTarget = printed.parse().expect("a ban target prints as one");
            assert_eq!(again, target, "{t:?} printed as {printed:?}");
        }
    }
}

fn round_trips<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
    let bytes = frame::encode_frame(m);
    let mut rd = bytes.as_slice();
    let back = runtime()
        .block_on(frame::read_message::<M, _>(&mut rd, usize::MAX))
        .expect("an encoded frame reads back")
        .expect("and is not the end");
    // Compared as encodings: a float field may hold NaN, which is not equal to itself (found by
    // this target: a peer entry whose gossip_score was NaN).
    assert_eq!(back.encode_to_vec(), m.encode_to_vec(), "{m:?}");
}

fuzz_target!(|data: &[u8]| {
    let rt = runtime();
    // The daemon's reader: frames until the end or the first error.
    let budget = Budget::new(p2pd_proto::MAX_FRAME_BYTES);
    let mut rd = tokio::io::BufReader::new(data);
    let mut daemon = Vec::new();
    let daemon_end = loop {
        match rt.block_on(bounds::read_frame(&mut rd, &budget, DEADLINES)) {
            Ok(Some(f)) => daemon.push(f),
            Ok(None) => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    // The shared codec on the same bytes.
    let mut rd = data;
    let mut codec = Vec::new();
    let codec_end = loop {
        match rt.block_on(frame::read_frame(&mut rd, p2pd_proto::MAX_FRAME_BYTES)) {
            Ok(Some(body)) => match ClientFrame::decode(body.as_slice()) {
                Ok(f) => codec.push(f),
                Err(e) => break Some(e.to_string()),
            },
            Ok(None) => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    assert_eq!(daemon, codec, "the two readers decoded different frames");
    assert_eq!(
        daemon_end.is_some(),
        codec_end.is_some(),
        "{daemon_end:?} vs {codec_end:?}"
    );

    for f in &daemon {
        round_trips(f);
        let _ = serde_json::to_string(f).expect("a frame prints as JSON");
        if let Some(client_frame::Frame::Request(r)) = &f.frame {
            if let Some(kind) = &r.kind {
                if bounds::check(kind).is_ok() {
                    parse_names(kind);
                }
            }
        }
    }

    // p2pctl's side: the same bytes as the daemon's answers.
    let mut rd = data;
    while let Ok(Some(f)) = rt.block_on(frame::read_message::<ServerFrame, _>(
        &mut rd,
        p2pd_proto::MAX_FRAME_BYTES,
    )) {
        round_trips(&f);
        let _ = serde_json::to_string(&f).expect("a frame prints as JSON");
    }
});
