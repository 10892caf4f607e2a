//! The largest value the daemon accepts in each field of a control request. The daemon checks
//! these before it parses anything or logs it; a client may check them first to say so sooner.

/// A peer id (base58; an Ed25519 one is 52 characters, an RSA one 46).
pub const PEER_ID: usize = 128;
/// A multiaddr as text.
pub const MULTIADDR: usize = 1024;
/// A ban target: a peer id, an IP address or a CIDR.
pub const BAN_TARGET: usize = PEER_ID;
/// A pub/sub topic name.
pub const TOPIC: usize = 1024;
/// A DHT key.
pub const DHT_KEY: usize = 1024;
/// A DHT value (Kademlia's record store refuses bigger ones).
pub const DHT_VALUE: usize = 65 * 1024;
/// The reason given for a ban.
pub const REASON: usize = 1024;
/// A libp2p protocol name for stream forwarding.
pub const PROTOCOL: usize = 256;
/// A filesystem path (PATH_MAX).
pub const PATH: usize = 4096;
/// A block hash in hex.
pub const HASH: usize = 64;
/// A limit's name, and its value as text.
pub const LIMIT_NAME: usize = 64;
pub const LIMIT_VALUE: usize = 64;
/// A log filter directive list.
pub const LOG_FILTER: usize = 4096;
/// A pub/sub message (Gossipsub's own limit).
pub const MESSAGE: usize = 1 << 20;
/// Targets in one ban import request (a client sends a long blocklist in several).
pub const IMPORT_TARGETS: usize = 10_000;
/// Bans in one answer to `bans` (a larger list comes in pages).
pub const BANS_PAGE: usize = 10_000;
