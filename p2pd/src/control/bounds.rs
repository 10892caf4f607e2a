//! Bounds on what control clients send and hold: every field's length is checked against
//! `p2pd_proto::limits` before anything is parsed or logged, and what all clients together may
//! hold in frames being read is capped ([`Budget`]), with deadlines for a whole frame and for
//! the pause between requests.

use crate::node::{ApiError, Code};
use p2pd_proto::control::request::Kind;
use p2pd_proto::control::ClientFrame;
use p2pd_proto::frame::FrameError;
use p2pd_proto::limits as max;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a client may take.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// A connection with no request for this long is closed (streaming requests excepted).
    pub idle: Duration,
    /// A frame must arrive whole within this time of its first byte.
    pub frame: Duration,
}

pub const DEADLINES: Deadlines = Deadlines {
    idle: Duration::from_secs(300),
    frame: Duration::from_secs(10),
};
/// Frames up to this size are read into the connection's own buffer without a reservation.
const SMALL_FRAME: usize = 64 * 1024;
/// What all clients together may hold in larger frames being read.
pub const FRAMES_BUDGET: usize = 64 << 20;

/// The bytes all control clients may hold in frames being read, beyond their own buffers.
#[derive(Clone)]
pub struct Budget {
    kib: Arc<Semaphore>,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Budget {
            kib: Arc::new(Semaphore::new(bytes.div_ceil(1024))),
        }
    }

    async fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024)).ok()?;
        self.kib.clone().acquire_many_owned(kib).await.ok()
    }
}

/// Why reading a client's next frame stopped.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing for the idle deadline.
    Idle,
    /// A frame did not arrive whole by its deadline (or no memory was free for it meanwhile).
    Slow,
    Frame(FrameError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Idle => f.write_str("the client went quiet"),
            ReadError::Slow => f.write_str("a frame did not arrive whole in time"),
            ReadError::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl From<FrameError> for ReadError {
    fn from(e: FrameError) -> Self {
        ReadError::Frame(e)
    }
}

/// Reads the client's next frame: `None` when it closed. Waits at most `deadlines.idle` for the
/// frame to start and `deadlines.frame` for the rest; a frame larger than the connection's
/// buffer takes its size from `budget` first.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    budget: &Budget,
    deadlines: Deadlines,
) -> Result<Option<ClientFrame>, ReadError> {
    Ok(read_frame_held(rd, budget, deadlines)
        .await?
        .map(|(frame, _)| frame))
}

/// The share of [`Budget`] a large frame's bytes take: whoever keeps the frame's data past the
/// read (an upload's part waiting for the writer) keeps this with it.
pub type Held = Option<OwnedSemaphorePermit>;

/// [`read_frame`], with the frame's share of the budget. Its `bytes` fields that are decoded as
/// slices (block data) keep the frame's buffer, not a copy of their part of it.
pub async fn read_frame_held<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    budget: &Budget,
    deadlines: Deadlines,
) -> Result<Option<(ClientFrame, Held)>, ReadError> {
    match tokio::time::timeout(deadlines.idle, rd.fill_buf()).await {
        Err(_) => return Err(ReadError::Idle),
        Ok(Err(e)) => return Err(FrameError::Io(e).into()),
        Ok(Ok([])) => return Ok(None),
        Ok(Ok(_)) => {}
    }
    let whole = async {
        let len = read_len(rd).await?;
        let reserved = if len > SMALL_FRAME {
            Some(budget.reserve(len).await.ok_or(ReadError::Slow)?)
        } else {
            None
        };
        let mut buf = Vec::with_capacity(len);
        let mut body = rd.take(len as u64);
        body.read_to_end(&mut buf).await.map_err(FrameError::Io)?;
        if buf.len() < len {
            return Err(FrameError::Truncated.into());
        }
        prost::Message::decode(bytes::Bytes::from(buf))
            .map(|frame| (frame, reserved))
            .map_err(|e| ReadError::Frame(FrameError::Decode(e)))
    };
    match tokio::time::timeout(deadlines.frame, whole).await {
        Ok(r) => r.map(Some),
        Err(_) => Err(ReadError::Slow),
    }
}

