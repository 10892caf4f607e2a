//! Layering of defaults, file, environment and flags, with the provenance of every key so that
//! an error names where a bad value came from.

use super::Config;
use p2pd_proto::paths::{self, Mode};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: Option<usize> },
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "built-in default"),
            Source::File {
                path,
                line: Some(l),
            } => write!(f, "{} line {l}", path.display()),
            Source::File { path, line: None } => write!(f, "{}", path.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(n) => write!(f, "command-line flag {n}"),
        }
    }
}

/// A config that cannot be used. Displays as one line: the key, its source, what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("invalid config: {key} (from {from}): {message}")]
    Invalid {
        key: String,
        from: Source,
        message: String,
    },
}

/// Values given on the command line; `None`/empty means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub metrics_addr: Option<String>,
    pub log_format: Option<String>,
}

/// The seed's environment variables and the keys they set.
const SEED_VARS: [(&str, &str); 8] = [
    ("P2P_LISTEN_ADDRS", "network.listen"),
    ("P2P_EXTERNAL_ADDRS", "network.external"),
    ("P2P_BOOTSTRAP_PEERS", "network.bootstrap_peers"),
    ("P2P_BOOTSTRAP", "network.bootstrap"),
    ("P2P_MAX_CONNECTIONS", "limits.max_connections"),
    ("P2P_METRICS_PORT", "metrics.addr"),
    ("P2P_DATA_DIR", "storage.data_dir"),
    ("RUST_LOG", "log.filter"),
];

/// Loads the effective config. `env` is the process environment (passed in for tests).
/// Returns the config and the file it read, if any.
pub fn load(
    mode: Mode,
    overrides: &Overrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let defaults = Config::defaults(mode);
    let default_table = to_table(&defaults);
    let kinds = flatten(&default_table);
    let mut merged = default_table.clone();
    let mut provenance: BTreeMap<String, Source> = BTreeMap::new();

    let file = overrides
        .config
        .clone()
        .or_else(|| paths::default_config_file(mode).filter(|p| p.exists()));
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            reason: format!("{e}; check the path and that the p2pd user may read it"),
        })?;
        let table = parse_file(path, &text)?;
        for key in flatten(&table).keys() {
            let line = line_of(&text, key);
            provenance.insert(
                key.clone(),
                Source::File {
                    path: path.clone(),
                    line,
                },
            );
        }
        merge(&mut merged, table);
    }

    let mut env_table = Table::new();
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    for (var, raw) in env {
        let Some(key) = env_key(&var) else { continue };
        let src = Source::Env(var.clone());
        let sample = kinds.get(&key).ok_or_else(|| ConfigError::Invalid {
            key: key.clone(),
            from: src.clone(),
            message: unknown_key_hint(&key, &kinds),
        })?;
        let value = if var == "P2P_METRICS_PORT" {
            metrics_port_value(&merged, &raw).map_err(|m| invalid(&key, &src, m))?
        } else if PATH_KEYS.contains(&key.as_str()) && !raw.is_empty() {
            Value::String(absolute(Path::new(&raw)).to_string_lossy().into_owned())
        } else {
            env_value(sample, &raw).map_err(|m| invalid(&key, &src, m))?
        };
        let one = nest(&key, value);
        check_layer(&one).map_err(|m| invalid(&key, &src, name_range(&key, &m)))?;
        provenance.insert(key.clone(), src);
        merge(&mut env_table, one);
    }
    merge(&mut merged, env_table);

    for (flag, key, value) in flag_values(overrides) {
        let src = Source::Flag(flag.into());
        let one = nest(key, value);
        check_layer(&one).map_err(|m| invalid(key, &src, m))?;
        provenance.insert(key.into(), src);
        merge(&mut merged, one);
    }

    let mut config: Config = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| {
            invalid("(config)", &Source::Default, e.message().to_string())
        })?;
    if !provenance.contains_key("control.socket") && provenance.contains_key("storage.data_dir") {
        // The user-mode socket falls back to the data dir: follow a data dir that was moved.
        if mode == Mode::User && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            config.control.socket = config.storage.data_dir.join(paths::SOCKET_NAME);
        }
    }
    if !provenance.contains_key("control.query_socket") {
        // The read-only socket goes where the control socket goes.
        config.control.query_socket = paths::query_socket_for(&config.control.socket);
    }
    if let Some((key, message)) = config.check().into_iter().next() {
        let from = provenance
            .get(key.as_str())
            .cloned()
            .unwrap_or(Source::Default);
        return Err(ConfigError::Invalid { key, from, message });
    }
    Ok((config, file))
}

