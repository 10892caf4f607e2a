//! The wire contract of p2pd: the control API spoken over the Unix socket, the messages peers
//! exchange, the frame codec and the default locations both sides agree on.

pub mod frame;
pub mod http;
pub mod json;
pub mod limits;
pub mod paths;
pub mod target;

/// Control API messages (daemon <-> local clients).
#[allow(clippy::all)]
pub mod control {
    include!(concat!(env!("OUT_DIR"), "/p2pd.control.rs"));
}

/// Peer-to-peer messages of p2pd's own protocols.
#[allow(clippy::all)]
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/p2pd.wire.rs"));
}

/// Version of the control protocol spoken by this build. Clients and daemon must agree on it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts on the control socket.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