/// The frame's varint length, checked against the largest frame. At most nine bytes, as the
/// shared codec reads it (`p2pd_proto::frame`): a tenth would shift bits out of the u64, and
/// the two readers then disagreed on where a frame ends (found by the `control_frame` fuzz
/// target).
async fn read_len<R: AsyncBufRead + Unpin>(rd: &mut R) -> Result<usize, ReadError> {
    let mut len: u64 = 0;
    for shift in (0..63).step_by(7) {
        let b = rd.read_u8().await.map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
            _ => FrameError::Io(e),
        })?;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            let max = p2pd_proto::MAX_FRAME_BYTES;
            if len > max as u64 {
                return Err(FrameError::TooLarge { len, max }.into());
            }
            return Ok(len as usize);
        }
    }
    Err(FrameError::BadLength.into())
}

/// Connections served at once, for all callers together.
pub const MAX_CLIENTS: usize = 256;
/// Connections one caller other than root may hold.
pub const PER_UID: usize = 64;
/// Connections kept for root (the operator, the service manager) when the others are taken.
pub const ROOT_RESERVED: usize = 16;

/// Who holds the control connections: a shared pool, a quota per uid, and slots only root may
/// take, so no caller can lock the operator out.
pub struct Slots {
    counts: std::sync::Mutex<Counts>,
    limits: (usize, usize, usize),
}

#[derive(Default)]
struct Counts {
    shared: usize,
    reserved: usize,
    per_uid: std::collections::HashMap<u32, usize>,
}

/// A taken slot; given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
    reserved: bool,
}

impl Slots {
    pub fn new() -> Arc<Self> {
        Self::with_limits(MAX_CLIENTS, PER_UID, ROOT_RESERVED)
    }

