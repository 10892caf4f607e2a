//! Commands the rest of the daemon sends to the node's event loop, and the handle that sends
//! them. Each command carries the sender for its answer; the loop never blocks on a caller.

use p2pd_proto::control::{self, ErrorCode};
use tokio::sync::{mpsc, oneshot};

/// An error the control API reports: a code for programs, a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

pub enum Command {
    Status(Reply<control::StatusResponse>),
    Peers(Reply<control::PeersResponse>),
    Connect {
        addr: libp2p::Multiaddr,
        reply: Reply<control::ConnectResponse>,
    },
    Disconnect {
        peer: libp2p::PeerId,
        reply: Reply<()>,
    },
    PubsubTopics(Reply<control::PubsubTopicsResponse>),
    PubsubPeers {
        topic: String,
        reply: Reply<control::PeerList>,
    },
    PubsubPublish {
        topic: String,
        data: Vec<u8>,
        reply: Reply<control::PubsubPublishResponse>,
    },
    PubsubSubscribe {
        topic: String,
        reply: Reply<super::pubsub::SubscriberRx>,
    },
    Dht {
        query: DhtQuery,
        reply: Reply<control::response::Kind>,
    },
    /// Ask a peer for a block manifest or chunk.
    BlockRequest {
        peer: libp2p::PeerId,
        request: p2pd_proto::wire::BlockRequest,
        reply: Reply<p2pd_proto::wire::BlockResponse>,
    },
    Ban {
        target: crate::policy::bans::BanTarget,
        duration: Option<std::time::Duration>,
        reason: String,
        by: String,
        reply: Reply<control::BanEntry>,
    },
    Unban {
        target: crate::policy::bans::BanTarget,
        by: String,
        reply: Reply<()>,
    },
    Bans(Reply<control::BanList>),
    Trust {
        action: TrustAction,
        reply: Reply<control::TrustList>,
    },
    Limits(Reply<control::LimitList>),
    LimitsSet {
        name: String,
        value: String,
        reply: Reply<control::LimitList>,
    },
    /// Apply a re-read, validated config (reload).
    ApplyConfig {
        config: Box<crate::config::Config>,
        /// What an operator edited in bans.json (read off the event loop).
        bans: crate::policy::store::Edits,
        reply: Reply<control::ReloadResponse>,
    },
    /// Internal: the reloader told the service manager about the reload; STATUS= goes back to
    /// the node's summary at the next tick.
    StatusChanged,
    /// Internal: a ban-list write failed; go back to the list on disk.
    RevertBans(crate::policy::store::Revert),
    /// Internal: the answer to an inbound block request, prepared and sealed off the event loop.
    BlockRespond {
        channel: libp2p::request_response::ResponseChannel<p2pd_proto::wire::SignedMessage>,
        response: p2pd_proto::wire::SignedMessage,
    },
    /// Internal: a peer sent something provably invalid (found off the event loop).
    PunishInvalid {
        peer: libp2p::PeerId,
        reason: &'static str,
    },
}

/// A DHT operation; keys and values are opaque bytes.
#[derive(Debug, Clone)]
pub enum DhtQuery {
    FindPeer(libp2p::PeerId),
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Provide(Vec<u8>),
    Providers(Vec<u8>),
    Closest(Vec<u8>),
}

/// A cheap, cloneable way to talk to the node.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
}

impl NodeHandle {
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        NodeHandle { tx }
    }

    /// Sends a command that carries no reply; false when the node is gone.
    pub fn try_tell(&self, cmd: Command) -> bool {
        self.tx.try_send(cmd).is_ok()
    }

    /// Sends a command that carries no reply, waiting for room; false when the node is gone.
    pub async fn tell(&self, cmd: Command) -> bool {
        self.tx.send(cmd).await.is_ok()
    }

    /// Sends a command built around a fresh reply channel and waits for the answer.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())?
    }
}

fn stopping() -> ApiError {
    ApiError::new(ErrorCode::Unavailable, "the node is shutting down")
}

#[derive(Debug, Clone)]
pub enum TrustAction {
    List,
    Add(crate::config::values::PeerRef),
    Remove(libp2p::PeerId),
}
