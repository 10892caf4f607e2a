//! p2pctl: the control client of p2pd. One request per run; a table for people or `--json` for
//! scripts. Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage error, 3 the daemon
//! could not be reached.

mod diag;
mod render;

use clap::Parser;
use p2pctl::cli::{BlockCmd, Cli, Cmd, DhtCmd, LimitsCmd, PubsubCmd, StreamCmd, TrustCmd};
use p2pctl::{control, Client, ClientError};
use std::process::ExitCode;
use std::time::Duration;

const EXIT_DAEMON_ERROR: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;
/// A bad argument (as clap exits on one).
const EXIT_USAGE: u8 = 2;

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
            if emit(&out) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DAEMON_ERROR)
            }
        }
        Ok(Err(e)) => {
            eprintln!("p2pctl: {e}");
            ExitCode::from(match e {
                ClientError::Unreachable(_) => EXIT_UNREACHABLE,
                ClientError::Usage(_) => EXIT_USAGE,
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

/// `--json`: one message of the control API as one line (the contract is `p2pd_proto::json`).
fn json_line<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_string(v) {
        Ok(text) => format!("{text}\n"),
        // Serializing plain data to a string does not fail; say so if it ever does.
        Err(e) => format!("{{\"error\":\"cannot write JSON: {e}\"}}\n"),
    }
}

/// The answer for people, or with `--json` the message itself.
fn show<T: serde::Serialize>(cli: &Cli, message: &T, text: impl FnOnce(&T) -> String) -> String {
    if cli.json {
        json_line(message)
    } else {
        text(message)
    }
}

/// The targets of a blocklist (one per line, "#" comments, blank lines skipped), and the lines
/// that are no target, as "line N: TEXT" with why.
fn read_blocklist(
    file: &std::path::Path,
) -> Result<(Vec<p2pctl::BanTarget>, Vec<control::RejectedTarget>), ClientError> {
    let text = if file.as_os_str() == "-" {
        String::from_utf8_lossy(&arg_bytes("-")?).into_owned()
    } else {
        std::fs::read_to_string(file).map_err(|e| {
            ClientError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", file.display()),
            ))
        })?
    };
    let (mut targets, mut rejected) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match entry.parse() {
            Ok(t) => targets.push(t),
            Err(why) => rejected.push(control::RejectedTarget {
                target: format!("line {}: {entry}", i + 1),
                reason: why,
            }),
        }
    }
    Ok((targets, rejected))
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

fn peer_lines(peers: &[String]) -> String {
    if peers.is_empty() {
        "none\n".into()
    } else {
        peers.iter().map(|p| format!("{p}\n")).collect()
    }
}

/// Peer ids, one per line, or the PeerList they came in.
fn peer_list(cli: &Cli, peer_ids: Vec<String>) -> String {
    if cli.json {
        json_line(&control::PeerList { peer_ids })
    } else {
        peer_lines(&peer_ids)
    }
}

/// The daemon's own deadline for a request: a second inside `--timeout`, so its answer (even
/// a timeout) arrives before p2pctl gives up.
fn wire_deadline(cli: &Cli) -> Option<Duration> {
    Some(cli.timeout.saturating_sub(Duration::from_secs(1))).filter(|d| !d.is_zero())
}

/// Writes the answer to standard output. A reader that went away (`p2pctl status | head -1`,
/// `| true`) is not an error; any other failure is reported. False on a real failure.
fn emit(text: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => true,
        Err(e) => {
            eprintln!("p2pctl: cannot write the answer to standard output: {e}");
            false
        }
    }
}

