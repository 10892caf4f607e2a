//! `cargo xtask docs OUT`: man pages p2pd(8) and p2pctl(1) and the bash, zsh and fish
//! completions, generated from the clap definitions (the single source of truth for flags), plus
//! the hand-written p2pd.toml(5) copied beside them.
//! `cargo xtask fuzz-seeds DIR`: the fuzz targets' seed corpora (see seeds.rs).

mod seeds;

use anyhow::{bail, Context};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// A man page: clap_mangen's title, NAME, SYNOPSIS, DESCRIPTION and OPTIONS, then every
/// subcommand described in this page (COMMANDS; no per-command pages to point at), then the
/// hand-written sections, then VERSION.
fn man(cmd: clap::Command, section: &str, extra: &str, out: &Path) -> anyhow::Result<()> {
    let mut cmd = cmd;
    cmd.build();
    let name = cmd.get_name().to_string();
    let page = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual("p2pd manual");
    let mut buf = Vec::new();
    page.render_title(&mut buf)?;
    page.render_name_section(&mut buf)?;
    page.render_synopsis_section(&mut buf)?;
    page.render_description_section(&mut buf)?;
    page.render_options_section(&mut buf)?;
    let mut text = String::from_utf8(buf)?;
    if cmd.has_subcommands() {
        text.push_str(".SH COMMANDS\n");
        commands(&cmd, &mut text);
    }
    text.push_str(extra);
    let mut buf = text.into_bytes();
    page.render_version_section(&mut buf)?;
    let path = out.join(format!("{name}.{section}"));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))
}

/// Text for roff: backslashes and minus signs escaped, no line starting with a control character.
fn roff(s: &str) -> String {
    s.replace('\\', "\\e")
        .replace('-', "\\-")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One `.TP` entry per leaf command (`p2pctl dht put`), with its arguments indented below.
fn commands(cmd: &clap::Command, out: &mut String) {
    for sub in cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        if sub.has_subcommands() {
            commands(sub, out);
            continue;
        }
        let usage = sub.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").trim();
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(usage), roff(&about)));
        let args: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        if args.is_empty() {
            continue;
        }
        out.push_str(".RS\n");
        for a in args {
            let value = a
                .get_value_names()
                .filter(|_| a.get_action().takes_values())
                .map(|v| v.iter().map(|n| format!(" <{n}>")).collect::<String>())
                .unwrap_or_default();
            let head = match (a.get_long(), a.get_short()) {
                (Some(l), Some(c)) => format!("-{c}, --{l}{value}"),
                (Some(l), None) => format!("--{l}{value}"),
                (None, Some(c)) => format!("-{c}{value}"),
                (None, None) => format!("<{}>", a.get_id().as_str().to_uppercase()),
            };
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(&head), roff(&help)));
        }
        out.push_str(".RE\n");
    }
}

