//! p2pctl: the control client of p2pd. One request per run; a table for people or `--json` for
//! scripts. Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage error, 3 the daemon
//! could not be reached.

mod diag;
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
    /// Ban a peer id, an IP address or a CIDR: its connections close and it is refused.
    Ban {
        target: String,
        /// Lift the ban after this long (e.g. 1h, 30m); without it the ban is permanent.
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Why, for the record (shown by `p2pctl bans` and logged).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a ban.
    Unban { target: String },
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
enum TrustCmd {
    /// Trust a peer (peer id, or multiaddr ending in /p2p/ID to redial it there).
    Add { target: String },
    /// Stop trusting a peer.
    Rm { target: String },
    /// List trusted peers.
    Ls,
}

#[derive(Debug, Subcommand)]
enum LimitsCmd {
    /// Change a limit now (until the next reload or restart).
    Set { name: String, value: String },
}

#[derive(Debug, Subcommand)]
enum StreamCmd {
    /// Open a stream to PEER_ID for PROTOCOL and pipe standard input and output through it.
    Open { peer_id: String, protocol: String },
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
enum BlockCmd {
    /// Store FILE (or standard input with "-") and announce it; prints its hash.
    Put {
        file: String,
        /// Expire the block after this long (e.g. 1h); default never.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Fetch a block (from providers found in the DHT if needed), verified before it is stored.
    Get {
        hash: String,
        /// Write to FILE instead of standard output (atomically: complete or not at all).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Size, chunks, creation and expiry of a stored block.
    Stat { hash: String },
}

#[derive(Debug, Subcommand)]
enum PubsubCmd {
    /// Topics this node is subscribed to.
    Topics,
    /// Peers known to be subscribed to TOPIC.
    Peers { topic: String },
    /// Publish DATA (or standard input with "-") to TOPIC, signed by this node.
    Pub { topic: String, data: String },
    /// Print messages on TOPIC until interrupted: sender, sequence number, data.
    Sub { topic: String },
}

#[derive(Debug, Subcommand)]
enum DhtCmd {
    /// Find the addresses of a peer.
    FindPeer { peer_id: String },
    /// Get the value stored under KEY (printed raw; --json for details).
    Get { key: String },
    /// Store VALUE (or standard input with "-") under KEY.
    Put { key: String, value: String },
    /// Announce this node as a provider of KEY.
    Provide { key: String },
    /// Peers that provide KEY.
    Providers { key: String },
    /// The peers closest to KEY.
    Closest { key: String },
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
    let streaming = matches!(
        cli.command,
        Cmd::Pubsub(PubsubCmd::Sub { .. }) | Cmd::Block(_) | Cmd::Stream(StreamCmd::Open { .. })
    );
    let limit = if streaming {
        Duration::MAX
    } else {
        cli.timeout
    };
    let result = rt.block_on(async { tokio::time::timeout(limit, run(&cli, &socket)).await });
    // A read of standard input may still be blocked (stream open): do not wait for it.
    rt.shutdown_background();
    match result {
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

/// The argument itself, or all of standard input for "-".
fn arg_bytes(arg: &str) -> Result<Vec<u8>, ClientError> {
    if arg != "-" {
        return Ok(arg.as_bytes().to_vec());
    }
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
    Ok(buf)
}

fn peer_lines(peers: &[String], json: bool) -> String {
    if json {
        json_line(serde_json::json!(peers))
    } else if peers.is_empty() {
        "none\n".into()
    } else {
        peers.iter().map(|p| format!("{p}\n")).collect()
    }
}

fn ms(d: Duration) -> u64 {
    d.saturating_sub(Duration::from_secs(1))
        .as_millis()
        .min(u128::from(u64::MAX)) as u64
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
        Cmd::Pubsub(cmd) => pubsub(cli, client, cmd).await?,
        Cmd::Dht(cmd) => dht(cli, client, cmd).await?,
        Cmd::Block(cmd) => block(cli, client, cmd).await?,
        Cmd::Stream(cmd) => stream(cli, client, cmd).await?,
        Cmd::Ban {
            target,
            duration,
            reason,
        } => {
            let secs = duration.map(|d| d.as_secs().max(1)).unwrap_or(0);
            let e = client
                .ban(target, secs, reason.as_deref().unwrap_or(""))
                .await?;
            if cli.json {
                json_line(render::ban_json(&e))
            } else if e.expires_unix == 0 {
                format!("banned {} permanently\n", e.target)
            } else {
                format!(
                    "banned {} until {}\n",
                    e.target,
                    render::when(e.expires_unix)
                )
            }
        }
        Cmd::Unban { target } => {
            client.unban(target).await?;
            if cli.json {
                json_line(serde_json::json!({"unbanned": target}))
            } else {
                format!("unbanned {target}\n")
            }
        }
        Cmd::Bans => render::bans(&client.bans().await?, cli.json),
        Cmd::Diag => {
            let (report, failed) = diag::run(&mut client, cli.json).await?;
            if failed {
                // The report is the answer; the exit code says a check failed.
                print!("{report}");
                return Err(ClientError::Daemon {
                    code: p2pctl::control::ErrorCode::Failed,
                    message: "some checks fail: see the fixes above".into(),
                });
            }
            report
        }
        Cmd::Reload => {
            let r = client.reload().await?;
            if cli.json {
                json_line(
                    serde_json::json!({"message": r.message, "restart_needed": r.restart_needed}),
                )
            } else if r.restart_needed.is_empty() {
                format!("reloaded; {}\n", r.message)
            } else {
                format!(
                    "reloaded; {}\nthese changes need a restart: {}\n",
                    r.message,
                    r.restart_needed.join(", ")
                )
            }
        }
        Cmd::LogLevel { filter } => {
            client.log_level(filter).await?;
            if cli.json {
                json_line(serde_json::json!({"filter": filter}))
            } else {
                format!("log filter is now {filter}\n")
            }
        }
        Cmd::Trust(cmd) => {
            use p2pctl::control::trust_request::Action;
            let (action, target) = match cmd {
                TrustCmd::Add { target } => (Action::Add, target.as_str()),
                TrustCmd::Rm { target } => (Action::Remove, target.as_str()),
                TrustCmd::Ls => (Action::List, ""),
            };
            render::trusted(&client.trust(action, target).await?, cli.json)
        }
        Cmd::Limits { set: None } => render::limits(&client.limits().await?, cli.json),
        Cmd::Limits {
            set: Some(LimitsCmd::Set { name, value }),
        } => render::limits(&client.limits_set(name, value).await?, cli.json),
    })
}

async fn pubsub(cli: &Cli, mut client: Client, cmd: &PubsubCmd) -> Result<String, ClientError> {
    Ok(match cmd {
        PubsubCmd::Topics => peer_lines(&client.pubsub_topics().await?, cli.json),
        PubsubCmd::Peers { topic } => peer_lines(&client.pubsub_peers(topic).await?, cli.json),
        PubsubCmd::Pub { topic, data } => {
            let r = client.pubsub_publish(topic, arg_bytes(data)?).await?;
            if cli.json {
                json_line(serde_json::json!({"topic": topic, "message_id": r.message_id}))
            } else {
                format!("published to {topic}\n")
            }
        }
        PubsubCmd::Sub { topic } => {
            use std::io::Write;
            let mut sub = client.pubsub_subscribe(topic).await?;
            let mut out = std::io::stdout().lock();
            while let Some(m) = sub.next().await {
                let m = m?;
                let line = if cli.json {
                    json_line(render::message_json(&m))
                } else {
                    format!(
                        "{} {} {}\n",
                        m.from,
                        m.seq_no,
                        String::from_utf8_lossy(&m.data)
                    )
                };
                out.write_all(line.as_bytes())?;
                out.flush()?;
            }
            String::new()
        }
    })
}

async fn dht(cli: &Cli, mut client: Client, cmd: &DhtCmd) -> Result<String, ClientError> {
    let t = ms(cli.timeout);
    Ok(match cmd {
        DhtCmd::FindPeer { peer_id } => {
            let r = client.dht_find_peer(peer_id, t).await?;
            if cli.json {
                json_line(serde_json::json!({"peer_id": r.peer_id, "addrs": r.addrs}))
            } else {
                peer_lines(&r.addrs, false)
            }
        }
        DhtCmd::Get { key } => {
            let r = client.dht_get(key.as_bytes(), t).await?;
            if cli.json {
                json_line(serde_json::json!({
                    "key": key,
                    "value": String::from_utf8_lossy(&r.value),
                    "value_hex": render::hex(&r.value),
                    "from": r.from,
                }))
            } else {
                use std::io::Write;
                std::io::stdout().write_all(&r.value)?;
                String::new()
            }
        }
        DhtCmd::Put { key, value } => {
            client.dht_put(key.as_bytes(), arg_bytes(value)?, t).await?;
            if cli.json {
                json_line(serde_json::json!({"stored": key}))
            } else {
                format!("stored {key}\n")
            }
        }
        DhtCmd::Provide { key } => {
            client.dht_provide(key.as_bytes(), t).await?;
            if cli.json {
                json_line(serde_json::json!({"providing": key}))
            } else {
                format!("providing {key}\n")
            }
        }
        DhtCmd::Providers { key } => {
            peer_lines(&client.dht_providers(key.as_bytes(), t).await?, cli.json)
        }
        DhtCmd::Closest { key } => {
            peer_lines(&client.dht_closest(key.as_bytes(), t).await?, cli.json)
        }
    })
}

async fn block(cli: &Cli, mut client: Client, cmd: &BlockCmd) -> Result<String, ClientError> {
    let stat = match cmd {
        BlockCmd::Put { file, ttl } => {
            let ttl = ttl.map(|d| d.as_secs()).unwrap_or(0);
            if file == "-" {
                client.block_put(tokio::io::stdin(), ttl).await?
            } else {
                let f = tokio::fs::File::open(file).await.map_err(|e| {
                    ClientError::Io(std::io::Error::new(
                        e.kind(),
                        format!("cannot read {file}: {e}"),
                    ))
                })?;
                client.block_put(f, ttl).await?
            }
        }
        BlockCmd::Get {
            hash,
            output: Some(path),
        } => {
            let tmp = path.with_extension("p2pctl-partial");
            let f = tokio::fs::File::create(&tmp).await?;
            match client.block_get(hash, ms(cli.timeout), f).await {
                Ok(s) => {
                    tokio::fs::rename(&tmp, path).await?;
                    s
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
            }
        }
        BlockCmd::Get { hash, output: None } => {
            client
                .block_get(hash, ms(cli.timeout), tokio::io::stdout())
                .await?;
            return Ok(String::new());
        }
        BlockCmd::Stat { hash } => client.block_stat(hash).await?,
    };
    Ok(if cli.json {
        json_line(render::block_json(&stat))
    } else if matches!(cmd, BlockCmd::Put { .. }) {
        format!("{}\n", stat.hash)
    } else {
        render::block_text(&stat)
    })
}

async fn stream(cli: &Cli, mut client: Client, cmd: &StreamCmd) -> Result<String, ClientError> {
    Ok(match cmd {
        StreamCmd::Open { peer_id, protocol } => {
            let conn = client
                .stream_open(peer_id, protocol, ms(cli.timeout))
                .await?;
            let (mut rd, mut wr) = conn.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut wr).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
            });
            let mut out = tokio::io::stdout();
            tokio::io::copy(&mut rd, &mut out).await?;
            tokio::io::AsyncWriteExt::flush(&mut out).await?;
            String::new()
        }
        StreamCmd::Serve {
            protocol,
            app_socket,
        } => {
            let socket = std::path::absolute(app_socket)?;
            client
                .stream_serve(protocol, &socket.display().to_string())
                .await?;
            if cli.json {
                json_line(serde_json::json!({"protocol": protocol, "socket": socket}))
            } else {
                format!("serving {protocol} -> {}\n", socket.display())
            }
        }
        StreamCmd::Ls => render::streams(&client.stream_list().await?, cli.json),
        StreamCmd::Rm { protocol } => {
            client.stream_remove(protocol).await?;
            if cli.json {
                json_line(serde_json::json!({"removed": protocol}))
            } else {
                format!("removed {protocol}\n")
            }
        }
    })
}