fn invalid(key: &str, source: &Source, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        from: source.clone(),
        message,
    }
}

fn to_table(c: &Config) -> Table {
    match Value::try_from(c) {
        Ok(Value::Table(t)) => t,
        _ => Table::new(),
    }
}

/// Parses the file and checks it against the schema, so type errors and unknown keys carry the
/// file's line number.
fn parse_file(path: &Path, text: &str) -> Result<Table, ConfigError> {
    let at = |e: &toml::de::Error| {
        let mut line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let mut key = line.map(|l| key_at(text, l)).unwrap_or_default();
        // serde reports an unknown field at its table: point at the field's own line.
        if let Some(name) = e
            .message()
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            let section = key.split('.').next().unwrap_or("").to_string();
            key = if section.is_empty() {
                name.to_string()
            } else {
                format!("{section}.{name}")
            };
            line = line_of(text, &key).or(line);
        }
        let source = Source::File {
            path: path.to_path_buf(),
            line,
        };
        let message = name_range(&key, e.message());
        ConfigError::Invalid {
            key: if key.is_empty() {
                "(syntax)".into()
            } else {
                key
            },
            from: source,
            message,
        }
    };
    let table: Table = toml::from_str(text).map_err(|e| at(&e))?;
    toml::from_str::<Config>(text).map_err(|e| at(&e))?;
    Ok(table)
}

/// A type error in words an operator can act on: serde's "invalid value: integer `-5`, expected
/// u32" becomes "integer `-5` is not accepted; accepted: 1 to 1000000" for keys with a range.
fn name_range(key: &str, message: &str) -> String {
    let message = message.trim().replace('\n', " ");
    let Some(range) = super::accepted(key) else {
        return message;
    };
    let Some((what, _expected)) = message.rsplit_once(", expected ") else {
        return message;
    };
    let what = what
        .trim_start_matches("invalid value: ")
        .trim_start_matches("invalid type: ");
    format!("{what} is not accepted; accepted: {range}")
}

/// Validates one layer alone against the schema (types, unknown keys, value syntax).
fn check_layer(table: &Table) -> Result<(), String> {
    Value::Table(table.clone())
        .try_into::<Config>()
        .map(|_| ())
        .map_err(|e| e.message().trim().replace('\n', " "))
}

/// `section.key` for a `P2P_*` variable, or `None` for variables that are not ours.
fn env_key(var: &str) -> Option<String> {
    if let Some((_, key)) = SEED_VARS.iter().find(|(v, _)| *v == var) {
        return Some((*key).to_string());
    }
    let rest = var.strip_prefix("P2P_")?;
    Some(match rest.split_once("__") {
        Some((section, key)) => format!("{}.{}", section.to_lowercase(), key.to_lowercase()),
        None => rest.to_lowercase(),
    })
}