async fn run(cli: &Cli, socket: &std::path::Path) -> Result<String, ClientError> {
    let mut client = Client::connect(socket).await?;
    Ok(match &cli.command {
        Cmd::Status => {
            let s = client.status().await?;
            if cli.json {
                json_line(&render::StatusJson::new(&s))
            } else {
                render::status_text(&s)
            }
        }
        Cmd::Peers { verbose } => {
            let p = client.peers(*verbose).await?;
            show(cli, &p, |p| render::peers_text(p, *verbose))
        }
        Cmd::Connect { multiaddr } => {
            let c = client.connect_peer(multiaddr, wire_deadline(cli)).await?;
            if cli.json {
                json_line(&c)
            } else if c.already_connected {
                format!("already connected to {} at {}\n", c.peer_id, c.address)
            } else {
                format!("connected to {} at {}\n", c.peer_id, c.address)
            }
        }
        Cmd::Disconnect { peer_id } => {
            client.disconnect_peer(peer_id).await?;
            if cli.json {
                json_line(&control::DisconnectRequest {
                    peer_id: peer_id.to_string(),
                })
            } else {
                format!("disconnected {peer_id}\n")
            }
        }
        Cmd::Pubsub(cmd) => pubsub(cli, client, cmd).await?,
        Cmd::Dht(cmd) => dht(cli, client, cmd).await?,
        Cmd::Block(cmd) => block(cli, client, cmd).await?,
        Cmd::Stream(cmd) => stream(cli, client, cmd).await?,
        Cmd::Ban {
            from_file: Some(file),
            duration,
            reason,
            ..
        } => {
            let (targets, mut rejected) = read_blocklist(file)?;
            let mut r = client
                .ban_import(&targets, *duration, reason.as_deref())
                .await?;
            rejected.append(&mut r.rejected);
            r.rejected = rejected;
            show(cli, &r, |r| {
                let mut out = format!(
                    "banned {} targets from {}; {} rejected\n",
                    r.accepted,
                    file.display(),
                    r.rejected.len()
                );
                for x in &r.rejected {
                    out.push_str(&format!("  {}: {}\n", x.target, x.reason));
                }
                out
            })
        }
        Cmd::Ban {
            target,
            duration,
            reason,
            ..
        } => {
            // clap asks for one of the two.
            let Some(target) = target else {
                return Err(ClientError::Protocol(
                    "a ban needs a target or --from-file".into(),
                ));
            };
            let e = client.ban(target, *duration, reason.as_deref()).await?;
            if cli.json {
                json_line(&e)
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
                json_line(&control::UnbanRequest {
                    target: target.to_string(),
                })
            } else {
                format!("unbanned {target}\n")
            }
        }
        Cmd::Bans => {
            let list = client.bans().await?;
            show(cli, &list, render::bans)
        }
        Cmd::Diag => {
            let (report, failed) = diag::run(&mut client, cli.json).await?;
            if failed {
                // The report is the answer; the exit code says a check failed.
                emit(&report);
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
                json_line(&r)
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
                json_line(&control::LogLevelRequest {
                    filter: filter.clone(),
                })
            } else {
                format!("log filter is now {filter}\n")
            }
        }
        Cmd::Trust(cmd) => {
            let list = match cmd {
                TrustCmd::Add { target } => client.trust_add(target).await?,
                TrustCmd::Rm { target } => client.trust_remove(&target.peer).await?,
                TrustCmd::Ls => client.trust_list().await?,
            };
            show(cli, &list, render::trusted)
        }
        Cmd::Limits { set } => {
            let list = match set {
                None => client.limits().await?,
                Some(LimitsCmd::Set { name, value }) => client.limits_set(name, value).await?,
            };
            show(cli, &list, render::limits)
        }
    })
}

async fn pubsub(cli: &Cli, mut client: Client, cmd: &PubsubCmd) -> Result<String, ClientError> {
    Ok(match cmd {
        PubsubCmd::Topics => {
            let topics = client.pubsub_topics().await?;
            if cli.json {
                json_line(&control::PubsubTopicsResponse { topics })
            } else {
                peer_lines(&topics)
            }
        }
        PubsubCmd::Peers { topic } => peer_list(cli, client.pubsub_peers(topic).await?),
        PubsubCmd::Pub {
            topic,
            data,
            lines: true,
        } => {
            let all = arg_bytes(data)?;
            let messages = all
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec);
            let n = client.pubsub_publish_many(topic, messages, 256).await?;
            if cli.json {
                // A batch of the client's: a summary, not one message of the API.
                json_line(&serde_json::json!({"topic": topic, "published": n}))
            } else {
                format!("published {n} messages to {topic}\n")
            }
        }
        PubsubCmd::Pub { topic, data, .. } => {
            let r = client.pubsub_publish(topic, arg_bytes(data)?).await?;
            if cli.json {
                json_line(&r)
            } else {
                format!("published to {topic}\n")
            }
        }
        PubsubCmd::Sub { topic } => {
            use std::io::Write;
            let mut sub = client.pubsub_subscribe(topic).await?;
            // Lines are written through a buffer and flushed whenever no further message has
            // already arrived: one write per batch the daemon sends, each line out as soon as
            // nothing follows it (a write per line could not keep up with a burst).
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            while let Some(m) = sub.next().await {
                let m = m?;
                let line = if cli.json {
                    json_line(&m)
                } else {
                    format!(
                        "from {} seq {}: {}\n",
                        m.from,
                        m.seq_no,
                        String::from_utf8_lossy(&m.data)
                    )
                };
                out.write_all(line.as_bytes())?;
                if !sub.has_buffered() {
                    out.flush()?;
                }
            }
            out.flush()?;
            String::new()
        }
    })
}

