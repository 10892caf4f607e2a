//! Binding the control socket: owner read/write plus the control group, nobody else.

use anyhow::{bail, Context};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use tokio::net::UnixListener;

/// The sockets handed over by the service manager (`p2pd.socket`, `p2pd-query.socket`), ready
/// for the runtime.
pub struct Activated {
    pub control: UnixListener,
    pub query: Option<UnixListener>,
}

/// The sockets handed over by the service manager, taken from the environment by
/// [`take_passed_sockets`] before any thread exists.
#[derive(Debug)]
pub struct Passed {
    control: std::os::unix::net::UnixListener,
    query: Option<std::os::unix::net::UnixListener>,
    fds: usize,
}

/// The sockets passed by the service manager, when `$LISTEN_FDS` is at least 1 and
/// `$LISTEN_PID` is unset or ours: the one named `query` in `$LISTEN_FDNAMES`
/// (`FileDescriptorName=query`) is the read-only socket, the first other one the control socket.
/// `listenfd` checks that each is a listening Unix stream socket and takes ownership of it;
/// the `LISTEN_*` variables are cleared, so call this before any thread starts.
pub fn take_passed_sockets() -> anyhow::Result<Option<Passed>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(String::from).collect())
        .unwrap_or_default();
    std::env::remove_var("LISTEN_FDNAMES");
    let mut passed = listenfd::ListenFd::from_env();
    let fds = passed.len();
    if fds == 0 {
        return Ok(None);
    }
    let (mut control, mut query) = (None, None);
    for i in 0..fds {
        let listener = passed
            .take_unix_listener(i)
            .with_context(|| {
                format!("the service manager passed fd {} but it is not a listening Unix socket; check p2pd.socket (ListenStream=)", 3 + i)
            })?
            .with_context(|| format!("fd {} was passed twice", 3 + i))?;
        let slot = if names.get(i).map(String::as_str) == Some("query") {
            &mut query
        } else {
            &mut control
        };
        if slot.is_none() {
            *slot = Some(listener);
        }
    }
    let Some(control) = control else {
        bail!("the service manager passed only the read-only socket; check p2pd.socket");
    };
    Ok(Some(Passed {
        control,
        query,
        fds,
    }))
}

impl Passed {
    /// The listeners on the runtime (call from inside it).
    pub fn activate(self) -> anyhow::Result<Activated> {
        let tokio = |l: std::os::unix::net::UnixListener| {
            l.set_nonblocking(true)?;
            UnixListener::from_std(l)
        };
        let context = "a socket passed by the service manager";
        let control = tokio(self.control).context(context)?;
        let query = self.query.map(tokio).transpose().context(context)?;
        tracing::info!(
            fds = self.fds,
            read_only = query.is_some(),
            "using the sockets passed by the service manager"
        );
        Ok(Activated { control, query })
    }
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
