//! `cargo xtask fuzz-seeds DIR`: the seed corpora of the fuzz targets (fuzz/fuzz_targets), one
//! directory per target, each file one input that reaches a different part of the code: every
//! control request with plausible fields, sealed block requests and answers, a config file, and
//! each state file as the daemon writes it. Regenerate after changing a format; the files are
//! committed so a fuzz run starts from them without building this.

use anyhow::Context;
use libp2p::identity::Keypair;
use p2pd::blocks::envelope::Signer;
use p2pd::policy::bans::{Ban, BanList, BanTarget, Change};
use p2pd_proto::control::client_frame::Frame;
use p2pd_proto::control::{self as c, request::Kind, ClientFrame, ServerFrame};
use p2pd_proto::frame::encode_frame_into;
use p2pd_proto::wire::{BlockRequest, BlockResponse};
use prost::Message;
use std::path::Path;

const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

/// The requests of the control API, each with plausible fields.
fn requests() -> Vec<(&'static str, Kind)> {
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_string();
    vec![
        ("status", Kind::Status(c::StatusRequest {})),
        ("peers", Kind::Peers(c::PeersRequest::default())),
        (
            "disconnect",
            Kind::Disconnect(c::DisconnectRequest {
                peer_id: PEER.into(),
            }),
        ),
        ("topics", Kind::PubsubTopics(c::PubsubTopicsRequest {})),
        (
            "pubsub_peers",
            Kind::PubsubPeers(c::PubsubPeersRequest {
                topic: "news".into(),
            }),
        ),
        (
            "publish",
            Kind::PubsubPublish(c::PubsubPublishRequest {
                topic: "news".into(),
                data: b"hello".to_vec(),
            }),
        ),
        (
            "subscribe",
            Kind::PubsubSubscribe(c::PubsubSubscribeRequest {
                topic: "news".into(),
            }),
        ),
        (
            "find_peer",
            Kind::DhtFindPeer(c::DhtFindPeerRequest {
                peer_id: PEER.into(),
                timeout_ms: 100,
            }),
        ),
        (
            "dht_get",
            Kind::DhtGet(c::DhtGetRequest {
                key: b"key".to_vec(),
                timeout_ms: 100,
            }),
        ),
        (
            "dht_put",
            Kind::DhtPut(c::DhtPutRequest {
                key: b"key".to_vec(),
                value: b"value".to_vec(),
                timeout_ms: 100,
            }),
        ),
        (
            "provide",
            Kind::DhtProvide(c::DhtProvideRequest {
                key: b"key".to_vec(),
                timeout_ms: 100,
            }),
        ),
        (
            "providers",
            Kind::DhtProviders(c::DhtProvidersRequest {
                key: b"key".to_vec(),
                timeout_ms: 100,
            }),
        ),
        (
            "closest",
            Kind::DhtClosest(c::DhtClosestRequest {
                key: b"key".to_vec(),
                timeout_ms: 100,
            }),
        ),
        (
            "block_put",
            Kind::BlockPut(c::BlockPutRequest {
                data: b"test".to_vec().into(),
                last: true,
                ttl_secs: 60,
            }),
        ),
        (
            "block_get",
            Kind::BlockGet(c::BlockGetRequest {
                hash: hash.clone(),
                timeout_ms: 100,
                early: true,
            }),
        ),
        (
            "block_stat",
            Kind::BlockStat(c::BlockStatRequest { hash: hash.clone() }),
        ),
        (
            "block_verify",
            Kind::BlockVerify(c::BlockVerifyRequest { hash }),
        ),
        (
            "stream_open",
            Kind::StreamOpen(c::StreamOpenRequest {
                peer_id: PEER.into(),
                protocol: "/echo/1".into(),
                timeout_ms: 100,
            }),
        ),
        (
            "stream_serve",
            Kind::StreamServe(c::StreamServeRequest {
                protocol: "/echo/1".into(),
                socket: "/nonexistent/echo.sock".into(),
            }),
        ),
        ("stream_list", Kind::StreamList(c::StreamListRequest {})),
        (
            "stream_rm",
            Kind::StreamRemove(c::StreamRemoveRequest {
                protocol: "/echo/1".into(),
            }),
        ),
        (
            "ban_ip",
            Kind::Ban(c::BanRequest {
                target: "192.0.2.7".into(),
                duration_secs: 60,
                reason: "seed".into(),
            }),
        ),
        (
            "ban_cidr",
            Kind::Ban(c::BanRequest {
                target: "198.51.100.0/24".into(),
                duration_secs: 0,
                reason: String::new(),
            }),
        ),
        (
            "ban_peer",
            Kind::Ban(c::BanRequest {
                target: PEER.into(),
                duration_secs: 0,
                reason: "seed".into(),
            }),
        ),
        (
            "unban",
            Kind::Unban(c::UnbanRequest {
                target: "192.0.2.7".into(),
            }),
        ),
        (
            "bans",
            Kind::Bans(c::BansRequest {
                offset: 0,
                limit: 10,
            }),
        ),
        (
            "ban_import",
            Kind::BanImport(c::BanImportRequest {
                targets: vec![
                    "203.0.113.0/24".into(),
                    "2001:db8::/32".into(),
                    "not a target".into(),
                ],
                duration_secs: 0,
                reason: "list".into(),
            }),
        ),
        (
            "trust_add",
            Kind::Trust(c::TrustRequest {
                action: 1,
                target: format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"),
            }),
        ),
        (
            "trust_rm",
            Kind::Trust(c::TrustRequest {
                action: 2,
                target: PEER.into(),
            }),
        ),
        (
            "trust_ls",
            Kind::Trust(c::TrustRequest {
                action: 0,
                target: String::new(),
            }),
        ),
        ("limits", Kind::Limits(c::LimitsRequest {})),
        (
            "limits_set",
            Kind::LimitsSet(c::LimitsSetRequest {
                name: "max_inbound".into(),
                value: "100".into(),
            }),
        ),
        ("reload", Kind::Reload(c::ReloadRequest {})),
        (
            "connect",
            Kind::Connect(c::ConnectRequest {
                multiaddr: format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"),
                ..Default::default()
            }),
        ),
        (
            "log_level",
            Kind::LogLevel(c::LogLevelRequest {
                filter: "info".into(),
            }),
        ),
    ]
}