    pub fn with_limits(shared: usize, per_uid: usize, reserved: usize) -> Arc<Self> {
        Arc::new(Slots {
            counts: Default::default(),
            limits: (shared, per_uid, reserved),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `uid`, or why there is none.
    pub fn take(self: &Arc<Self>, uid: u32) -> Result<Slot, String> {
        let (shared, per_uid, reserved) = self.limits;
        let mut c = self.counts();
        let mine = c.per_uid.get(&uid).copied().unwrap_or(0);
        if uid != 0 && mine >= per_uid {
            return Err(format!(
                "uid {uid} already holds {mine} control connections, the most one caller may; close some"
            ));
        }
        let in_reserve = if c.shared < shared {
            c.shared += 1;
            false
        } else if uid == 0 && c.reserved < reserved {
            c.reserved += 1;
            true
        } else {
            return Err("too many control clients; try again".into());
        };
        *c.per_uid.entry(uid).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            uid,
            reserved: in_reserve,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        if self.reserved {
            c.reserved -= 1;
        } else {
            c.shared -= 1;
        }
        if let Some(n) = c.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.per_uid.remove(&self.uid);
            }
        }
    }
}

/// `value` of field `what` is at most `limit` bytes long.
fn within(what: &str, value: usize, limit: usize) -> Result<(), ApiError> {
    if value <= limit {
        return Ok(());
    }
    Err(ApiError::new(
        Code::BadRequest,
        format!("the {what} is {value} bytes long; at most {limit} are accepted"),
    ))
}

/// `stream open`'s fields (the request takes over its connection before the dispatch).
pub fn stream_open(r: &p2pd_proto::control::StreamOpenRequest) -> Result<(), ApiError> {
    within("peer id", r.peer_id.len(), max::PEER_ID)?;
    within("protocol", r.protocol.len(), max::PROTOCOL)
}

/// Checks every field of a request against its bound, before anything else looks at it.
pub fn check(kind: &Kind) -> Result<(), ApiError> {
    match kind {
        Kind::Status(_) | Kind::Peers(_) | Kind::PubsubTopics(_) | Kind::Bans(_) => Ok(()),
        Kind::StreamList(_) | Kind::Limits(_) | Kind::Reload(_) => Ok(()),
        Kind::Connect(r) => within("multiaddr", r.multiaddr.len(), max::MULTIADDR),
        Kind::Disconnect(r) => within("peer id", r.peer_id.len(), max::PEER_ID),
        Kind::PubsubPeers(r) => within("topic", r.topic.len(), max::TOPIC),
        Kind::PubsubSubscribe(r) => within("topic", r.topic.len(), max::TOPIC),
        Kind::PubsubPublish(r) => {
            within("topic", r.topic.len(), max::TOPIC)?;
            within("message", r.data.len(), max::MESSAGE)
        }
        Kind::DhtFindPeer(r) => within("peer id", r.peer_id.len(), max::PEER_ID),
        Kind::DhtGet(r) => within("key", r.key.len(), max::DHT_KEY),
        Kind::DhtPut(r) => {
            within("key", r.key.len(), max::DHT_KEY)?;
            within("value", r.value.len(), max::DHT_VALUE).map_err(|mut e| {
                e.message.push_str(" (store large data with `block put`)");
                e
            })
        }
        Kind::DhtProvide(r) => within("key", r.key.len(), max::DHT_KEY),
        Kind::DhtProviders(r) => within("key", r.key.len(), max::DHT_KEY),
        Kind::DhtClosest(r) => within("key", r.key.len(), max::DHT_KEY),
        // Chunks are bounded by the frame; the block by its own maximum as it is written.
        Kind::BlockPut(_) => Ok(()),
        Kind::BlockGet(r) => within("hash", r.hash.len(), max::HASH),
        Kind::BlockStat(r) => within("hash", r.hash.len(), max::HASH),
        Kind::BlockVerify(r) => within("hash", r.hash.len(), max::HASH),
        Kind::StreamOpen(r) => stream_open(r),
        Kind::StreamServe(r) => {
            within("protocol", r.protocol.len(), max::PROTOCOL)?;
            within("socket path", r.socket.len(), max::PATH)
        }
        Kind::StreamRemove(r) => within("protocol", r.protocol.len(), max::PROTOCOL),
        Kind::Ban(r) => {
            within("ban target", r.target.len(), max::BAN_TARGET)?;
            within("reason", r.reason.len(), max::REASON)
        }
        Kind::Unban(r) => within("ban target", r.target.len(), max::BAN_TARGET),
        Kind::BanImport(r) => {
            if r.targets.len() > max::IMPORT_TARGETS {
                return Err(ApiError::new(
                    Code::BadRequest,
                    format!(
                        "{} targets in one import; at most {} are accepted (send the rest in another)",
                        r.targets.len(),
                        max::IMPORT_TARGETS
                    ),
                ));
            }
            for t in &r.targets {
                within("ban target", t.len(), max::BAN_TARGET)?;
            }
            within("reason", r.reason.len(), max::REASON)
        }
        // A peer id, or a multiaddr ending in /p2p/ID.
        Kind::Trust(r) => within("trust target", r.target.len(), max::MULTIADDR),
        Kind::LimitsSet(r) => {
            within("limit name", r.name.len(), max::LIMIT_NAME)?;
            within("limit value", r.value.len(), max::LIMIT_VALUE)
        }
        Kind::LogLevel(r) => within("log filter", r.filter.len(), max::LOG_FILTER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pd_proto::control::{client_frame, BanRequest, Hello, Request};
    use tokio::io::AsyncWriteExt;

    #[test]
    fn no_caller_can_take_roots_slots_or_more_than_its_quota() {
        let slots = Slots::with_limits(4, 2, 1);
        let a: Vec<Slot> = (0..2).map(|_| slots.take(1000).unwrap()).collect();
        let e = slots.take(1000).err().unwrap();
        assert!(e.contains("uid 1000 already holds 2"), "{e}");
        let b: Vec<Slot> = (0..2).map(|_| slots.take(1001).unwrap()).collect();
        // The shared pool is full: others are refused, root gets its reserved slot.
        assert!(slots.take(1002).err().unwrap().contains("too many"));
        let root = slots.take(0).unwrap();
        assert!(slots.take(0).is_err(), "only one reserved slot");
        drop(root);
        let root = slots.take(0).unwrap();
        // Slots come back when connections end.
        drop(a);
        let c = slots.take(1002).unwrap();
        drop((b, c, root));
        let c = slots.counts();
        assert_eq!((c.shared, c.reserved, c.per_uid.len()), (0, 0, 0));
    }

    #[test]
    fn oversized_fields_are_refused_with_their_size_and_bound() {
        let ban = |target: String| {
            Kind::Ban(BanRequest {
                target,
                ..Default::default()
            })
        };
        assert!(check(&ban("192.0.2.7".into())).is_ok());
        let e = check(&ban("a".repeat(256 << 10))).unwrap_err();
        assert_eq!(e.code, Code::BadRequest);
        assert_eq!(
            e.message,
            "the ban target is 262144 bytes long; at most 128 are accepted"
        );
    }

    fn hello() -> Vec<u8> {
        p2pd_proto::frame::encode_frame(&ClientFrame {
            frame: Some(client_frame::Frame::Hello(Hello::default())),
        })
    }

    #[tokio::test]
    async fn frames_are_read_and_the_end_is_none() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut rd = tokio::io::BufReader::new(server);
        client.write_all(&hello()).await.unwrap();
        drop(client);
        let budget = Budget::new(1 << 20);
        assert!(read_frame(&mut rd, &budget, SHORT).await.unwrap().is_some());
        assert!(read_frame(&mut rd, &budget, SHORT).await.unwrap().is_none());
    }

    /// A ten-byte length prefix is refused, as the shared codec refuses it; read with
    /// wrap-around it named a 74-byte frame here while the codec saw a broken one.
    #[tokio::test]
    async fn a_ten_byte_length_prefix_is_malformed() {
        let mut bytes = hello();
        bytes.extend_from_slice(&[0xca, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x0a]);
        bytes.extend_from_slice(&[b'M'; 80]);
        let budget = Budget::new(1 << 20);
        let mut rd = tokio::io::BufReader::new(bytes.as_slice());
        assert!(read_frame(&mut rd, &budget, SHORT).await.unwrap().is_some());
        let e = read_frame(&mut rd, &budget, SHORT).await.unwrap_err();
        assert!(matches!(e, ReadError::Frame(FrameError::BadLength)), "{e}");
        let mut rd = bytes.as_slice();
        let max = p2pd_proto::MAX_FRAME_BYTES;
        assert!(p2pd_proto::frame::read_frame(&mut rd, max)
            .await
            .unwrap()
            .is_some());
        let e = p2pd_proto::frame::read_frame(&mut rd, max)
            .await
            .unwrap_err();
        assert!(matches!(e, FrameError::BadLength), "{e}");
    }

    /// Deadlines short enough for a test.
    const SHORT: Deadlines = Deadlines {
        idle: Duration::from_millis(100),
        frame: Duration::from_millis(200),
    };

    #[tokio::test]
    async fn silence_and_a_stalled_frame_are_cut() {
        let budget = Budget::new(1 << 20);
        let (_client, server) = tokio::io::duplex(1 << 20);
        let mut rd = tokio::io::BufReader::new(server);
        let idle = read_frame(&mut rd, &budget, SHORT).await;
        assert!(matches!(idle, Err(ReadError::Idle)));

        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut rd = tokio::io::BufReader::new(server);
        // A 1000-byte frame of which 10 bytes come.
        client.write_all(&[0xe8, 0x07]).await.unwrap();
        client.write_all(&[0u8; 10]).await.unwrap();
        let slow = read_frame(&mut rd, &budget, SHORT).await;
        assert!(matches!(slow, Err(ReadError::Slow)));
    }

    /// Large frames take their size from the shared budget while they are read: a second one
    /// waits until the first is done, and gives up at the frame deadline.
    #[tokio::test]
    async fn large_frames_share_one_budget() {
        let budget = Budget::new(200 * 1024);
        let big = p2pd_proto::frame::encode_frame(&ClientFrame {
            frame: Some(client_frame::Frame::Request(Request {
                id: 1,
                kind: Some(Kind::PubsubPublish(
                    p2pd_proto::control::PubsubPublishRequest {
                        topic: "t".into(),
                        data: vec![7; 150 * 1024],
                    },
                )),
            })),
        });
        // The first client sends the head of its frame and stalls, holding 150 KiB.
        let (mut a, server) = tokio::io::duplex(1 << 20);
        let mut ra = tokio::io::BufReader::new(server);
        a.write_all(&big[..1000]).await.unwrap();
        let b_budget = budget.clone();
        let first = tokio::spawn(async move { read_frame(&mut ra, &budget, SHORT).await });
        tokio::task::yield_now().await;
        // The second, whole, cannot get its 150 KiB until the first lets go.
        let (mut b, server) = tokio::io::duplex(1 << 20);
        let mut rb = tokio::io::BufReader::new(server);
        b.write_all(&big).await.unwrap();
        let second = read_frame(&mut rb, &b_budget, SHORT).await;
        assert!(matches!(second, Err(ReadError::Slow)), "{second:?}");
        assert!(matches!(first.await.unwrap(), Err(ReadError::Slow)));
        // With the first gone, a frame fits again.
        let (mut c, server) = tokio::io::duplex(1 << 20);
        let mut rc = tokio::io::BufReader::new(server);
        c.write_all(&big).await.unwrap();
        assert!(read_frame(&mut rc, &b_budget, SHORT)
            .await
            .unwrap()
            .is_some());
    }
}
