//! Binding the control socket: owner read/write plus the control group, nobody else.

use anyhow::{bail, Context};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use tokio::net::UnixListener;

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