fn frame(f: Frame, out: &mut Vec<u8>) {
    encode_frame_into(&ClientFrame { frame: Some(f) }, out);
}

fn request(id: u64, kind: Kind) -> Frame {
    Frame::Request(c::Request {
        id,
        kind: Some(kind),
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))
}

fn control(out: &Path) -> anyhow::Result<()> {
    let hello = Frame::Hello(c::Hello {
        protocol_version: p2pd_proto::PROTOCOL_VERSION,
        agent: "seed".into(),
        peer_id: String::new(),
    });
    let frames = out.join("control_frame");
    let session = out.join("control_session");
    for (i, (name, kind)) in requests().into_iter().enumerate() {
        let mut bytes = Vec::new();
        frame(request(i as u64 + 1, kind.clone()), &mut bytes);
        // The session target sends its own hello first; the status after shows the connection
        // still served.
        let mut s = bytes.clone();
        frame(request(1000, Kind::Status(c::StatusRequest {})), &mut s);
        // (The session target skips these: they would dial, or change the log filter.)
        if !matches!(name, "connect" | "log_level") {
            write(&session, name, &s)?;
        }
        let mut f = Vec::new();
        frame(hello.clone(), &mut f);
        f.extend_from_slice(&bytes);
        write(&frames, name, &f)?;
    }
    // An answer as p2pctl reads it.
    let answer = ServerFrame {
        frame: Some(c::server_frame::Frame::Response(c::Response {
            id: 1,
            more: false,
            kind: Some(c::response::Kind::BanList(c::BanList {
                bans: vec![c::BanEntry {
                    target: "192.0.2.7".into(),
                    kind: "ip".into(),
                    ..Default::default()
                }],
                total: 1,
            })),
        })),
    };
    let mut a = Vec::new();
    encode_frame_into(&answer, &mut a);
    write(&frames, "server_ban_list", &a)
}

fn blocks(out: &Path) -> anyhow::Result<()> {
    let dir = out.join("block_wire");
    // The fuzz target's peer: its requests and answers verify there.
    let key = Keypair::ed25519_from_bytes([7u8; 32])?;
    let signer = Signer::new(key);
    let sealed = |mode: u8, payload: Vec<u8>| {
        let mut v = vec![mode];
        v.extend(p2pd_proto::frame::encode_frame(
            &signer.seal_for(2, payload),
        ));
        v
    };
    let manifest = BlockRequest {
        hash: Vec::new(),
        chunk: -1,
        envelope: 2,
    };
    let chunk = BlockRequest {
        hash: Vec::new(),
        chunk: 0,
        envelope: 2,
    };
    let answer = BlockResponse {
        block: Some(p2pd_proto::wire::Block {
            hash: vec![1; 32],
            data: b"data".to_vec().into(),
            version: 1,
            ..Default::default()
        }),
        compressed: false,
        error: String::new(),
    };
    let compressed = BlockResponse {
        block: Some(p2pd_proto::wire::Block {
            hash: vec![1; 32],
            data: snap::raw::Encoder::new().compress_vec(&[0u8; 4096])?.into(),
            version: 1,
            ..Default::default()
        }),
        compressed: true,
        error: String::new(),
    };
    write(
        &dir,
        "request_manifest",
        &sealed(0, manifest.encode_to_vec()),
    )?;
    write(&dir, "request_chunk", &sealed(0, chunk.encode_to_vec()))?;
    write(&dir, "answer", &sealed(1, answer.encode_to_vec()))?;
    write(
        &dir,
        "answer_compressed",
        &sealed(1, compressed.encode_to_vec()),
    )?;
    let inner = |name: &str, payload: Vec<u8>| {
        let mut v = vec![2u8];
        v.extend(payload);
        write(&dir, name, &v)
    };
    inner("payload_manifest_request", manifest.encode_to_vec())?;
    inner("payload_chunk_request", chunk.encode_to_vec())?;
    inner("payload_answer", compressed.encode_to_vec())?;
    Ok(())
}

