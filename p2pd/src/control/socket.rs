//! Binding the control socket: owner read/write plus the control group, nobody else.

use anyhow::{bail, Context};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use tokio::net::UnixListener;

/// The sockets handed over by the service manager, ready for the runtime: the control and
/// read-only sockets (served directly), and/or the hand-over socket that `p2pd gate` passes
/// connections through (the packaged units).
pub struct Activated {
    pub control: Option<UnixListener>,
    pub query: Option<UnixListener>,
    pub handoff: Option<OwnedFd>,
}

/// The sockets handed over by the service manager, taken from the environment by
/// [`take_passed_sockets`] before any thread exists.
#[derive(Debug)]
pub struct Passed {
    control: Option<std::os::unix::net::UnixListener>,
    query: Option<std::os::unix::net::UnixListener>,
    handoff: Option<OwnedFd>,
    fds: usize,
}

/// The sockets passed by the service manager, when `$LISTEN_FDS` is at least 1 and
/// `$LISTEN_PID` is unset or ours, by their names in `$LISTEN_FDNAMES` (`FileDescriptorName=`):
/// `query` is the read-only socket, `handoff` the hand-over socket from `p2pd gate` (a listening
/// sequential-packet socket), the first other one the control socket. `listenfd` checks that
/// each stream socket is a listening Unix socket and takes ownership of it; the `LISTEN_*`
/// variables are cleared, so call this before any thread starts.
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
    let (mut control, mut query, mut handoff) = (None, None, None);
    for i in 0..fds {
        let name = names.get(i).map(String::as_str);
        if name == Some("handoff") {
            let raw = passed
                .take_raw_fd(i)?
                .with_context(|| format!("fd {} was passed twice", 3 + i))?;
            // SAFETY: listenfd hands each passed descriptor out once; from here this owns it.
            #[allow(unsafe_code)]
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            check_handoff(&fd).with_context(|| {
                format!("the service manager passed fd {} as the hand-over socket but it is not a listening sequential-packet Unix socket; check p2pd-handoff.socket (ListenSequentialPacket=)", 3 + i)
            })?;
            handoff.get_or_insert(fd);
            continue;
        }
        let listener = passed
            .take_unix_listener(i)
            .with_context(|| {
                format!("the service manager passed fd {} but it is not a listening Unix socket; check p2pd.socket (ListenStream=)", 3 + i)
            })?
            .with_context(|| format!("fd {} was passed twice", 3 + i))?;
        let slot = if name == Some("query") {
            &mut query
        } else {
            &mut control
        };
        if slot.is_none() {
            *slot = Some(listener);
        }
    }
    if control.is_none() && handoff.is_none() {
        bail!("the service manager passed only the read-only socket; check p2pd.socket");
    }
    Ok(Some(Passed {
        control,
        query,
        handoff,
        fds,
    }))
}

fn check_handoff(fd: &OwnedFd) -> anyhow::Result<()> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};
    let listening = getsockopt(fd, sockopt::AcceptConn)?;
    let kind = getsockopt(fd, sockopt::SockType)?;
    getsockname::<UnixAddr>(std::os::fd::AsRawFd::as_raw_fd(fd))?;
    if !listening || kind != SockType::SeqPacket {
        bail!("listening {listening}, type {kind:?}");
    }
    Ok(())
}

impl Passed {
    /// The listeners on the runtime (call from inside it).
    pub fn activate(self) -> anyhow::Result<Activated> {
        let tokio = |l: std::os::unix::net::UnixListener| {
            l.set_nonblocking(true)?;
            UnixListener::from_std(l)
        };
        let context = "a socket passed by the service manager";
        let control = self.control.map(tokio).transpose().context(context)?;
        let query = self.query.map(tokio).transpose().context(context)?;
        if let Some(h) = &self.handoff {
            nix::fcntl::fcntl(
                h,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .context(context)?;
        }
        tracing::info!(
            fds = self.fds,
            read_only = query.is_some(),
            handoff = self.handoff.is_some(),
            "using the sockets passed by the service manager"
        );
        Ok(Activated {
            control,
            query,
            handoff: self.handoff,
        })
    }

    /// The stream listeners as they are (blocking), for `p2pd gate`.
    pub fn into_listeners(
        self,
    ) -> (
        Option<std::os::unix::net::UnixListener>,
        Option<std::os::unix::net::UnixListener>,
    ) {
        (self.control, self.query)
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
