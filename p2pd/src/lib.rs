//! p2pd: a hardened, systemd-native peer-to-peer daemon.
//!
//! The binary is a thin wrapper over [`daemon::run`]; tests and tools drive the library.
//! Data flow: control socket connections, signals and timers send [`node::Command`]s to the
//! node's single event loop, which owns the libp2p swarm (see ARCHITECTURE.md).

pub mod addr;
pub mod behaviour;
pub mod blocks;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod gate;
pub mod health;
pub mod http;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod persist;
pub mod policy;
pub mod ports;
pub mod quic;
pub mod reload;
pub mod replay;
pub mod rlimit;
pub mod sd;
pub mod slim;
pub mod streams;
pub mod tls;
pub mod transport;
pub mod udp;
