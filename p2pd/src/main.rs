use clap::Parser;
use p2pd::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // rustls (inside libp2p's QUIC) writes every TLS session secret to the file this names:
    // whatever the environment says, no secret of this daemon's sessions is ever written out.
    // Here, before any thread exists, removing it is sound.
    std::env::remove_var("SSLKEYLOGFILE");
    tune_malloc();
    let cli = Cli::parse();
    match cli.command {
        None => run(&cli.run),
        Some(Command::Run(args)) => run(&args),
        Some(Command::CheckConfig(args)) => check_config(&args),
        Some(Command::Health { url }) => health(&url),
        Some(Command::Keygen { out, data_dir }) => keygen(out, data_dir),
        Some(Command::Gate { handoff }) => match p2pd::gate::run(&handoff) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("{e:#}")),
        },
    }
}

/// glibc's allocator, set for this daemon before any thread exists (`MALLOC_ARENA_MAX` and
/// `GLIBC_TUNABLES` in the environment still win, for an operator who wants other figures):
///
/// - Two arenas. glibc gives a thread that meets a locked arena a new one, up to 8 per core,
///   each reserving 64 MiB of address space and keeping what it once held: tokio's blocking
///   threads (disk work, hashing) came and went through a long soak and each left its own arena
///   behind, so RSS crept up long after the load had levelled off. Two are enough for a daemon
///   whose hot path is one event loop, and they keep freed memory reusable by every thread.
/// - Buffers up to 4 MiB from the arenas, and 32 MiB of free memory at an arena's top kept
///   rather than handed back at once. With the defaults, the 1 MiB chunks and frames of a block
///   transfer were freed and trimmed away and the next ones faulted fresh zeroed pages in again
///   (page faults and zeroing were ~9% of a 256 MiB fetch's CPU, block get +12%); a
///   housekeeping thread trims what is left over every 5 s, so a burst does not pin memory.
#[allow(unsafe_code)] // the calls below; the workspace denies unsafe code everywhere else
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only adjusts allocator parameters; no other thread exists yet.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        if std::env::var_os("GLIBC_TUNABLES").is_none() {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
            }
        }
    }
}

/// The housekeeping thread of [`tune_malloc`]: every 5 s, free memory beyond what is in use
/// goes back to the system.
#[allow(unsafe_code)] // the call below
fn start_malloc_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        let _ = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                // SAFETY: malloc_trim takes the allocator's own locks; any thread may call it.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("p2pd: {msg}");
    ExitCode::FAILURE
}

/// A bad configuration: exit status 78 (EX_CONFIG), which the unit's RestartPreventExitStatus=
/// names, so systemd does not restart a daemon that cannot start until the operator edits.
fn config_error(e: p2pd::config::ConfigError) -> ExitCode {
    eprintln!("p2pd: {e}");
    ExitCode::from(p2pd::daemon::EXIT_CONFIG)
}

fn run(args: &p2pd::cli::RunArgs) -> ExitCode {
    let (cfg, mode) = match p2pd::daemon::load_config(args) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    // The sockets systemd passed (p2pd.socket): taken, and $LISTEN_* cleared, while this is the
    // only thread.
    let passed = match p2pd::control::take_passed_sockets() {
        Ok(p) => p,
        Err(e) => return fail(format!("{e:#}")),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // One worker thread unless TOKIO_WORKER_THREADS asks for more. Every hand-off between
    // worker threads is a futex wake-up (an inter-processor interrupt, dear on virtual
    // machines), and the data plane hands off per frame: measured on a 2-core VM, one worker
    // carries a forwarded stream at ~1.6x the rate for ~0.6x the CPU of two. Hashing, signing
    // and disk work run on the blocking pool, beside it, either way.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    // The daemon runs as a task on the workers, not on this thread: `block_on` polls its future
    // here, beside the worker, and every hand-off between the node and its connections would
    // cross threads.
    start_malloc_trim();
    let daemon = rt.spawn(p2pd::daemon::run(cfg, mode, args.overrides(), passed));
    let result = rt
        .block_on(daemon)
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the daemon task failed: {e}")));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "start-up failed");
            fail(format!("{e:#}"))
        }
    }
}

fn check_config(args: &p2pd::cli::RunArgs) -> ExitCode {
    match p2pd::daemon::load_config(args) {
        Ok((cfg, _)) => match toml::to_string_pretty(&cfg) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("cannot print the config: {e}")),
        },
        Err(e) => config_error(e),
    }
}

fn health(url: &str) -> ExitCode {
    match p2pd::http::probe(url) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => fail(format!("{url} says not ready")),
        Err(e) => fail(format!("cannot reach {url}: {e}")),
    }
}

fn keygen(out: Option<std::path::PathBuf>, data_dir: Option<std::path::PathBuf>) -> ExitCode {
    let mode = p2pd_proto::paths::Mode::detect();
    let path = out.unwrap_or_else(|| {
        data_dir
            .unwrap_or_else(|| p2pd_proto::paths::default_data_dir(mode))
            .join(p2pd::identity::FILE_NAME)
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(format!("cannot create {}: {e}", dir.display()));
        }
    }
    let key = libp2p::identity::Keypair::generate_ed25519();
    match p2pd::identity::write_new(&path, &key) {
        Ok(()) => {
            println!("{}", key.public().to_peer_id());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!(
            "cannot write {}: {e} (an existing key is never overwritten)",
            path.display()
        )),
    }
}
