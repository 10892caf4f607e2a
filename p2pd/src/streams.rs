//! Stream forwarding for local applications (go-libp2p-daemon's STREAM_OPEN/STREAM_HANDLER):
//! inbound libp2p streams for a registered protocol are piped to the application's Unix socket,
//! and an application can open an outbound stream and use its control connection as the pipe.
//! All of it runs beside the node loop through `libp2p_stream::Control`.

use crate::node::ApiError;
use crate::node::Code;
use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// Concurrent forwarded streams per protocol; more are reset.
const MAX_ACTIVE: u32 = 256;
/// Protocols of the daemon itself or of libp2p, which applications may not take over.
const RESERVED: [&str; 4] = ["/ipfs/", "/libp2p/", "/meshsub/", "/p2pd/"];

#[derive(Default)]
struct Stats {
    active: AtomicU32,
    total: AtomicU64,
}

struct Handler {
    socket: PathBuf,
    owner_uid: u32,
    stats: Arc<Stats>,
    /// Always `Some` until removed.
    task: Option<JoinHandle<()>>,
}

impl Drop for Handler {
    fn drop(&mut self) {
        // Dropping the task drops its `IncomingStreams`, which unregisters the protocol.
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A served protocol, as `stream ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerView {
    pub protocol: String,
    pub socket: PathBuf,
    pub active_streams: u32,
    pub total_streams: u64,
    pub owner_uid: u32,
}

pub struct Forwarder {
    control: libp2p_stream::Control,
    handlers: Mutex<BTreeMap<String, Handler>>,
    /// A forwarded stream with no bytes either way for this long is closed.
    idle: Duration,
}

fn bad(msg: String) -> ApiError {
    ApiError::new(Code::BadRequest, msg)
}

/// Checks that `name` is a protocol an application may use.
pub fn protocol(name: &str) -> Result<StreamProtocol, ApiError> {
    if RESERVED.iter().any(|r| name.starts_with(r)) {
        return Err(bad(format!(
            "{name} is reserved (protocols under {} belong to the daemon)",
            RESERVED.join(", ")
        )));
    }
    if name.len() > 256 || name.chars().any(char::is_whitespace) {
        return Err(bad(format!("{name:?} is not a valid protocol name")));
    }
    StreamProtocol::try_from_owned(name.to_string()).map_err(|_| {
        bad(format!(
            "{name:?} is not a protocol name; it must start with / (e.g. /myapp/echo/1.0.0)"
        ))
    })
}

impl Forwarder {
    pub fn new(control: libp2p_stream::Control, idle: Duration) -> Self {
        Forwarder {
            control,
            handlers: Mutex::new(BTreeMap::new()),
            idle,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    fn handlers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Handler>> {
        self.handlers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `name`: inbound streams go to `socket`, which must be the caller's own.
    pub fn serve(&self, name: &str, socket: PathBuf, caller_uid: u32) -> Result<(), ApiError> {
        let proto = protocol(name)?;
        if !socket.is_absolute() {
            return Err(bad(format!("{} is not an absolute path", socket.display())));
        }
        let meta = std::fs::metadata(&socket).map_err(|e| {
            bad(format!(
                "cannot use {}: {e}; start the application's listener first",
                socket.display()
            ))
        })?;
        if caller_uid != 0
            && caller_uid != nix::unistd::geteuid().as_raw()
            && meta.uid() != caller_uid
        {
            return Err(ApiError::new(
                Code::PermissionDenied,
                format!(
                    "{} does not belong to you (uid {caller_uid}); serve a socket you own",
                    socket.display()
                ),
            ));
        }
        let mut handlers = self.handlers();
        if handlers.contains_key(name) {
            return Err(bad(format!(
                "{name} is already served; remove it first with `p2pctl stream rm {name}`"
            )));
        }
        let incoming = self
            .control
            .clone()
            .accept(proto)
            .map_err(|_| bad(format!("{name} is already registered")))?;
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(pipe_inbound(
            incoming,
            socket.clone(),
            name.to_string(),
            stats.clone(),
            self.idle,
        ));
        handlers.insert(
            name.to_string(),
            Handler {
                socket,
                owner_uid: caller_uid,
                stats,
                task: Some(task),
            },
        );
        Ok(())
    }

    /// Stops serving `name`; returns once the protocol is unregistered, so it can be served
    /// again at once.
    pub async fn remove(&self, name: &str) -> Result<(), ApiError> {
        let removed = self.handlers().remove(name);
        let mut handler = removed
            .ok_or_else(|| ApiError::new(Code::NotFound, format!("{name} is not served")))?;
        if let Some(task) = handler.task.take() {
            task.abort();
            // An aborted task's future (holding the registration) is dropped by the runtime
            // soon after, not here: wait for it.
            let _ = task.await;
        }
        Ok(())
    }

    /// The served protocols, their sockets and stream counts.
    pub fn list(&self) -> Vec<HandlerView> {
        self.handlers()
            .iter()
            .map(|(p, h)| HandlerView {
                protocol: p.clone(),
                socket: h.socket.clone(),
                active_streams: h.stats.active.load(Ordering::Relaxed),
                total_streams: h.stats.total.load(Ordering::Relaxed),
                owner_uid: h.owner_uid,
            })
            .collect()
    }

    /// Opens an outbound stream (dialling the peer if needed).
    pub async fn open(&self, peer: PeerId, name: &str) -> Result<libp2p::Stream, ApiError> {
        let proto = protocol(name)?;
        self.control
            .clone()
            .open_stream(peer, proto)
            .await
            .map_err(|e| ApiError::new(Code::Failed, format!("cannot open {name} to {peer}: {e}")))
    }
}

async fn pipe_inbound(
    mut incoming: libp2p_stream::IncomingStreams,
    socket: PathBuf,
    name: String,
    stats: Arc<Stats>,
    idle: Duration,
) {
    while let Some((peer, stream)) = incoming.next().await {
        if stats.active.load(Ordering::Relaxed) >= MAX_ACTIVE {
            tracing::warn!(protocol = %name, peer_id = %peer, "too many forwarded streams; resetting a new one");
            continue;
        }
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.total.fetch_add(1, Ordering::Relaxed);
        let (socket, name, stats) = (socket.clone(), name.clone(), stats.clone());
        tokio::spawn(async move {
            match tokio::net::UnixStream::connect(&socket).await {
                Ok(mut app) => {
                    tracing::debug!(protocol = %name, peer_id = %peer, "forwarding an inbound stream");
                    pipe(&mut app, stream.compat(), idle).await;
                }
                Err(e) => {
                    tracing::warn!(protocol = %name, socket = %socket.display(), error = %e, "cannot reach the application's socket; stream dropped")
                }
            }
            stats.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Pipes an opened stream through a control connection until both directions are closed or
/// nothing moves for `idle`.
pub async fn splice(mut client: tokio::net::UnixStream, stream: libp2p::Stream, idle: Duration) {
    pipe(&mut client, stream.compat(), idle).await;
}

/// Copies both ways until both directions end, or until no byte moves for `idle`.
async fn pipe<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let activity = Notify::new();
    let both = async {
        tokio::join!(
            copy_one_way(&mut ar, &mut bw, &activity),
            copy_one_way(&mut br, &mut aw, &activity)
        )
    };
    let watchdog = async {
        while tokio::time::timeout(idle, activity.notified())
            .await
            .is_ok()
        {}
    };
    tokio::select! {
        _ = both => {}
        _ = watchdog => tracing::debug!(idle = ?idle, "closed an idle forwarded stream"),
    }
}

async fn copy_one_way<R, W>(r: &mut R, w: &mut W, activity: &Notify)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // 64 KiB: four yamux frames (or a QUIC send) per read, at 128 KiB per forwarded stream.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
        activity.notify_one();
    }
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarder() -> Forwarder {
        let behaviour = libp2p_stream::Behaviour::new();
        Forwarder::new(behaviour.new_control(), Duration::from_secs(60))
    }

    #[test]
    fn protocol_names_are_checked_and_the_daemons_are_reserved() {
        assert!(protocol("/myapp/echo/1.0.0").is_ok());
        for reserved in [
            "/ipfs/bitswap/1.2.0",
            "/libp2p/circuit/relay/0.2.0/hop",
            "/p2pd/block/1.0.0",
        ] {
            assert!(protocol(reserved).unwrap_err().message.contains("reserved"));
        }
        for bad in ["echo", "/with space", &format!("/{}", "x".repeat(300))] {
            assert_eq!(protocol(bad).unwrap_err().code, Code::BadRequest, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_protocol_is_served_once_listed_and_removed() {
        let f = forwarder();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("app.sock");
        let _app = tokio::net::UnixListener::bind(&socket).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        f.serve("/myapp/echo/1.0.0", socket.clone(), me).unwrap();
        let again = f
            .serve("/myapp/echo/1.0.0", socket.clone(), me)
            .unwrap_err();
        assert!(again.message.contains("already served"), "{again}");
        assert_eq!(
            f.list(),
            [HandlerView {
                protocol: "/myapp/echo/1.0.0".into(),
                socket: socket.clone(),
                active_streams: 0,
                total_streams: 0,
                owner_uid: me,
            }]
        );
        f.remove("/myapp/echo/1.0.0").await.unwrap();
        assert!(f.list().is_empty());
        assert_eq!(
            f.remove("/myapp/echo/1.0.0").await.unwrap_err().code,
            Code::NotFound
        );
        // Removed means free: it can be served again.
        f.serve("/myapp/echo/1.0.0", socket, me).unwrap();
    }

    #[tokio::test]
    async fn only_an_existing_absolute_socket_can_be_served() {
        let f = forwarder();
        let e = f.serve("/a/1", "rel.sock".into(), 0).unwrap_err();
        assert!(e.message.contains("not an absolute path"), "{e}");
        let e = f
            .serve("/a/1", "/nonexistent/p2pd-test.sock".into(), 0)
            .unwrap_err();
        assert!(
            e.message.contains("start the application's listener first"),
            "{e}"
        );
    }
}
