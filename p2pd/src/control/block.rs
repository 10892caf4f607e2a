//! `block put` (client-streamed upload), `block get` (fetch, verify, stream back), `block stat`
//! and `block verify`. Data moves between the socket and the store here, never through the node loop.

use super::{Caller, Ctx, Outcome};
use crate::blocks::{self, fetch, parse_hash, Meta};
use crate::node::Code;
use crate::node::{ApiError, DhtQuery};
use futures::StreamExt;
use p2pd_proto::control::{
    client_frame, request, response::Kind, BlockData, BlockGetRequest, BlockPutRequest, BlockStat,
    BlockStatRequest, BlockVerifyRequest, BlockVerifyResponse, ClientFrame, ErrorCode, Request,
};

fn stat_of(m: &Meta) -> BlockStat {
    BlockStat {
        hash: m.hash.clone(),
        size: m.size,
        chunks: m.chunks.len() as u32,
        created_unix: m.created_unix,
        expires_unix: m.expires_unix(),
    }
}

fn hash_arg(s: &str) -> Result<blocks::Hash, ApiError> {
    parse_hash(s).ok_or_else(|| {
        ApiError::new(
            Code::BadRequest,
            format!("{s:?} is not a SHA-256 hash (64 hex digits)"),
        )
    })
}

/// A store failure as the control protocol's error message.
fn error_of(e: &blocks::store::StoreError) -> p2pd_proto::control::Error {
    let code = match e {
        blocks::store::StoreError::Corrupt { .. } => ErrorCode::Failed,
        _ => ErrorCode::Internal,
    };
    p2pd_proto::control::Error {
        code: code as i32,
        message: format!("block store: {e}"),
    }
}

fn io_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, format!("block store: {e}"))
}

/// Parts of an upload read ahead of the writer (each at most a frame, 1 MiB from `p2pctl`, and
/// each keeping its share of the control frames' budget until written).
const PUT_AHEAD: usize = 2;

/// An upload's part on its way to the writer: data, whether it is the last, its budget share.
type Part = (bytes::Bytes, bool, super::bounds::Held);

/// How an upload ended for its connection.
pub struct Upload {
    pub answer: Result<Kind, ApiError>,
    /// Close the connection after the answer: its frames no longer line up with requests (an
    /// upload broken off, interrupted by another request, or sent on past the size limit).
    pub close: bool,
}

/// Reads the rest of an upload (frames with the same request id until `last`), storing it as it
/// arrives, then announces the block as a provider record. The store is written and hashed by
/// a thread of its own while the next parts are read from the socket.
pub async fn put<R: tokio::io::AsyncBufRead + Unpin>(
    ctx: &Ctx,
    caller: &Caller,
    rd: &mut R,
    id: u64,
    first: BlockPutRequest,
) -> Upload {
    caller.audit("block_put", "");
    let writer = match tokio::task::block_in_place(|| ctx.store.writer(first.ttl_secs)) {
        Ok(w) => w,
        // Nothing read past the first part: any later part would be taken for a new upload.
        Err(e) => {
            return Upload {
                answer: Err(io_error(e)),
                close: !first.last,
            }
        }
    };
    let (to_disk, parts) = tokio::sync::mpsc::channel(PUT_AHEAD);
    let disk = tokio::task::spawn_blocking(move || write_parts(writer, parts));
    let read = read_parts(ctx, rd, id, first, &to_disk).await;
    drop(to_disk);
    let written = disk.await.map_err(io_error);
    // A broken upload is answered as such (with the store's failure first, when it had one);
    // the writer, dropped unfinished, leaves nothing.
    if let Err(mut broken) = read {
        if let Ok(Err(e)) = &written {
            broken.message = format!("{e}; {}", broken.message);
        }
        return Upload {
            answer: Err(broken),
            close: true,
        };
    }
    Upload {
        answer: finish_put(ctx, written).await,
        close: false,
    }
}

