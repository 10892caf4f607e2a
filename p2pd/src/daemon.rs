//! Start-up and shutdown of the daemon: config, logging, rlimits, identity, listeners, control
//! socket, metrics endpoint, and the signals that end it.

use crate::config::{self, Config};
use crate::control::{self, ControlServer};
use crate::health::Health;
use crate::http::HttpServer;
use crate::node::{self, Node, NodeHandle, NodeInfo};
use crate::reload::Reloader;
use crate::{identity, logging, rlimit};
use anyhow::Context;
use p2pd_proto::paths::Mode;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Loads the effective config for this process.
/// Exit status for a configuration that cannot work (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

pub fn load_config(args: &crate::cli::RunArgs) -> Result<(Config, Mode), config::ConfigError> {
    let mode = crate::cli::ModeArg::or_detect(args.mode);
    let (cfg, _file) = config::load(mode, &args.overrides(), std::env::vars())?;
    Ok((cfg, mode))
}

/// Seeds the TLS/QUIC crypto library's random generator on a spare thread while the node starts;
/// the control socket opens once it is done. AWS-LC gathers CPU-jitter entropy on first use
/// (measured: ~70% of the CPU of a fresh process's first handshake, ~80 ms): paid here, before
/// anyone can ask for a connection, the first connection costs what any other does.
fn warm_up_crypto() -> std::thread::JoinHandle<()> {
    std::thread::spawn(|| {
        let mut seed = [0u8; 32];
        let _ = rustls::crypto::aws_lc_rs::default_provider()
            .secure_random
            .fill(&mut seed);
    })
}

/// Creates the data dir (0700) and takes an exclusive lock on it, so two daemons never share one.
fn open_data_dir(cfg: &Config) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = &cfg.storage.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| {
            format!(
                "cannot create the data dir {} (storage.data_dir); check permissions",
                dir.display()
            )
        })?;
    let lock_path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "the data dir {} is in use by another p2pd ({e}); give each node its own --data-dir",
            dir.display()
        )
    })
}

