//! Where p2pd keeps its files, decided the same way by the daemon and by its clients.
//!
//! System mode (started by systemd, or `/etc/p2pd/p2pd.toml` exists): `/etc/p2pd`,
//! `/var/lib/p2pd`, `/run/p2pd/control.sock`. User mode (anything else, any uid): XDG
//! directories under the caller's home, so a developer needs neither root nor a config file.

use std::path::PathBuf;

pub const SYSTEM_CONFIG: &str = "/etc/p2pd/p2pd.toml";
pub const SYSTEM_DATA_DIR: &str = "/var/lib/p2pd";
pub const SYSTEM_SOCKET: &str = "/run/p2pd/control.sock";
pub const SOCKET_NAME: &str = "control.sock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    System,
    User,
}

impl Mode {
    /// Started by systemd (`INVOCATION_ID`) or installed system-wide.
    pub fn detect() -> Mode {
        if std::env::var_os("INVOCATION_ID").is_some()
            || std::path::Path::new(SYSTEM_CONFIG).exists()
        {
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
