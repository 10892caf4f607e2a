//! Binding the control socket: owner read/write plus the control group, nobody else.

use anyhow::{bail, Context};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use tokio::net::UnixListener;

/// The control socket handed over by the service manager (`p2pd.socket`): the first passed
/// descriptor (fd 3) when `$LISTEN_FDS` is at least 1 and `$LISTEN_PID` is unset or ours.
pub fn from_service_manager() -> anyhow::Result<Option<UnixListener>> {
    let fds: u32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        Some(n) if n >= 1 => n,
        _ => return Ok(None),
    };
    if let Ok(pid) = std::env::var("LISTEN_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return Ok(None);
        }
    }
    const SD_LISTEN_FDS_START: i32 = 3;
    // SAFETY: systemd passes fds 3..3+LISTEN_FDS to this process and nothing else owns fd 3;
    // it is taken exactly once, here.
    #[allow(unsafe_code)]
    let std_listener = unsafe {
        <std::os::unix::net::UnixListener as std::os::fd::FromRawFd>::from_raw_fd(
            SD_LISTEN_FDS_START,
        )
    };
    std_listener.local_addr().context(
        "LISTEN_FDS is set but fd 3 is not a Unix socket; check p2pd.socket (ListenStream=)",
    )?;
    std_listener
        .set_nonblocking(true)
        .context("fd 3 from the service manager")?;
    let listener = UnixListener::from_std(std_listener).context("fd 3 from the service manager")?;
    tracing::info!(
        fds,
        "using the control socket passed by the service manager"
    );
    Ok(Some(listener))
}

/// Binds `path` with mode 0660 and group `group` (when that group exists). A stale socket left
/// by a crash is replaced; a live one (another daemon answering) is an error.
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
