//! The p2pctl command line, defined once: the CLI parses it, and the man page and shell
//! completions are generated from it.

use crate::{BanTarget, Multiaddr, PeerId, PeerRef};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "p2pctl",
    version,
    about = "Control client for the p2pd peer-to-peer daemon",
    after_help = "Exit codes: 0 ok; 1 the daemon answered with an error (or a diag check failed); \
2 usage error; 3 the daemon could not be reached (the message names the socket tried and how to \
get access: root, or membership of the group p2pd)."
)]
pub struct Cli {
    /// Control socket of the daemon [default: your own user-mode node's $XDG_RUNTIME_DIR/p2pd/control.sock if it runs, else /run/p2pd/control.sock]
    #[arg(long, global = true, env = "P2PCTL_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Machine-readable output: the answer's control-API message as one JSON object per line (proto field names, bytes as base64; a stable contract).
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for the daemon's answer.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Peer id, version, uptime, addresses, connections, routing table, NAT status, open-files limit.
    Status,
    /// Connected peers: id, address, direction, latency, agent, since.
    Peers {
        /// Also show each peer's protocols and listen addresses.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Dial a peer by multiaddr (with or without /p2p/ID) and wait until connected.
    Connect { multiaddr: Multiaddr },
    /// Close every connection to a peer.
    Disconnect { peer_id: PeerId },
    /// Publish/subscribe over Gossipsub.
    #[command(subcommand)]
    Pubsub(PubsubCmd),
    /// The Kademlia DHT: records, provider records and peer lookup.
    #[command(subcommand)]
    Dht(DhtCmd),
    /// Content-addressed blocks (key = SHA-256), exchanged with verification.
    #[command(subcommand)]
    Block(BlockCmd),
    /// Stream forwarding between libp2p protocols and local applications.
    #[command(subcommand)]
    Stream(StreamCmd),
    /// Ban a peer id, an IP address or a CIDR (or every one listed in a file): its connections
    /// close and it is refused.
    Ban {
        /// A peer id (12D3KooW...), an IP address (192.0.2.7) or a CIDR (10.0.0.0/8).
        #[arg(required_unless_present = "from_file", conflicts_with = "from_file")]
        target: Option<BanTarget>,
        /// Ban every target listed in FILE ("-": standard input), one per line; "#" starts a
        /// comment, blank lines are skipped. Prints how many were banned and which lines were
        /// not, and why.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Lift the ban after this long (e.g. 1h, 30m); without it the ban is permanent.
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Why, for the record (shown by `p2pctl bans` and logged).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a ban.
    Unban {
        /// The peer id, IP or CIDR as `p2pctl bans` lists it.
        target: BanTarget,
    },
    /// Current bans: target, reason, created, expires, who created it.
    Bans,
    /// Trusted peers: bypass connection limits, larger rate limits, kept connected.
    #[command(subcommand)]
    Trust(TrustCmd),
    /// Health checks with pass/warn/fail, the measured value, and the fix for each problem.
    Diag,
    /// Re-read the config file and apply it (as SIGHUP); waits until applied or refused.
    Reload,
    /// Change the log filter now (e.g. "info,libp2p_kad=debug") until the next reload.
    LogLevel { filter: String },
    /// Every limit with its value, current usage and percent; `limits set NAME VALUE` changes one.
    Limits {
        #[command(subcommand)]
        set: Option<LimitsCmd>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Trust a peer (peer id, or multiaddr ending in /p2p/ID to redial it there).
    Add { target: PeerRef },
    /// Stop trusting a peer (peer id, or the multiaddr it was added with).
    Rm { target: PeerRef },
    /// List trusted peers.
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum LimitsCmd {
    /// Change a limit now (until the next reload or restart).
    Set {
        /// The limit's name as `p2pctl limits` lists it (e.g. max_inbound).
        name: String,
        /// The new value, in the limit's unit (a count, a duration like 30s, a size like 256MiB).
        value: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StreamCmd {
    /// Open a stream to PEER_ID for PROTOCOL and pipe standard input and output through it.
    Open { peer_id: PeerId, protocol: String },
    /// Pipe inbound streams for PROTOCOL to the Unix socket SOCKET (absolute path you own).
    Serve {
        protocol: String,
        #[arg(value_name = "SOCKET")]
        app_socket: PathBuf,
    },
    /// Registered protocols, their sockets and stream counts.
    Ls,
    /// Stop serving PROTOCOL.
    Rm { protocol: String },
}

#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// Store FILE (or standard input with "-") and announce it; prints its hash.
    Put {
        file: String,
        /// Expire the block after this long (e.g. 1h); default never.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Fetch a block (from providers found in the DHT if needed), verified before it is stored.
    /// Output that can take it back (-o FILE, a regular file, /dev/null) gets it while it is
    /// fetched, and loses it again if the whole fails its hash; a pipe or terminal gets only
    /// bytes already checked.
    Get {
        hash: String,
        /// Write to FILE instead of standard output (atomically: complete or not at all).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Size, chunks, creation and expiry of a stored block.
    Stat { hash: String },
    /// Re-read HASH (default: every stored block) against its hash; corrupt blocks are moved
    /// aside and listed, and the exit code is 1. Blocks are also checked on every read.
    Verify { hash: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum PubsubCmd {
    /// Topics this node is subscribed to.
    Topics,
    /// Peers known to be subscribed to TOPIC.
    Peers { topic: String },
    /// Publish DATA (or standard input with "-") to TOPIC, signed by this node.
    Pub {
        topic: String,
        /// The message, or "-" for standard input.
        data: String,
        /// Publish each line of DATA (or of standard input) as its own message, pipelined (for
        /// bulk publishing: many times the rate of one `pubsub pub` per message).
        #[arg(long)]
        lines: bool,
    },
    /// Print messages on TOPIC until interrupted: sender, sequence number, data.
    Sub { topic: String },
}

#[derive(Debug, Subcommand)]
pub enum DhtCmd {
    /// Find the addresses of a peer.
    FindPeer {
        /// The peer id to look up (12D3KooW...).
        peer_id: PeerId,
    },
    /// Get the value stored under KEY (printed raw; --json for details).
    Get {
        /// The record's key (any text; the DHT stores it as bytes).
        key: String,
    },
    /// Store VALUE (or standard input with "-") under KEY.
    Put {
        /// The record's key (any text; the DHT stores it as bytes).
        key: String,
        /// The value, or "-" to read it from standard input.
        value: String,
    },
    /// Announce this node as a provider of content, as other libp2p implementations do.
    Provide {
        /// A CID (v0 Qm..., or v1 bafy...) or a multihash in hex; keyed by its multihash.
        key: String,
        /// Use KEY's bytes as they are (a raw key, not a content id).
        #[arg(long)]
        raw: bool,
    },
    /// Peers that provide content (found with other implementations' records too).
    Providers {
        /// A CID (v0 Qm..., or v1 bafy...) or a multihash in hex; keyed by its multihash.
        key: String,
        /// Use KEY's bytes as they are (a raw key, not a content id).
        #[arg(long)]
        raw: bool,
    },
    /// The peers closest to KEY.
    Closest {
        /// The record's key (any text; the DHT stores it as bytes).
        key: String,
    },
}