/// Runs the daemon until SIGTERM/SIGINT. Errors are start-up failures, already worded for the
/// operator.
/// Runs the daemon until it is told to stop. `passed` are the sockets the service manager
/// handed over ([`control::take_passed_sockets`], taken before the runtime started).
pub async fn run(
    cfg: Config,
    mode: Mode,
    overrides: config::Overrides,
    passed: Option<control::Passed>,
) -> anyhow::Result<()> {
    logging::init(cfg.log.format, &cfg.log.filter);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), mode = mode.as_str(), data_dir = %cfg.storage.data_dir.display(), "starting p2pd");
    let notifier = Arc::new(crate::sd::Notifier::from_env());
    let crypto_seeded = warm_up_crypto();
    let open_files_limit = rlimit::raise_nofile();
    rlimit::check(
        open_files_limit,
        cfg.limits.max_connections,
        cfg.limits.max_pending_inbound,
    );

    let _lock = open_data_dir(&cfg)?;
    let key = identity::load_or_create(&cfg.storage.data_dir.join(identity::FILE_NAME))?;
    let peer_id = key.public().to_peer_id();

    let mut registry = libp2p::metrics::Registry::default();
    crate::persist::remove_stale_temps(&cfg.storage.data_dir);
    let bans_path = cfg.storage.data_dir.join(crate::policy::bans::FILE_NAME);
    let bans = crate::policy::bans::BanList::load(&bans_path);
    if !bans.is_empty() {
        tracing::info!(bans = bans.len(), "loaded the ban list");
    }
    // The node's command channel exists before the node: the ban store reports failed writes on it.
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let handle = NodeHandle::new(tx);
    let to_node = handle.clone();
    let ban_store = crate::policy::store::BanStore::start(
        bans_path,
        bans.clone(),
        Box::new(move |revert| {
            let node = to_node.clone();
            Box::pin(async move {
                node.tell(move |n| n.revert_bans(revert)).await;
            })
        }),
    );
    let rules = crate::policy::gate::SharedRules::default();
    let policy = crate::policy::Policy::new(
        &cfg,
        bans,
        ban_store.clone(),
        rules.clone(),
        crate::policy::metrics::PolicyMetrics::register(&mut registry),
    );
    let udp = crate::udp::Sockets::default();
    let swarm = node::build_swarm(&key, &cfg, &mut registry, policy, rules, udp.clone())?;
    let streams = crate::streams::Forwarder::new(
        swarm.behaviour().streams.new_control(),
        cfg.limits.stream_idle_timeout.0 .0,
    );
    let metrics = libp2p::metrics::Metrics::new(&mut registry);
    let p2p = crate::metrics::P2pMetrics::register(&mut registry);

    let metrics_listener = match tokio::net::TcpListener::bind(cfg.metrics.addr.0).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let port = cfg.metrics.addr.0.port();
            let who = crate::ports::holder(crate::ports::Proto::Tcp, port);
            let other = port.wrapping_add(1).max(1);
            anyhow::bail!(
                "cannot bind the metrics address {} (metrics.addr): port {port} is in use, {who}. \
                 Give p2pd another port: [metrics] addr = \"127.0.0.1:{other}\" in the config \
                 file, or P2P_METRICS_PORT={other} (or stop the other service)",
                cfg.metrics.addr.0,
            );
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot bind the metrics address {} (metrics.addr)",
                    cfg.metrics.addr.0
                )
            })
        }
    };
    let metrics_addr = metrics_listener.local_addr()?.to_string();

    let health = Arc::new(Health::new(!cfg.network.bootstrap_peers.is_empty()));
    let info = NodeInfo {
        metrics_addr: metrics_addr.clone(),
        mode: mode.as_str(),
        open_files_limit,
        data_dir: cfg.storage.data_dir.clone(),
    };
    let store = crate::blocks::BlockStore::open(&cfg.storage.data_dir).with_context(|| {
        format!(
            "cannot open the block store in {}",
            cfg.storage.data_dir.display()
        )
    })?;
    registry.register(
        "p2p_blocks_quarantined",
        "Stored blocks moved aside because their bytes did not match their hash",
        store.quarantined.clone(),
    );
    let blocks = crate::blocks::fetch::BlockService {
        store: store.clone(),
        key: key.clone(),
        compress_threshold: cfg.storage.compress_threshold.0 .0 as usize,
        signer: Arc::new(crate::blocks::envelope::Signer::new(key.clone())),
    };
    let reloader = Arc::new(Reloader::new(
        mode,
        overrides,
        handle.clone(),
        notifier.clone(),
        ban_store.clone(),
    ));
    reload_on_sighup(reloader.clone())?;
    let mut node = Node::new(
        swarm,
        cfg.clone(),
        (handle.clone(), rx),
        node::Services {
            health: health.clone(),
            metrics,
            info,
            blocks,
            service: node::ServiceState::new(notifier.clone()),
            p2p,
            udp,
        },
    );
    node.listen()?;

    // Connections can be asked for once the control socket answers: be ready to make them fast.
    let _ = tokio::task::spawn_blocking(move || crypto_seeded.join()).await;
    let c = &cfg.control;
    let (listener, query, handoff, activated) = match passed {
        Some(p) => {
            let a = p.activate()?;
            (a.control, a.query, a.handoff, true)
        }
        None => {
            let control = control::bind(&c.socket, &c.group)?;
            let query = if c.query_socket.as_os_str().is_empty() {
                None
            } else {
                Some(control::bind(&c.query_socket, &c.query_group)?)
            };
            (Some(control), query, None, false)
        }
    };
    tracing::info!(socket = %c.socket.display(), metrics = %metrics_addr, %peer_id, "control socket and metrics ready");
    let server = ControlServer::new(handle, peer_id, store, streams, reloader.clone());
    if let Some(query) = query {
        tokio::spawn(server.serve(query, control::Access::ReadOnly));
    }
    if let Some(listener) = listener {
        tokio::spawn(server.serve(listener, control::Access::Full));
    }
    if let Some(handoff) = handoff {
        tokio::spawn(server.serve_handoff(handoff));
    }
    health.set_control_up();
    tokio::spawn(HttpServer::new(metrics_listener, Arc::new(registry), health.clone()).run());

    node.join();
    let shutdown = shutdown_signal()?;
    node.run(shutdown).await;
    // Changes the node made without an acknowledgement (expiries, automatic bans) are written.
    ban_store.flush().await;
    if !activated {
        // A socket passed by p2pd.socket belongs to systemd, which keeps it for the next start.
        let _ = std::fs::remove_file(&cfg.control.socket);
        let _ = std::fs::remove_file(&cfg.control.query_socket);
    }
    tracing::info!("p2pd stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!(
            event = "stopping",
            "shutting down (send the signal again to exit at once)"
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting at once");
            std::process::exit(1);
        });
    })
}

/// SIGHUP reloads the configuration (and never kills the daemon).
fn reload_on_sighup(reloader: Arc<Reloader>) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reloader.reload("SIGHUP").await;
        }
    });
    Ok(())
}
