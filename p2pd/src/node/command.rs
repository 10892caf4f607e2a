//! The handle the rest of the daemon uses to reach the node's event loop: each request is a
//! closure run on the loop, which answers through its reply channel; the loop never blocks on a
//! caller.

use tokio::sync::{mpsc, oneshot};

/// What kind of failure an answer is, for programs; `control/` maps it to the API's
/// `ErrorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed or names something invalid.
    BadRequest,
    /// The named peer, key or object does not exist.
    NotFound,
    /// The operation did not finish in time.
    Timeout,
    /// Shutting down, or overloaded: try again later.
    Unavailable,
    /// The operation failed on the network side or on disk.
    Failed,
    /// A bug or an unexpected condition.
    Internal,
    /// The caller may not do this.
    PermissionDenied,
    /// A request kind this daemon does not know.
    UnknownRequest,
}

/// An error for the caller: a code for programs, a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
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

/// Work for the event loop: a closure run there with the node, for a control request or for a
/// result finished off the loop. There is no table of commands: the control module of each
/// request says which node method answers it.
pub struct Command(Box<dyn FnOnce(&mut super::Node) + Send>);

impl Command {
    pub(super) fn run(self, node: &mut super::Node) {
        (self.0)(node)
    }
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

    /// Runs `f` on the loop without waiting for it (a result finished elsewhere); false when
    /// the node is gone or its queue is full.
    pub fn try_tell(&self, f: impl FnOnce(&mut super::Node) + Send + 'static) -> bool {
        self.tx.try_send(Command(Box::new(f))).is_ok()
    }

    /// Runs `f` on the loop, waiting for room in its queue; false when the node is gone.
    pub async fn tell(&self, f: impl FnOnce(&mut super::Node) + Send + 'static) -> bool {
        self.tx.send(Command(Box::new(f))).await.is_ok()
    }

    /// Runs `f` on the loop with a fresh reply channel (for answers that complete later, from
    /// swarm events) and waits for the answer.
    pub async fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut super::Node, Reply<T>) + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        if !self.tell(move |node| f(node, reply)).await {
            return Err(stopping());
        }
        rx.await.map_err(|_| stopping())?
    }

    /// Runs `f` on the loop and waits for what it returns.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut super::Node) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.ask(move |node, reply| {
            let _ = reply.send(f(node));
        })
        .await
    }
}

fn stopping() -> ApiError {
    ApiError::new(Code::Unavailable, "the node is shutting down")
}

#[derive(Debug, Clone)]
pub enum TrustAction {
    List,
    Add(crate::config::values::PeerRef),
    Remove(libp2p::PeerId),
}