const P2PD_SECTIONS: &str = r#".SH SIGNALS
.TP
.B SIGTERM, SIGINT
Stop: STOPPING=1, stop listening, drain for at most shutdown.timeout (10s), save the routing
table and state, exit 0. A second signal exits at once (status 1).
.TP
.B SIGHUP
Reload /etc/p2pd/p2pd.toml (as \fBp2pctl reload\fR and \fBsystemctl reload p2pd\fR): limits,
bans, trusted peers and the log filter change without dropping healthy connections; a bad
config is refused and the running one stays.
.SH FILES
.TP
.B /etc/p2pd/p2pd.toml
The configuration of a system node (every key documented and commented out); see
\fBp2pd.toml\fR(5). A user node reads $XDG_CONFIG_HOME/p2pd/p2pd.toml if present.
.TP
.B /var/lib/p2pd/
State of a system node (user node: ~/.local/state/p2pd): identity.key (ed25519, mode 0600),
routing_table.json, bans.json, replay.json, blocks/, and lock (one daemon per data dir).
.TP
.B /run/p2pd/control.sock
The control socket (mode 0660, group p2pd), passed by p2pd.socket (to p2pd\-gate).
.TP
.B /run/p2pd/query.sock
The read-only socket (mode 0660, group p2pd\-ro), passed by p2pd\-query.socket: status, peers,
limits, bans and other queries; nothing can change through it.
.TP
.B /run/p2pd/handoff.sock
The hand-over socket (mode 0600, owner p2pd), passed to the daemon by p2pd\-handoff.socket:
\fBp2pd gate\fR (p2pd\-gate.service) accepts on the two sockets above and passes each
connection through it with the caller's real uid, gid and pid, because the daemon runs in a
private user namespace where other users' uids are not visible.
.TP
.B /usr/lib/systemd/system/p2pd.service, p2pd.socket, p2pd\-query.socket, p2pd\-gate.service, p2pd\-handoff.socket
The units. \fBsystemctl stop p2pd.socket p2pd\fR stops the node, the gate and the sockets;
stopping only p2pd leaves the sockets and the gate listening, and the next p2pctl starts it
again.
.TP
.B /usr/share/p2pd/prometheus/p2pd\-alerts.yml, /usr/share/p2pd/grafana/p2pd.json
Alert rules and a dashboard for the metrics on 127.0.0.1:9100.
.SH ENVIRONMENT
.TP
.B P2P_LISTEN_ADDRS, P2P_EXTERNAL_ADDRS, P2P_BOOTSTRAP_PEERS, P2P_BOOTSTRAP, P2P_MAX_CONNECTIONS, P2P_METRICS_PORT, P2P_DATA_DIR
The common settings (see \fBp2pd.toml\fR(5) for the keys they set).
.TP
.B P2P_\fISECTION\fB__\fIKEY\fR
Any other key, e.g. P2P_LIMITS__MAX_INBOUND=256. Precedence: defaults < file < environment <
flags.
.TP
.B RUST_LOG
The log filter (log.filter), e.g. info or info,libp2p_kad=debug.
.TP
.B TOKIO_WORKER_THREADS
Worker threads of the async runtime (default 1; hashing, signing and disk work have threads of
their own). More can help a node with many busy peers on many cores; measure first.
.TP
.B MALLOC_ARENA_MAX, GLIBC_TUNABLES
glibc's allocator settings. Unset, p2pd uses two arenas, takes buffers up to 4 MiB from them,
keeps up to 32 MiB free at an arena's top and gives back what is left over every 5 s; set,
these win (GLIBC_TUNABLES replaces all but the arena count).
.TP
.B SSLKEYLOGFILE
Ignored and removed at start: no TLS session secret of p2pd is ever written anywhere.
.TP
.B INVOCATION_ID, NOTIFY_SOCKET, WATCHDOG_USEC, LISTEN_FDS, LISTEN_FDNAMES, JOURNAL_STREAM
Set by systemd: system mode, readiness and watchdog notifications, the passed sockets, and
native journal logging.
.TP
.B XDG_CONFIG_HOME, XDG_STATE_HOME, XDG_RUNTIME_DIR
Where a user node keeps its config, state and socket.
.SH EXIT STATUS
.TP
.B 0
Stopped cleanly (or check\-config found the config valid).
.TP
.B 1
Start\-up failed (a port in use, the data dir locked by another p2pd, ...), or a second
signal.
.TP
.B 78
The configuration is invalid (EX_CONFIG); the message names the key, where it was set and what
is accepted. The unit does not restart on it (RestartPreventExitStatus=78).
.SH SEE ALSO
\fBp2pctl\fR(1), \fBp2pd.toml\fR(5), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

const P2PCTL_SECTIONS: &str = r#".SH ENVIRONMENT
.TP
.B P2PCTL_SOCKET
The socket to use (as \-\-socket).
.TP
.B XDG_RUNTIME_DIR, XDG_STATE_HOME
Where your own user node's socket is.
.SH FILES
.TP
.B /run/p2pd/control.sock
The system node's control socket: root and members of p2pd.
.TP
.B /run/p2pd/query.sock
Its read\-only socket: members of p2pd\-ro (used when the control socket is not open to you).
.TP
.B $XDG_RUNTIME_DIR/p2pd/control.sock
Your own user node's socket (without XDG_RUNTIME_DIR: ~/.local/state/p2pd/control.sock); used
first when it exists.
.SH EXIT STATUS
.TP
.B 0
Done.
.TP
.B 1
The daemon answered with an error (or a diag check failed).
.TP
.B 2
Usage error.
.TP
.B 3
The daemon could not be reached; the message names the socket and how to get access.
.SH SEE ALSO
\fBp2pd\fR(8), \fBp2pd.toml\fR(5)
"#;

fn completions(mut cmd: clap::Command, out: &Path) -> anyhow::Result<()> {
    use clap_complete::Shell;
    let name = cmd.get_name().to_string();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, out)
            .with_context(|| format!("{shell} completion for {name}"))?;
    }
    Ok(())
}

fn docs(out: &Path) -> anyhow::Result<()> {
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    man(p2pd::cli::Cli::command(), "8", P2PD_SECTIONS, &man_dir)?;
    man(p2pctl::cli::Cli::command(), "1", P2PCTL_SECTIONS, &man_dir)?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("man/p2pd.toml.5"), man_dir.join("p2pd.toml.5"))
        .context("man/p2pd.toml.5")?;
    completions(p2pd::cli::Cli::command(), &comp_dir)?;
    completions(p2pctl::cli::Cli::command(), &comp_dir)?;
    println!(
        "wrote man pages to {} and completions to {}",
        man_dir.display(),
        comp_dir.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["docs", out] => docs(Path::new(out)),
        ["fuzz-seeds", out] => seeds::generate(Path::new(out)),
        _ => bail!("usage: cargo xtask docs OUTDIR | fuzz-seeds OUTDIR"),
    }
}