async fn dht(cli: &Cli, mut client: Client, cmd: &DhtCmd) -> Result<String, ClientError> {
    let t = wire_deadline(cli);
    Ok(match cmd {
        DhtCmd::FindPeer { peer_id } => {
            let r = client.dht_find_peer(peer_id, t).await?;
            if cli.json {
                json_line(&r)
            } else {
                peer_lines(&r.addrs)
            }
        }
        DhtCmd::Get { key } => {
            let r = client.dht_get(key.as_bytes(), t).await?;
            if cli.json {
                json_line(&r)
            } else {
                // Raw bytes, as stored; text gets the newline a shell prompt needs.
                use std::io::Write;
                std::io::stdout().write_all(&r.value)?;
                let text = std::str::from_utf8(&r.value).is_ok();
                if text && !r.value.ends_with(b"\n") {
                    "\n".into()
                } else {
                    String::new()
                }
            }
        }
        DhtCmd::Put { key, value } => {
            let value = arg_bytes(value)?;
            client.dht_put(key.as_bytes(), value.clone(), t).await?;
            if cli.json {
                json_line(&control::DhtPutRequest {
                    key: key.as_bytes().to_vec(),
                    value,
                    timeout_ms: p2pctl::timeout_ms(t),
                })
            } else {
                format!("stored {key}\n")
            }
        }
        DhtCmd::Provide { key, raw } => {
            let k = content_key(key, *raw)?;
            client.dht_provide(&k.key, t).await?;
            if cli.json {
                json_line(&control::DhtProvideRequest {
                    key: k.key,
                    timeout_ms: p2pctl::timeout_ms(t),
                })
            } else {
                format!("providing {}\n", k.show())
            }
        }
        DhtCmd::Providers { key, raw } => {
            let k = content_key(key, *raw)?;
            peer_list(cli, client.dht_providers(&k.key, t).await?)
        }
        DhtCmd::Closest { key } => peer_list(cli, client.dht_closest(key.as_bytes(), t).await?),
    })
}

/// A content key from the command line; a bad one is a usage error.
fn content_key(text: &str, raw: bool) -> Result<p2pctl::content::ContentKey, ClientError> {
    p2pctl::content::ContentKey::parse(text, raw).map_err(ClientError::Usage)
}

/// How standard output takes back what `block get` wrote of a block that then failed its
/// check, when it can: such output gets the block while it is fetched
/// ([`Client::block_get_early`]); any other gets only bytes checked against the block's hash.
enum TakeBack {
    /// /dev/null: nothing was kept.
    Nothing,
    /// A regular file written at its end and not opened for appending (a file others append
    /// to moves under us; one written over in the middle, `1<>FILE`, would lose what the
    /// block overwrote): cut back to where the block began.
    Truncate(std::fs::File, u64),
}

