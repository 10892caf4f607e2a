//! Binding the control socket: owner read/write plus the control group, nobody else.

use anyhow::{bail, Context};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use tokio::net::UnixListener;

/// The sockets handed over by the service manager (`p2pd.socket`, `p2pd-query.socket`).
pub struct Activated {
    pub control: UnixListener,
    pub query: Option<UnixListener>,
}

/// The sockets passed by the service manager, when `$LISTEN_FDS` is at least 1 and
/// `$LISTEN_PID` is unset or ours: the one named `query` in `$LISTEN_FDNAMES`
/// (`FileDescriptorName=query`) is the read-only socket, the first other one the control socket.
pub fn from_service_manager() -> anyhow::Result<Option<Activated>> {
    let fds: i32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        Some(n) if (1..=16).contains(&n) => n,
        _ => return Ok(None),
    };
    if let Ok(pid) = std::env::var("LISTEN_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return Ok(None);
        }
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(String::from).collect())
        .unwrap_or_default();
    const SD_LISTEN_FDS_START: i32 = 3;
    let (mut control, mut query) = (None, None);
    for i in 0..fds {
        let fd = SD_LISTEN_FDS_START + i;
        // SAFETY: systemd passes fds 3..3+LISTEN_FDS to this process and nothing else owns
        // them; each is taken exactly once, here.
        #[allow(unsafe_code)]
        let l = unsafe {
            <std::os::unix::net::UnixListener as std::os::fd::FromRawFd>::from_raw_fd(fd)
        };
        l.local_addr().with_context(|| {
            format!("LISTEN_FDS is set but fd {fd} is not a Unix socket; check p2pd.socket (ListenStream=)")
        })?;
        l.set_nonblocking(true)
            .with_context(|| format!("fd {fd} from the service manager"))?;
        let l = UnixListener::from_std(l)
            .with_context(|| format!("fd {fd} from the service manager"))?;
        let slot = if names.get(i as usize).map(String::as_str) == Some("query") {
            &mut query
        } else {
            &mut control
        };
        if slot.is_none() {
            *slot = Some(l);
        }
    }
    let Some(control) = control else {
        bail!("the service manager passed only the read-only socket; check p2pd.socket");
    };
    tracing::info!(
        fds,
        read_only = query.is_some(),
        "using the sockets passed by the service manager"
    );
    Ok(Some(Activated { control, query }))
}

/// Binds `path` with mode 0660 and group `group` (when that group exists and the daemon may
/// give it away). A stale socket left by a crash is replaced; a live one (another daemon
/// answering) is an error.
pub fn bind(path: &Path, group: &str) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .with_context(|| {
                    format!(
                        "cannot create the control socket directory {}",
                        dir.display()
                    )
                })?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "the control socket {} is in use by another running p2pd; stop it, or give this one its own socket with --control-socket (and its own --data-dir)",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| {
            format!("cannot remove the stale control socket {}", path.display())
        })?;
    }
    let listener = UnixListener::bind(path).with_context(|| {
        format!(
            "cannot bind the control socket {} (check that the directory exists and is writable)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set mode 0660 on {}", path.display()))?;
    set_group(path, group);
    Ok(listener)
}

fn set_group(path: &Path, group: &str) {
    let gid = match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => g.gid,
        Ok(None) => {
            tracing::debug!(
                group,
                "control group does not exist; socket keeps the daemon's group"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(group, error = %e, "cannot look up the control group");
            return;
        }
    };
    if nix::unistd::getegid() == gid {
        return;
    }
    if let Err(e) = nix::unistd::chown(path, None, Some(gid)) {
        tracing::warn!(group, path = %path.display(), error = %e, "cannot give the control socket to its group; only the daemon's user can use it");
    }
}