/// The answer to a whole upload: the block stored and announced, or the store's failure.
async fn finish_put(
    ctx: &Ctx,
    written: Result<Result<Option<blocks::Meta>, blocks::store::StoreError>, ApiError>,
) -> Result<Kind, ApiError> {
    let meta = written?
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
        .ok_or_else(|| io_error("the writer stopped before the last part"))?;
    let key = parse_hash(&meta.hash)
        .map(|h| h.to_vec())
        .unwrap_or_default();
    let query = DhtQuery::Provide(key);
    if let Err(e) = ctx.node.ask(move |n, reply| n.dht(query, reply)).await {
        tracing::warn!(hash = %meta.hash, error = %e, "stored the block but could not announce it yet; the DHT republishes later");
    }
    tracing::info!(hash = %meta.hash, size = meta.size, "stored a block");
    Ok(Kind::BlockStat(stat_of(&meta)))
}

/// Hands the upload's parts to the writer in order, until the last. When the writer failed (its
/// error is the answer) the rest of the upload is still read, and dropped: the client may have
/// sent it already, and its parts must not be taken for new requests. No more than a whole
/// block's worth is read in all: past that, the client is not sending a block, and the error
/// says the connection closes.
async fn read_parts<R: tokio::io::AsyncBufRead + Unpin>(
    ctx: &Ctx,
    rd: &mut R,
    id: u64,
    first: BlockPutRequest,
    to_disk: &tokio::sync::mpsc::Sender<Part>,
) -> Result<(), ApiError> {
    let mut part = (first, None);
    let mut writing = true;
    let mut read: u64 = 0;
    loop {
        let last = part.0.last;
        read += part.0.data.len() as u64;
        if !writing && read > blocks::MAX_BLOCK_SIZE + blocks::CHUNK_SIZE as u64 {
            return Err(ApiError::new(
                Code::BadRequest,
                format!(
                    "the upload went on past the block size limit ({} bytes) after the store stopped taking it; nothing was stored; the connection closes",
                    blocks::MAX_BLOCK_SIZE
                ),
            ));
        }
        if writing {
            writing = to_disk.send((part.0.data, last, part.1)).await.is_ok();
        }
        if last {
            return Ok(());
        }
        part = match super::bounds::read_frame_held(rd, &ctx.budget, super::bounds::DEADLINES).await
        {
            Ok(Some((
                ClientFrame {
                    frame:
                        Some(client_frame::Frame::Request(Request {
                            id: next,
                            kind: Some(request::Kind::BlockPut(p)),
                        })),
                },
                held,
            ))) if next == id => (p, held),
            Ok(_) => {
                return Err(ApiError::new(
                    Code::BadRequest,
                    "upload interrupted by another frame; nothing was stored; the connection closes (send other requests after an upload's last part, or on another connection)",
                ))
            }
            Err(e) => {
                return Err(ApiError::new(
                    Code::BadRequest,
                    format!("upload broken ({e}); nothing was stored; the connection closes"),
                ))
            }
        };
    }
}

/// Writes the parts as they come: the block once the last is in, `None` (and nothing left
/// behind) when the upload broke off first, or the first failure.
fn write_parts(
    mut writer: blocks::store::BlockWriter,
    mut parts: tokio::sync::mpsc::Receiver<Part>,
) -> Result<Option<blocks::Meta>, blocks::store::StoreError> {
    while let Some((data, last, _held)) = parts.blocking_recv() {
        writer.write(&data)?;
        if last {
            return writer.finish(None).map(Some);
        }
    }
    Ok(None)
}

pub async fn stat(ctx: &Ctx, req: BlockStatRequest) -> Result<Kind, ApiError> {
    let hash = hash_arg(&req.hash)?;
    ctx.store
        .stat(&hash)
        .map(|m| Kind::BlockStat(stat_of(&m)))
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                format!("block {} is not stored on this node", req.hash),
            )
        })
}