fn unknown_key_hint(key: &str, kinds: &BTreeMap<String, Value>) -> String {
    let section = key.split('.').next().unwrap_or("");
    let known: Vec<&str> = kinds
        .keys()
        .filter(|k| k.split('.').next() == Some(section) && k.contains('.'))
        .map(|k| k.as_str())
        .collect();
    if known.is_empty() {
        let sections: std::collections::BTreeSet<&str> =
            kinds.keys().filter_map(|k| k.split('.').next()).collect();
        format!(
            "unknown key; use P2P_<SECTION>__<KEY> with a section of: {}",
            sections.into_iter().collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("unknown key; known keys here: {}", known.join(", "))
    }
}

/// Converts an environment string into a TOML value of the same kind as the default.
fn env_value(sample: &Value, raw: &str) -> Result<Value, String> {
    Ok(match sample {
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        Value::Boolean(_) => Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" | "" => false,
            _ => {
                return Err(format!(
                    "\"{raw}\" is not a boolean; accepted: true or false"
                ))
            }
        }),
        Value::Integer(_) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("\"{raw}\" is not an integer"))?,
        ),
        _ => Value::String(raw.into()),
    })
}

fn metrics_port_value(merged: &Table, raw: &str) -> Result<Value, String> {
    let port: u16 = raw
        .trim()
        .parse()
        .map_err(|_| format!("\"{raw}\" is not a port; accepted: 0 to 65535"))?;
    let current: Config = Value::Table(merged.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    let mut addr = current.metrics.addr.0;
    addr.set_port(port);
    Ok(Value::String(addr.to_string()))
}

/// Settings that are paths. From a flag or a `P2P_*` variable a relative one is taken against the
/// working directory, as other tools do; in a config file they must be absolute (the daemon's
/// working directory under a service manager is `/`, not where the file is).
const PATH_KEYS: [&str; 3] = ["storage.data_dir", "control.socket", "control.query_socket"];

/// `p` against the working directory when it is relative (not resolving symlinks, not requiring
/// it to exist); as it is when the working directory cannot be read.
fn absolute(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn flag_values(o: &Overrides) -> Vec<(&'static str, &'static str, Value)> {
    let s = |v: &str| Value::String(v.into());
    let list = |v: &[String]| Value::Array(v.iter().map(|x| s(x)).collect());
    let path = |p: &Path| s(&absolute(p).to_string_lossy());
    let mut out = Vec::new();
    if let Some(d) = &o.data_dir {
        out.push(("--data-dir", "storage.data_dir", path(d)));
    }
    if let Some(p) = &o.control_socket {
        out.push(("--control-socket", "control.socket", path(p)));
    }
    if !o.listen.is_empty() {
        out.push(("--listen", "network.listen", list(&o.listen)));
    }
    if !o.bootstrap.is_empty() {
        out.push(("--bootstrap", "network.bootstrap_peers", list(&o.bootstrap)));
    }
    if let Some(a) = &o.metrics_addr {
        out.push(("--metrics-addr", "metrics.addr", s(a)));
    }
    if let Some(f) = &o.log_format {
        out.push(("--log-format", "log.format", s(f)));
    }
    out
}

/// `{"a": {"b": v}}` for key "a.b".
fn nest(key: &str, value: Value) -> Table {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut t = Table::new();
    t.insert(last.into(), value);
    for p in parts.into_iter().rev() {
        let mut outer = Table::new();
        outer.insert(p.into(), Value::Table(t));
        t = outer;
    }
    t
}

/// Deep merge: tables merge key by key, anything else replaces.
fn merge(into: &mut Table, from: Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Leaf values by dotted key.
fn flatten(t: &Table) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, t: &Table, out: &mut BTreeMap<String, Value>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Table(inner) => walk(&key, inner, out),
                v => {
                    out.insert(key, v.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", t, &mut out);
    out
}

/// The dotted key defined on 1-based line `line` of a TOML text, as far as a simple reading of
/// `[section]` headers and `key = value` lines tells.
fn key_at(text: &str, line: usize) -> String {
    let mut section = String::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if i + 1 == line {
                return section;
            }
        } else if i + 1 == line {
            let key = l.split('=').next().unwrap_or("").trim().trim_matches('"');
            return match (section.is_empty(), key.is_empty()) {
                (_, true) => section,
                (true, false) => key.to_string(),
                (false, false) => format!("{section}.{key}"),
            };
        }
    }
    section
}

/// The 1-based line on which dotted `key` is set, if found.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let lines = text.lines().count();
    (1..=lines).find(|&l| key_at(text, l) == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_file(text: &str) -> (tempfile::NamedTempFile, Overrides) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let o = Overrides {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        (f, o)
    }

    #[test]
    fn relative_paths_from_flags_and_variables_are_taken_against_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        let o = Overrides {
            data_dir: Some("node-a".into()),
            ..Default::default()
        };
        let (c, _) = load(Mode::User, &o, env(&[])).unwrap();
        assert_eq!(c.storage.data_dir, cwd.join("node-a"));
        // The control socket follows the data dir, absolute too.
        assert_eq!(
            c.control.socket,
            cwd.join("node-a").join(paths::SOCKET_NAME)
        );
        let (c, _) = load(
            Mode::User,
            &Overrides::default(),
            env(&[("P2P_DATA_DIR", "b/dir"), ("P2P_CONTROL__SOCKET", "s.sock")]),
        )
        .unwrap();
        assert_eq!(c.storage.data_dir, cwd.join("b/dir"));
        assert_eq!(c.control.socket, cwd.join("s.sock"));
        // In a config file a relative path is an error that says where one is accepted.
        let (_f, o) = with_file("[storage]\ndata_dir = \"rel\"\n");
        let e = load(Mode::User, &o, env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("storage.data_dir")
                && e.contains("not an absolute path")
                && e.contains("flag"),
            "{e}"
        );
    }

    #[test]
    fn precedence_default_file_env_flag() {
        let (_f, mut o) =
            with_file("[limits]\nmax_inbound = 10\nmax_outbound = 11\nmax_per_peer = 3\n");
        let e = env(&[
            ("P2P_LIMITS__MAX_OUTBOUND", "20"),
            ("P2P_MAX_CONNECTIONS", "99"),
            ("P2P_METRICS_PORT", "9999"),
        ]);
        o.listen = vec!["/ip4/127.0.0.1/tcp/5555".into()];
        let (c, _) = load(Mode::User, &o, e).unwrap();
        assert_eq!(c.limits.max_inbound, 10);
        assert_eq!(c.limits.max_outbound, 20);
        assert_eq!(c.limits.max_per_peer, 3);
        assert_eq!(c.limits.max_connections, 99);
        assert_eq!(c.metrics.addr.0.port(), 9999);
        assert_eq!(c.network.listen.len(), 1);
        assert_eq!(c.limits.max_pending_inbound, 128);
    }

    #[test]
    fn errors_name_key_and_source() {
        let (_f, o) = with_file("[limits]\n\nmax_inboundd = 10\n");
        let e = load(Mode::User, &o, env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("limits.max_inboundd") && e.contains("line 3"),
            "{e}"
        );

        let (_f, o) = with_file("[limits]\nmax_inbound = 0\n");
        let e = load(Mode::User, &o, env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("limits.max_inbound") && e.contains("line 2") && e.contains("1 to"),
            "{e}"
        );

        let e = load(
            Mode::User,
            &Overrides::default(),
            env(&[("P2P_LISTEN_ADDRS", "/ip4/1.2.3.4/tcpx/1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("network.listen") && e.contains("P2P_LISTEN_ADDRS"),
            "{e}"
        );

        let e = load(
            Mode::User,
            &Overrides::default(),
            env(&[("P2P_LIMITS__NOPE", "1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("limits.nope") && e.contains("P2P_LIMITS__NOPE"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn unknown_sections_in_env_are_errors() {
        let e = load(Mode::User, &Overrides::default(), env(&[("P2P_FOO", "1")])).unwrap_err();
        assert!(e.to_string().contains("P2P_FOO"));
    }
}