impl TakeBack {
    /// Pipes, terminals and sockets cannot take anything back.
    fn of_stdout() -> Option<Self> {
        use std::io::Seek;
        use std::os::fd::AsFd;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned().ok()?);
        let meta = out.metadata().ok()?;
        if meta.file_type().is_char_device() {
            let null = std::fs::metadata("/dev/null").ok()?;
            let is_null = null.file_type().is_char_device() && meta.rdev() == null.rdev();
            return is_null.then_some(TakeBack::Nothing);
        }
        let flags = nix::fcntl::fcntl(&out, nix::fcntl::FcntlArg::F_GETFL).ok()?;
        if !meta.file_type().is_file()
            || nix::fcntl::OFlag::from_bits_retain(flags).contains(nix::fcntl::OFlag::O_APPEND)
        {
            return None;
        }
        let at = (&out).stream_position().ok()?;
        (at == meta.len()).then_some(TakeBack::Truncate(out, at))
    }

    /// Takes back what was written before `failed`; says so in the error when it cannot.
    fn undo(self, failed: ClientError) -> ClientError {
        use std::io::{Seek, Write};
        let TakeBack::Truncate(out, at) = self else {
            return failed;
        };
        let undone = std::io::stdout()
            .flush()
            .and_then(|()| out.set_len(at))
            .and_then(|()| (&out).seek(std::io::SeekFrom::Start(at)).map(|_| ()));
        match undone {
            Ok(()) => failed,
            Err(e) => {
                let note = format!(
                    "; standard output could not be cut back to where the block began ({e}): \
                     what it holds past byte {at} is not the block"
                );
                match failed {
                    ClientError::Daemon { code, message } => ClientError::Daemon {
                        code,
                        message: message + &note,
                    },
                    ClientError::Io(e) => {
                        ClientError::Io(std::io::Error::new(e.kind(), format!("{e}{note}")))
                    }
                    other => ClientError::Protocol(format!("{other}{note}")),
                }
            }
        }
    }
}

async fn block(cli: &Cli, mut client: Client, cmd: &BlockCmd) -> Result<String, ClientError> {
    if let BlockCmd::Verify { hash } = cmd {
        let checked = client.block_verify(hash.as_deref()).await?;
        return Ok(if cli.json {
            json_line(&control::BlockVerifyResponse { checked })
        } else {
            format!("{checked} blocks intact\n")
        });
    }
    let stat = match cmd {
        BlockCmd::Put { file, ttl } => {
            if file == "-" {
                client.block_put(tokio::io::stdin(), *ttl).await?
            } else {
                let f = tokio::fs::File::open(file).await.map_err(|e| {
                    ClientError::Io(std::io::Error::new(
                        e.kind(),
                        format!("cannot read {file}: {e}"),
                    ))
                })?;
                client.block_put(f, *ttl).await?
            }
        }
        BlockCmd::Get {
            hash,
            output: Some(path),
        } => {
            let tmp = path.with_extension("p2pctl-partial");
            let f = p2pctl::WriteInPlace(std::fs::File::create(&tmp)?);
            // The file appears only when the whole matched: it can take the data early.
            match client.block_get_early(hash, wire_deadline(cli), f).await {
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
            let out = p2pctl::WriteInPlace(std::io::stdout().lock());
            match TakeBack::of_stdout() {
                None => client.block_get(hash, wire_deadline(cli), out).await?,
                Some(undo) => match client.block_get_early(hash, wire_deadline(cli), out).await {
                    Ok(s) => s,
                    Err(e) => return Err(undo.undo(e)),
                },
            };
            return Ok(String::new());
        }
        BlockCmd::Stat { hash } => client.block_stat(hash).await?,
        BlockCmd::Verify { .. } => unreachable!("answered above"),
    };
    Ok(if cli.json {
        json_line(&stat)
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
                .stream_open(peer_id, protocol, wire_deadline(cli))
                .await?;
            // Plain threads and std::io::copy: the kernel moves the bytes (splice/sendfile
            // when standard input or output is a pipe or a file) instead of 8 KiB reads through
            // tokio's blocking pool.
            let conn = conn.into_std()?;
            conn.set_nonblocking(false)?;
            let mut wr = conn.try_clone()?;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut wr);
                let _ = wr.shutdown(std::net::Shutdown::Write);
            });
            let mut rd = conn;
            tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                std::io::copy(&mut rd, &mut out)?;
                std::io::Write::flush(&mut out)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
            String::new()
        }
        StreamCmd::Serve {
            protocol,
            app_socket,
        } => {
            let socket = std::path::absolute(app_socket)?;
            client.stream_serve(protocol, &socket).await?;
            if cli.json {
                json_line(&control::StreamServeRequest {
                    protocol: protocol.clone(),
                    socket: socket.display().to_string(),
                })
            } else {
                format!("serving {protocol} -> {}\n", socket.display())
            }
        }
        StreamCmd::Ls => {
            let list = client.stream_list().await?;
            show(cli, &list, render::streams)
        }
        StreamCmd::Rm { protocol } => {
            client.stream_remove(protocol).await?;
            if cli.json {
                json_line(&control::StreamRemoveRequest {
                    protocol: protocol.clone(),
                })
            } else {
                format!("removed {protocol}\n")
            }
        }
    })
}