/// `block verify [HASH]`: re-reads blocks against their hashes, off the event loop; corrupt ones
/// are moved aside and the answer is FAILED with their list.
pub async fn verify(ctx: &Ctx, req: BlockVerifyRequest) -> Result<Kind, ApiError> {
    let one = if req.hash.is_empty() {
        None
    } else {
        Some(hash_arg(&req.hash)?)
    };
    let store = ctx.store.clone();
    let (checked, corrupt) = tokio::task::spawn_blocking(move || {
        let hashes = match one {
            Some(h) => vec![h],
            None => store.hashes(),
        };
        let (mut checked, mut corrupt, mut missing) = (0u32, Vec::new(), 0);
        for h in &hashes {
            match store.verify(h) {
                Ok(true) => checked += 1,
                Ok(false) => missing += 1,
                Err(e) => corrupt.push(e.to_string()),
            }
        }
        if one.is_some() && missing > 0 {
            corrupt.push("not stored on this node".into());
        }
        (checked, corrupt)
    })
    .await
    .map_err(io_error)?;
    if corrupt.is_empty() {
        return Ok(Kind::BlockVerify(BlockVerifyResponse { checked }));
    }
    let code = if corrupt == ["not stored on this node"] {
        Code::NotFound
    } else {
        Code::Failed
    };
    Err(ApiError::new(
        code,
        format!("{checked} intact; {}", corrupt.join("; ")),
    ))
}

/// Chunks of an `early` get held for a client slower than the fetch (1 MiB each).
const EARLY_AHEAD: usize = 4;

pub async fn get(ctx: &Ctx, req: BlockGetRequest) -> Outcome {
    let hash = match hash_arg(&req.hash) {
        Ok(h) => h,
        Err(e) => return Outcome::Reply(Err(e)),
    };
    let limit = match req.timeout_ms {
        0 => std::time::Duration::from_secs(300),
        ms => std::time::Duration::from_millis(ms),
    };
    let fetching = {
        let (node, store, me) = (ctx.node.clone(), ctx.store.clone(), ctx.peer_id);
        move |early| async move {
            match tokio::time::timeout(limit, fetch::fetch(&node, &store, me, &hash, early)).await {
                Ok(fetched) => fetched,
                Err(_) => Err(ApiError::new(
                    Code::Timeout,
                    "the block was not fetched in time; nothing was stored",
                )),
            }
        }
    };
    let store = ctx.store.clone();
    if !req.early {
        return match fetching(None).await {
            Ok(fetched) => Outcome::Stream(read_out(store, hash, fetched)),
            Err(e) => Outcome::Reply(Err(e)),
        };
    }
    // Early: the fetch runs as a task of its own and its chunks go to the client as they match
    // the manifest; the last answer says whether the whole matched the hash and was stored. A
    // client that goes away leaves the fetch to finish for the store.
    let (tx, rx) = tokio::sync::mpsc::channel(EARLY_AHEAD);
    let task = tokio::spawn(fetching(Some(tx)));
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((Kind::BlockData(BlockData { data }), rx))
    });
    let end = futures::stream::once(task).flat_map(move |fetched| match fetched {
        // Every chunk went out as it came: the whole matched and is stored.
        Ok(Ok(f)) if f.just_verified => {
            futures::stream::once(async move { Kind::BlockStat(stat_of(&f.meta)) }).boxed()
        }
        // Stored already, so nothing was fetched: read out as usual.
        Ok(Ok(f)) => read_out(store.clone(), hash, f),
        Ok(Err(e)) => futures::stream::once(async move {
            Kind::Error(p2pd_proto::control::Error {
                code: super::wire_code(e.code) as i32,
                message: e.message,
            })
        })
        .boxed(),
        Err(e) => futures::stream::once(async move {
            Kind::Error(error_of(&std::io::Error::other(e.to_string()).into()))
        })
        .boxed(),
    });
    Outcome::Stream(chunks.chain(end).boxed())
}

