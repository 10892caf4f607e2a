//! The `p2pd` command line. The man page and shell completions are generated from these
//! definitions, so they are the single source of truth for flags.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "p2pd",
    version,
    about = "A hardened, systemd-native peer-to-peer daemon",
    long_about = "p2pd runs a libp2p node (TCP and QUIC, Noise and TLS 1.3, Kademlia, Gossipsub, relay, \
hole punching, AutoNAT) and serves a control socket for p2pctl and local applications.\n\n\
Started by the system service manager (p2pd.service) or running as the p2pd user it is a \
system node: /etc/p2pd/p2pd.toml, /var/lib/p2pd, /run/p2pd/control.sock, ports 4001 and 9100. \
Anyone else (any uid, package installed or not) gets a user-mode node: data in \
~/.local/state/p2pd, the control socket in $XDG_RUNTIME_DIR/p2pd, listening on 127.0.0.1 with \
OS-chosen ports; --mode chooses explicitly."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run(RunArgs),
    /// Validate the configuration and print the effective config as TOML; exit 0 if valid, 78 if not.
    CheckConfig(RunArgs),
    /// Exit 0 if /health/ready says ready, 1 otherwise (for container HEALTHCHECKs).
    Health {
        /// URL of the readiness endpoint; a base URL (http://HOST:PORT) means its /health/ready.
        #[arg(long, default_value = "http://127.0.0.1:9100/health/ready")]
        url: String,
    },
    /// Accept on the control sockets passed by the service manager and hand each connection,
    /// with its caller's real uid, gid and pid, to the daemon (p2pd-gate.service; the daemon
    /// itself runs in a private user namespace, where other users' uids are not visible).
    Gate {
        /// The daemon's hand-over socket (p2pd-handoff.socket).
        #[arg(long, value_name = "PATH", default_value = "/run/p2pd/handoff.sock")]
        handoff: PathBuf,
    },
    /// Create a new ed25519 identity and print its PeerId.
    Keygen {
        /// Where to write the key (default: identity.key in the data dir). Never overwrites.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Data directory whose identity.key to create when --out is not given.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    System,
    User,
}

impl ModeArg {
    /// The mode asked for, or the detected one.
    pub fn or_detect(arg: Option<ModeArg>) -> p2pd_proto::paths::Mode {
        use p2pd_proto::paths::Mode;
        match arg {
            Some(ModeArg::System) => Mode::System,
            Some(ModeArg::User) => Mode::User,
            None => Mode::detect(),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Auto,
    Journald,
    Json,
    Text,
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Config file (default: /etc/p2pd/p2pd.toml in system mode, $XDG_CONFIG_HOME/p2pd/p2pd.toml in user mode).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for the identity, routing table, bans and blocks (relative: to the working
    /// directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path of the control socket (relative: to the working directory).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Listen multiaddr (repeatable); replaces network.listen.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Bootstrap peer multiaddr with /p2p/ID (repeatable); replaces network.bootstrap_peers.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Address of /metrics and /health/* (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// System or user mode (default: system when started by systemd or run as the p2pd user).
    #[arg(long, value_enum, global = true)]
    pub mode: Option<ModeArg>,
    /// Log format: journald when stderr is the journal, text on a terminal, or json.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

impl RunArgs {
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            control_socket: self.control_socket.clone(),
            listen: self.listen.clone(),
            bootstrap: self.bootstrap.clone(),
            metrics_addr: self.metrics_addr.clone(),
            log_format: self.log_format.map(|f| {
                f.to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            }),
        }
    }
}
