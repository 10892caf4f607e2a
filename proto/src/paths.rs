//! Where p2pd keeps its files, decided the same way by the daemon and by its clients.
//!
//! System mode (started by the system service manager, or running as the `p2pd` user):
//! `/etc/p2pd`, `/var/lib/p2pd`, `/run/p2pd/control.sock`. User mode (anything else, any uid,
//! whether or not the package is installed): XDG directories under the caller's home, so a
//! developer needs neither root nor a config file and can run a node beside the packaged one.

use std::path::PathBuf;

pub const SYSTEM_CONFIG: &str = "/etc/p2pd/p2pd.toml";
pub const SYSTEM_DATA_DIR: &str = "/var/lib/p2pd";
pub const SYSTEM_SOCKET: &str = "/run/p2pd/control.sock";
pub const SOCKET_NAME: &str = "control.sock";
/// The read-only socket beside the control socket (`p2pctl` queries; nothing can change).
pub const QUERY_SOCKET_NAME: &str = "query.sock";
/// Members of this group may use the read-only socket of a system node.
pub const QUERY_GROUP: &str = "p2pd-ro";

/// The read-only socket that goes with a control socket: `query.sock` beside `control.sock`,
/// `NAME.query.sock` beside any other `NAME.sock`.
pub fn query_socket_for(control: &std::path::Path) -> PathBuf {
    let name = control
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let query = if name == SOCKET_NAME {
        QUERY_SOCKET_NAME.to_string()
    } else {
        format!("{}.{QUERY_SOCKET_NAME}", name.trim_end_matches(".sock"))
    };
    control.with_file_name(query)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    System,
    User,
}

impl Mode {
    /// Started by the system service manager (systemd sets `INVOCATION_ID` and is our parent,
    /// PID 1) or running as the `p2pd` system user. A user's own systemd (`systemd-run --user`)
    /// and an installed /etc/p2pd/p2pd.toml do not make a system node.
    pub fn detect() -> Mode {
        if started_by_system_manager() || running_as_system_user() {
            Mode::System
        } else {
            Mode::User
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::User => "user",
        }
    }
}

/// The system user the packages create (sysusers.d).
pub const SYSTEM_USER: &str = "p2pd";

fn started_by_system_manager() -> bool {
    std::env::var_os("INVOCATION_ID").is_some() && std::os::unix::process::parent_id() == 1
}

/// Our effective uid (the owner of /proc/self), if /proc is mounted.
fn euid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn running_as_system_user() -> bool {
    let (Some(uid), Ok(passwd)) = (euid(), std::fs::read_to_string("/etc/passwd")) else {
        return false;
    };
    passwd_uid(&passwd, SYSTEM_USER) == Some(uid)
}

/// The uid of `user` in /etc/passwd text.
fn passwd_uid(passwd: &str, user: &str) -> Option<u32> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(user)).then(|| f.nth(1)?.parse().ok())?
    })
}

/// The socket a client uses when none is given: in system mode the system socket; otherwise the
/// caller's own user-mode node if one is running, else the packaged node's socket if present.
pub fn client_socket() -> PathBuf {
    let user = default_socket(Mode::User);
    if Mode::detect() == Mode::System {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    if !user.exists() && std::path::Path::new(SYSTEM_SOCKET).exists() {
        return PathBuf::from(SYSTEM_SOCKET);
    }
    user
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

fn home() -> PathBuf {
    env_dir("HOME").unwrap_or_else(|| PathBuf::from("/"))
}

/// The config file read when `--config` is not given, if any.
pub fn default_config_file(mode: Mode) -> Option<PathBuf> {
    match mode {
        Mode::System => Some(PathBuf::from(SYSTEM_CONFIG)),
        Mode::User => {
            let p = env_dir("XDG_CONFIG_HOME")
                .unwrap_or_else(|| home().join(".config"))
                .join("p2pd/p2pd.toml");
            p.exists().then_some(p)
        }
    }
}

pub fn default_data_dir(mode: Mode) -> PathBuf {
    match mode {
        Mode::System => PathBuf::from(SYSTEM_DATA_DIR),
        Mode::User => env_dir("XDG_STATE_HOME")
            .unwrap_or_else(|| home().join(".local/state"))
            .join("p2pd"),
    }
}

pub fn default_socket(mode: Mode) -> PathBuf {
    match mode {
        Mode::System => PathBuf::from(SYSTEM_SOCKET),
        Mode::User => match env_dir("XDG_RUNTIME_DIR") {
            Some(run) => run.join("p2pd").join(SOCKET_NAME),
            None => default_data_dir(mode).join(SOCKET_NAME),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_system_users_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\np2pdx:x:7:7::/:/bin/false\np2pd:x:998:998:p2pd:/var/lib/p2pd:/usr/sbin/nologin\n";
        assert_eq!(passwd_uid(passwd, "p2pd"), Some(998));
        assert_eq!(passwd_uid(passwd, "root"), Some(0));
        assert_eq!(passwd_uid(passwd, "nobody"), None);
        assert_eq!(
            passwd_uid("p2pd:x:notanumber:1::/:/bin/false", "p2pd"),
            None
        );
    }

    #[test]
    fn query_socket_sits_beside_the_control_socket() {
        use std::path::Path;
        assert_eq!(
            query_socket_for(Path::new("/run/p2pd/control.sock")),
            Path::new("/run/p2pd/query.sock")
        );
        assert_eq!(
            query_socket_for(Path::new("/tmp/x/a.sock")),
            Path::new("/tmp/x/a.query.sock")
        );
    }
}