fn config(out: &Path) -> anyhow::Result<()> {
    let dir = out.join("config");
    let example = std::fs::read("packaging/p2pd.toml")
        .context("packaging/p2pd.toml (run from the project root)")?;
    write(&dir, "packaged", &example)?;
    let small = b"[network]\nlisten = [\"/ip4/127.0.0.1/tcp/4001\"]\ndial_deny_cidrs = [\"10.0.0.0/8\"]\n\n[limits]\nmax_inbound = 100\nidle_timeout = \"30s\"\nmax_memory = \"256MiB\"\n\n[trust]\naddresses = [\"192.0.2.0/24\"]\n\0P2P_MAX_CONNECTIONS=50\nP2P_BOOTSTRAP=true\nRUST_LOG=info\n";
    write(&dir, "small_with_env", small)
}

fn state(out: &Path) -> anyhow::Result<()> {
    let dir = out.join("state_files");
    let ban = |target: &str, expires: Option<u64>| -> anyhow::Result<Ban> {
        Ok(Ban {
            target: target.parse::<BanTarget>().map_err(anyhow::Error::msg)?,
            reason: "seed".into(),
            created_unix: 1_700_000_000,
            expires_unix: expires,
            created_by: "uid 0".into(),
        })
    };
    let mut list = BanList::default();
    list.add(ban("192.0.2.7", None)?);
    list.add(ban("2001:db8::/32", Some(4_000_000_000))?);
    list.add(ban(PEER, None)?);
    let mut v = vec![0u8];
    v.extend(serde_json::to_vec_pretty(&list)?);
    v.push(0);
    for change in [
        Change::Ban {
            ban: ban("198.51.100.0/24", None)?,
        },
        Change::Unban {
            target: "192.0.2.7".parse().map_err(anyhow::Error::msg)?,
        },
        Change::Trust { peer: PEER.into() },
    ] {
        v.extend(serde_json::to_vec(&change)?);
        v.push(b'\n');
    }
    write(&dir, "bans", &v)?;

    let peer: libp2p::PeerId = PEER.parse()?;
    let snap = p2pd::node::routing_table::Snapshot::new([(
        peer,
        vec![
            "/ip4/127.0.0.1/tcp/4001".parse()?,
            "/ip6/::1/udp/4001/quic-v1".parse()?,
        ],
    )]);
    let mut v = vec![1u8];
    v.extend(serde_json::to_vec_pretty(&snap)?);
    write(&dir, "routing_table", &v)?;

    let mut guard = p2pd::replay::ReplayGuard::<libp2p::PeerId>::new(16);
    for seq in [5, 7, 1030] {
        guard.check(&peer, seq);
    }
    let mut v = vec![2u8];
    v.extend(guard.to_json());
    write(&dir, "replay", &v)?;

    let mut v = vec![3u8];
    v.extend(Keypair::ed25519_from_bytes([9u8; 32])?.to_protobuf_encoding()?);
    write(&dir, "identity", &v)?;

    // A block's metadata and data as the store writes them.
    let tmp = tempfile::tempdir()?;
    let store = p2pd::blocks::BlockStore::open(tmp.path())?;
    let mut w = store.writer(3600)?;
    w.write(b"a small block")?;
    let meta = w.finish(None)?;
    let mut v = vec![4u8];
    v.extend(serde_json::to_vec_pretty(&meta)?);
    v.push(0);
    v.extend(b"a small block");
    write(&dir, "block", &v)
}

pub fn generate(out: &Path) -> anyhow::Result<()> {
    control(out)?;
    blocks(out)?;
    config(out)?;
    state(out)
}
