//! A hostile Gossipsub peer for tests: connects to a node and writes one raw RPC on a
//! `/meshsub/1.1.0` stream with messages it crafts itself — fresh, replayed, too old, and
//! tampered — so the receiver's validation can be observed from the outside.
//!
//! Usage: hostile_gossip TARGET_MULTIADDR TOPIC [flood N | sustain RATE SECS | send SEQ=DATA...]
//! With `flood N`: N fresh, validly signed messages ("flood-I") in one burst. With `sustain`:
//! fresh messages ("$HOSTILE_PREFIX-I", default "sustain-I") at RATE per second for SECS seconds. With `send`: the
//! given messages, validly signed (every one twice when $HOSTILE_TWICE is set, as a peer that
//! forwards each message along two paths would). The identity is kept in $HOSTILE_KEY when set (so a later run
//! can replay as the same author). Otherwise sends, in order: fresh-1 (seq 5000), fresh-1 again, old (seq 1000, outside the replay window),
//! tampered (seq 5001, data changed after signing), fresh-2 (seq 5002). Prints its PeerId.

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol};
use prost::Message;
use std::time::Duration;

#[derive(Clone, PartialEq, prost::Message)]
struct Rpc {
    #[prost(message, repeated, tag = "2")]
    publish: Vec<GossipMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GossipMessage {
    #[prost(bytes = "vec", optional, tag = "1")]
    from: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    data: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    seqno: Option<Vec<u8>>,
    #[prost(string, optional, tag = "4")]
    topic: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    signature: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    key: Option<Vec<u8>>,
}

fn signed(key: &Keypair, topic: &str, seq: u64, data: &[u8]) -> GossipMessage {
    let mut m = GossipMessage {
        from: Some(key.public().to_peer_id().to_bytes()),
        data: Some(data.to_vec()),
        seqno: Some(seq.to_be_bytes().to_vec()),
        topic: Some(topic.to_string()),
        signature: None,
        key: None,
    };
    let mut to_sign = b"libp2p-pubsub:".to_vec();
    to_sign.extend(m.encode_to_vec());
    m.signature = Some(key.sign(&to_sign).expect("sign"));
    m
}

/// An RPC with its unsigned-varint length prefix.
fn frame(rpc: Rpc) -> Vec<u8> {
    let body = rpc.encode_to_vec();
    let mut out = Vec::new();
    let mut n = body.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { b } else { b | 0x80 });
        if n == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target: Multiaddr = args.next().ok_or("TARGET_MULTIADDR")?.parse()?;
    let topic = args.next().ok_or("TOPIC")?;
    let mode = args.next();
    let flood: Option<u64> = match mode.as_deref() {
        Some("flood") => Some(args.next().ok_or("flood N")?.parse()?),
        _ => None,
    };
    let sustain: Option<(u64, u64)> = match mode.as_deref() {
        Some("sustain") => Some((
            args.next().ok_or("sustain RATE SECS")?.parse()?,
            args.next().ok_or("sustain RATE SECS")?.parse()?,
        )),
        _ => None,
    };
    let mut chosen = Vec::new();
    if mode.as_deref() == Some("send") {
        for a in args.by_ref() {
            let (seq, data) = a.split_once('=').ok_or("SEQ=DATA")?;
            chosen.push((seq.parse::<u64>()?, data.to_string()));
        }
    }
    let peer = target
        .iter()
        .find_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .ok_or("the target needs /p2p/ID")?;
    let key = match std::env::var_os("HOSTILE_KEY") {
        Some(path) => match std::fs::read(&path) {
            Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)?,
            Err(_) => {
                let k = Keypair::generate_ed25519();
                std::fs::write(&path, k.to_protobuf_encoding()?)?;
                k
            }
        },
        None => Keypair::generate_ed25519(),
    };
    println!("{}", key.public().to_peer_id());

    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    let mut control = swarm.behaviour().new_control();
    // Take (and drain) the target's own Gossipsub stream, so it keeps talking to us: a peer
    // that refuses it is treated as not speaking Gossipsub and stops being read from.
    let mut incoming = control.accept(StreamProtocol::new("/meshsub/1.1.0"))?;
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    swarm.dial(target)?;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });

    let mut stream = control
        .open_stream(peer, StreamProtocol::new("/meshsub/1.1.0"))
        .await?;
    let fresh1 = signed(&key, &topic, 5000, b"fresh-1");
    let old = signed(&key, &topic, 1000, b"old");
    let mut tampered = signed(&key, &topic, 5001, b"tampered-original");
    tampered.data = Some(b"tampered".to_vec());
    let fresh2 = signed(&key, &topic, 5002, b"fresh-2");
    let publish = match flood {
        Some(n) => (0..n)
            .map(|i| signed(&key, &topic, 10_000 + i, format!("flood-{i}").as_bytes()))
            .collect(),
        None if !chosen.is_empty() => chosen
            .iter()
            .map(|(seq, d)| signed(&key, &topic, *seq, d.as_bytes()))
            .collect(),
        None => vec![fresh1.clone(), fresh1, old, tampered, fresh2],
    };
    if let Some((rate, secs)) = sustain {
        // Batches every 10 ms, sequence numbers rising from the time in microseconds.
        let per_batch = (rate / 100).max(1);
        let mut seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as u64;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut i = 0u64;
        let prefix = std::env::var("HOSTILE_PREFIX").unwrap_or_else(|_| "sustain".into());
        for _ in 0..secs * 100 {
            tick.tick().await;
            let publish = (0..per_batch)
                .map(|_| {
                    seq += 1;
                    i += 1;
                    signed(&key, &topic, seq, format!("{prefix}-{i}").as_bytes())
                })
                .collect();
            if stream.write_all(&frame(Rpc { publish })).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    }
    let publish = if std::env::var_os("HOSTILE_TWICE").is_some() {
        publish.into_iter().flat_map(|m| [m.clone(), m]).collect()
    } else {
        publish
    };
    stream.write_all(&frame(Rpc { publish })).await?;
    stream.flush().await?;
    // Keep the connection until the test is done with us (it kills this process).
    std::future::pending::<()>().await;
    Ok(())
}
