//! p2pctl: the control client of p2pd. One request per run; a table for people or `--json` for
//! scripts. Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage error, 3 the daemon
//! could not be reached.

mod render;

use clap::{Parser, Subcommand};
use p2pctl::{Client, ClientError};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "p2pctl",
    version,
    about = "Control client for the p2pd peer-to-peer daemon"
)]
struct Cli {
    /// Control socket of the daemon [default: /run/p2pd/control.sock, or $XDG_RUNTIME_DIR/p2pd/control.sock in user mode]
    #[arg(long, global = true, env = "P2PCTL_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Machine-readable output with stable field names.
    #[arg(long, global = true)]
    json: bool,
    /// How long to wait for the daemon's answer.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Peer id, version, uptime, addresses, connections, routing table, NAT status, open-files limit.
    Status,
    /// Connected peers: id, address, direction, latency, agent, since.
    Peers {
        /// Also show each peer's protocols and listen addresses.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Dial a peer by multiaddr (with or without /p2p/ID) and wait until connected.
    Connect { multiaddr: String },
    /// Close every connection to a peer.
    Disconnect { peer_id: String },
}

const EXIT_DAEMON_ERROR: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("p2pctl: cannot start: {e}");
            return ExitCode::from(EXIT_DAEMON_ERROR);
        }
    };
    let socket = cli.socket.clone().unwrap_or_else(p2pctl::default_socket);
    match rt.block_on(async { tokio::time::timeout(cli.timeout, run(&cli, &socket)).await }) {
        Ok(Ok(out)) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("p2pctl: {e}");
            ExitCode::from(match e {
                ClientError::Unreachable(_) => EXIT_UNREACHABLE,
                _ => EXIT_DAEMON_ERROR,
            })
        }
        Err(_) => {
            eprintln!(
                "p2pctl: p2pd at {} did not answer within {}; it may be overloaded or stuck (check journalctl -u p2pd), or raise --timeout",
                socket.display(),
                humantime::format_duration(cli.timeout)
            );
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

fn json_line(v: serde_json::Value) -> String {
    format!("{v}\n")
}

async fn run(cli: &Cli, socket: &std::path::Path) -> Result<String, ClientError> {
    let mut client = Client::connect(socket).await?;
    Ok(match &cli.command {
        Cmd::Status => {
            let s = client.status().await?;
            if cli.json {
                json_line(render::status_json(&s))
            } else {
                render::status_text(&s)
            }
        }
        Cmd::Peers { verbose } => {
            let p = client.peers(*verbose).await?;
            if cli.json {
                json_line(render::peers_json(&p, *verbose))
            } else {
                render::peers_text(&p, *verbose)
            }
        }
        Cmd::Connect { multiaddr } => {
            let ms = cli
                .timeout
                .saturating_sub(Duration::from_secs(1))
                .as_millis()
                .min(u128::from(u64::MAX)) as u64;
            let c = client.connect_peer(multiaddr, ms).await?;
            if cli.json {
                json_line(serde_json::json!({"peer_id": c.peer_id, "address": c.address}))
            } else {
                format!("connected to {} at {}\n", c.peer_id, c.address)
            }
        }
        Cmd::Disconnect { peer_id } => {
            client.disconnect_peer(peer_id).await?;
            if cli.json {
                json_line(serde_json::json!({"disconnected": peer_id}))
            } else {
                format!("disconnected {peer_id}\n")
            }
        }
    })
}