/// A stored block read out to the client.
fn read_out(
    store: blocks::BlockStore,
    hash: blocks::Hash,
    fetched: fetch::Fetched,
) -> futures::stream::BoxStream<'static, Kind> {
    // A block already in the store is checked as it streams: every chunk against the manifest,
    // the whole against the hash at the end; a mismatch quarantines the block and ends the
    // transfer with an error. One this request just fetched was verified byte by byte moments
    // ago, on its way into the store: it streams as it is.
    let fetch::Fetched {
        meta,
        just_verified,
    } = fetched;
    let out = ReadOut {
        store,
        hash,
        chunks: meta.chunks.len(),
        next: 0,
        stat: stat_of(&meta),
        meta: std::sync::Arc::new(meta),
        reading: None,
        whole: (!just_verified).then(<sha2::Sha256 as sha2::Digest>::new),
        done: false,
    };
    futures::stream::unfold(out, ReadOut::step).boxed()
}

/// What a chunk read off the event loop gives back: its bytes (checked against the manifest
/// when the whole is being checked too), and the whole's hash so far.
type ChunkRead = (
    Result<bytes::Bytes, blocks::store::StoreError>,
    Option<sha2::Sha256>,
);

/// A stored block read out to a client, one chunk ahead: the next chunk is read (and checked)
/// on a blocking thread while the one before it is written to the socket, and no thread is held
/// while the client is slow to read.
struct ReadOut {
    store: blocks::BlockStore,
    meta: std::sync::Arc<Meta>,
    hash: blocks::Hash,
    chunks: usize,
    /// The chunk `reading` reads.
    next: usize,
    stat: BlockStat,
    reading: Option<tokio::task::JoinHandle<ChunkRead>>,
    /// The whole's hash, once every chunk has been read (`None`: not checked, just verified).
    whole: Option<sha2::Sha256>,
    done: bool,
}

impl ReadOut {
    fn read(
        &self,
        index: usize,
        whole: Option<sha2::Sha256>,
    ) -> tokio::task::JoinHandle<ChunkRead> {
        let (store, meta, hash) = (self.store.clone(), self.meta.clone(), self.hash);
        tokio::task::spawn_blocking(move || {
            use sha2::Digest;
            let mut whole = whole;
            let read = match whole {
                Some(_) => store.read_verified(&meta, index),
                None => store.read_chunk(&hash, index).map_err(Into::into),
            };
            if let (Ok(data), Some(w)) = (&read, whole.as_mut()) {
                w.update(data);
            }
            (read, whole)
        })
    }

    /// The next response of the read-out, and what is left of it.
    async fn step(mut self) -> Option<(Kind, Self)> {
        use sha2::Digest;
        if self.done {
            return None;
        }
        if self.next == self.chunks {
            self.done = true;
            let Some(w) = self.whole.take() else {
                return Some((Kind::BlockStat(self.stat.clone()), self));
            };
            let got: blocks::Hash = w.finalize().into();
            let last = if got == self.hash {
                Kind::BlockStat(self.stat.clone())
            } else {
                let e = self
                    .store
                    .quarantine(&self.hash, "the chunks do not add up to the block's hash");
                Kind::Error(error_of(&e))
            };
            return Some((last, self));
        }
        let reading = match self.reading.take() {
            Some(r) => r,
            None => {
                let whole = self.whole.take();
                self.read(self.next, whole)
            }
        };
        let (read, whole) = match reading.await {
            Ok(r) => r,
            Err(e) => (Err(std::io::Error::other(e.to_string()).into()), None),
        };
        self.next += 1;
        match read {
            Ok(data) => {
                if self.next < self.chunks {
                    self.reading = Some(self.read(self.next, whole));
                } else {
                    self.whole = whole;
                }
                Some((Kind::BlockData(BlockData { data }), self))
            }
            Err(e) => {
                self.done = true;
                Some((Kind::Error(error_of(&e)), self))
            }
        }
    }
}
