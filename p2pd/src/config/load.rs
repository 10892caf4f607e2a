//! Layering of defaults, file, environment and flags on figment, which keeps the layer of every
//! key; toml's spanned parser gives the file line of any key, so an error names where a bad value
//! came from.

use super::{values, Config};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use p2pd_proto::paths::{self, Mode};
use serde::Deserialize;
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
            Source::Env(v) => write!(f, "{ENV_PREFIX}{v}"),
            Source::Flag(n) => write!(f, "{FLAG_PREFIX}{n}"),
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

/// One layer of the configuration for figment: its values and where they came from.
#[derive(Clone)]
struct Layer {
    from: Source,
    data: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let m = Metadata::named(self.from.to_string());
        match &self.from {
            Source::File { path, .. } => m.source(figment::Source::File(path.clone())),
            _ => m,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

impl Layer {
    /// `value` under the dotted `key`.
    fn one(from: Source, key: &str, value: Value) -> Result<Layer, String> {
        let mut value = figment::value::Value::serialize(value).map_err(|e| e.to_string())?;
        for part in key.rsplit('.') {
            let mut d = Dict::new();
            d.insert(part.to_string(), value);
            value = d.into();
        }
        match value.into_dict() {
            Some(data) => Ok(Layer { from, data }),
            None => Err("not a table".into()),
        }
    }
}

/// The config file, parsed once: its values, and the line of every key in it (also keys in
/// inline tables and array elements, `network.listen[1]`).
struct File {
    path: PathBuf,
    data: Dict,
    lines: BTreeMap<String, usize>,
}

impl File {
    fn read(path: &Path) -> Result<File, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: format!("{e}; check the path and that the p2pd user may read it"),
        })?;
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let (root, errors) = toml::de::DeTable::parse_recoverable(&text);
        let mut lines = BTreeMap::new();
        key_lines("", root.get_ref(), &line, &mut lines);
        if let Some(e) = errors.first() {
            let at = e.span().map(|s| line(s.start));
            // The key on the broken line, if the parser got that far.
            let key = at
                .and_then(|l| lines.iter().find(|(_, kl)| **kl == l))
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| "(syntax)".into());
            return Err(ConfigError::Invalid {
                key,
                from: Source::File {
                    path: path.to_path_buf(),
                    line: at,
                },
                message: one_line(e.message()),
            });
        }
        let data = Dict::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
            ConfigError::Invalid {
                key: "(syntax)".into(),
                from: Source::File {
                    path: path.to_path_buf(),
                    line: None,
                },
                message: one_line(e.message()),
            }
        })?;
        Ok(File {
            path: path.to_path_buf(),
            data,
            lines,
        })
    }

    /// The line of `key`, or of the nearest enclosing key found in the file.
    fn line_of(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(l) = self.lines.get(k) {
                return Some(*l);
            }
            k = &k[..k.rfind(['.', '['])?];
        }
    }

    fn layer(&self) -> Layer {
        Layer {
            from: Source::File {
                path: self.path.clone(),
                line: None,
            },
            data: self.data.clone(),
        }
    }
}

fn key_lines(
    prefix: &str,
    table: &toml::de::DeTable,
    line: &dyn Fn(usize) -> usize,
    out: &mut BTreeMap<String, usize>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.insert(key.clone(), line(k.span().start));
        value_lines(&key, v, line, out);
    }
}

fn value_lines(
    key: &str,
    v: &toml::Spanned<toml::de::DeValue>,
    line: &dyn Fn(usize) -> usize,
    out: &mut BTreeMap<String, usize>,
) {
    match v.get_ref() {
        toml::de::DeValue::Table(t) => key_lines(key, t, line, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{key}[{i}]");
                out.insert(at.clone(), line(item.span().start));
                value_lines(&at, item, line, out);
            }
        }
        _ => {}
    }
}

/// Loads the effective config: figment merges the layers (defaults < file < `P2P_*` variables <
/// flags) and keeps which layer set each key; an error names the key, the layer (with the file's
/// line) and what is accepted. Each layer is also checked alone, so a bad value is refused even
/// where a higher layer overrides it. `env` is the process environment (passed in for tests).
/// Returns the config and the file it read, if any.
pub fn load(
    mode: Mode,
    overrides: &Overrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let defaults = Config::defaults(mode);
    let kinds = flatten(&to_table(&defaults));
    let default_layer = Layer {
        from: Source::Default,
        data: figment::value::Value::serialize(&defaults)
            .ok()
            .and_then(|v| v.into_dict())
            .unwrap_or_default(),
    };
    let path = overrides
        .config
        .clone()
        .or_else(|| paths::default_config_file(mode).filter(|p| p.exists()));
    let file = path.as_deref().map(File::read).transpose()?;
    let errors = Errors {
        file: file.as_ref(),
    };

    let mut layers = Vec::new();
    if let Some(f) = &file {
        layers.push(f.layer());
    }
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    for (var, raw) in env {
        let Some(key) = env_key(&var) else { continue };
        let src = Source::Env(var.clone());
        let sample = kinds
            .get(&key)
            .ok_or_else(|| invalid(&key, &src, unknown_key_hint(&key, &kinds)))?;
        let value = if var == "P2P_METRICS_PORT" {
            let so_far = layers
                .iter()
                .fold(Figment::from(default_layer.clone()), |f, l| {
                    f.merge(l.clone())
                });
            let addr: values::Text<std::net::SocketAddr> = so_far
                .extract_inner("metrics.addr")
                .map_err(|e| errors.convert(&so_far, e))?;
            metrics_port_value(addr.0, &raw).map_err(|m| invalid(&key, &src, m))?
        } else if PATH_KEYS.contains(&key.as_str()) && !raw.is_empty() {
            Value::String(absolute(Path::new(&raw)).to_string_lossy().into_owned())
        } else {
            env_value(sample, &raw).map_err(|m| invalid(&key, &src, m))?
        };
        layers.push(Layer::one(src.clone(), &key, value).map_err(|m| invalid(&key, &src, m))?);
    }
    for (flag, key, value) in flag_values(overrides) {
        let src = Source::Flag(flag.into());
        layers.push(Layer::one(src.clone(), key, value).map_err(|m| invalid(key, &src, m))?);
    }

    // Each layer alone over the defaults, then all of them.
    let mut figment = Figment::from(default_layer);
    for layer in layers {
        let alone = Figment::from(Layer {
            from: Source::Default,
            data: Dict::new(),
        })
        .merge(layer.clone());
        if let Err(e) = alone.extract::<Config>() {
            return Err(errors.convert(&alone, e));
        }
        figment = figment.merge(layer);
    }
    let mut config: Config = figment.extract().map_err(|e| errors.convert(&figment, e))?;
    let set = |key: &str| {
        figment
            .find_metadata(key)
            .is_some_and(|m| m.name != Source::Default.to_string())
    };
    if !set("control.socket") && set("storage.data_dir") {
        // The user-mode socket falls back to the data dir: follow a data dir that was moved.
        if mode == Mode::User && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            config.control.socket = config.storage.data_dir.join(paths::SOCKET_NAME);
        }
    }
    if !set("control.query_socket") {
        // The read-only socket goes where the control socket goes.
        config.control.query_socket = paths::query_socket_for(&config.control.socket);
    }
    if let Some((key, message)) = config.check().into_iter().next() {
        let from = errors.source_of(figment.find_metadata(&key), &key);
        return Err(ConfigError::Invalid { key, from, message });
    }
    Ok((config, path))
}

/// Turns figment's errors into one line an operator can act on.
struct Errors<'a> {
    file: Option<&'a File>,
}

impl Errors<'_> {
    /// The layer a value came from, with the file's line for the file.
    fn source_of(&self, meta: Option<&Metadata>, key: &str) -> Source {
        let Some(meta) = meta else {
            return Source::Default;
        };
        if let (Some(figment::Source::File(_)), Some(f)) = (&meta.source, self.file) {
            return Source::File {
                path: f.path.clone(),
                line: f.line_of(key),
            };
        }
        if let Some(var) = meta.name.strip_prefix(ENV_PREFIX) {
            return Source::Env(var.to_string());
        }
        if let Some(flag) = meta.name.strip_prefix(FLAG_PREFIX) {
            return Source::Flag(flag.to_string());
        }
        Source::Default
    }

    fn convert(&self, figment: &Figment, e: figment::Error) -> ConfigError {
        let key = dotted(&e.path);
        let meta = e
            .metadata
            .as_ref()
            .or_else(|| figment.find_metadata(&e.path.join(".")));
        let from = self.source_of(meta, &key);
        let message = describe(&key, &e.kind);
        ConfigError::Invalid {
            key: if key.is_empty() {
                "(config)".into()
            } else {
                key
            },
            from,
            message,
        }
    }
}

const ENV_PREFIX: &str = "environment variable ";
const FLAG_PREFIX: &str = "command-line flag ";

/// figment's key path as the operator writes it: `network.listen[1]`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// What is wrong, in the operator's words: the value as written and what is accepted (the range
/// for keys with one), never a Rust type.
fn describe(key: &str, kind: &figment::error::Kind) -> String {
    use figment::error::{Actual, Kind};
    let shown = |a: &Actual| match a {
        Actual::Signed(v) => format!("integer `{v}`"),
        Actual::Unsigned(v) => format!("integer `{v}`"),
        Actual::Float(v) => format!("number `{v}`"),
        Actual::Str(v) => format!("\"{v}\""),
        Actual::Bool(v) => format!("`{v}`"),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        other => other.to_string(),
    };
    let accepted = |expected: &str| {
        super::accepted(key).unwrap_or_else(|| match expected {
            "u32" | "u64" | "usize" => "a whole number, 0 or more".into(),
            "i64" | "i32" => "a whole number".into(),
            "a boolean" | "bool" => "true or false".into(),
            "a string" | "string" => "a string".into(),
            other => other.into(),
        })
    };
    match kind {
        Kind::Message(m) => one_line(m),
        Kind::InvalidType(a, expected) | Kind::InvalidValue(a, expected) => {
            format!(
                "{} is not accepted; accepted: {}",
                shown(a),
                accepted(expected)
            )
        }
        Kind::UnknownVariant(v, known) => {
            format!("\"{v}\" is not accepted; accepted: {}", known.join(", "))
        }
        Kind::UnknownField(_, known) => {
            format!("unknown key; known keys here: {}", known.join(", "))
        }
        other => one_line(&other.to_string()),
    }
}

fn one_line(s: &str) -> String {
    s.trim().replace('\n', " ")
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

/// `P2P_METRICS_PORT`: the metrics address so far, on this port.
fn metrics_port_value(mut addr: std::net::SocketAddr, raw: &str) -> Result<Value, String> {
    let port: u16 = raw
        .trim()
        .parse()
        .map_err(|_| format!("\"{raw}\" is not a port; accepted: 0 to 65535"))?;
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

    fn file_error(text: &str) -> String {
        let (_f, o) = with_file(text);
        load(Mode::User, &o, env(&[])).unwrap_err().to_string()
    }

    /// The line of a bad value wherever it sits: an element of a list written over several
    /// lines, a key of an inline table, a syntax error.
    #[test]
    fn errors_point_at_the_line_of_the_value() {
        let e = file_error(
            "[network]\nlisten = [\n  \"/ip4/127.0.0.1/tcp/1\",\n  \"/ip4/127.0.0.1/tcp/x\",\n]\n",
        );
        assert!(
            e.contains("network.listen[1]") && e.contains("line 4"),
            "{e}"
        );
        let e = file_error("# limits\n\nlimits = { max_inbound = 10, max_per_peer = 1000 }\n");
        assert!(
            e.contains("limits.max_per_peer") && e.contains("line 3") && e.contains("1 to 64"),
            "{e}"
        );
        let e = file_error("[limits]\nmax_inbound = 10\nmax_outbound = \n");
        assert!(e.contains("line 3"), "{e}");
        let e = file_error("[log]\nformat = \"xml\"\n");
        assert!(
            e.contains("log.format") && e.contains("accepted: auto, journald, json, text"),
            "{e}"
        );
        let e = file_error("[limits]\nmax_inbound = -5\n");
        assert!(
            e.contains("integer `-5` is not accepted; accepted: 1 to"),
            "{e}"
        );
        assert!(!e.contains("u32") && !e.contains('\n'), "{e}");
    }

    /// A bad value in the file is refused even where a variable overrides it.
    #[test]
    fn each_layer_is_checked_alone() {
        let (_f, o) = with_file("[limits]\nmax_inbound = -5\n");
        let e = load(Mode::User, &o, env(&[("P2P_LIMITS__MAX_INBOUND", "10")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    /// Keys set by a layer are known as set: the read-only socket follows a control socket
    /// given in the file, and check-style errors name the layer that set the key.
    #[test]
    fn provenance_of_merged_keys() {
        let (_f, o) = with_file("[control]\nsocket = \"/tmp/p2pd-x/c.sock\"\n");
        let (c, _) = load(Mode::User, &o, env(&[])).unwrap();
        assert_eq!(
            c.control.query_socket,
            paths::query_socket_for(&c.control.socket)
        );
        let e = load(Mode::User, &o, env(&[("P2P_LIMITS__MAX_PER_PEER", "1000")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("P2P_LIMITS__MAX_PER_PEER") && e.contains("1 to 64"),
            "{e}"
        );
    }

    #[test]
    fn unknown_sections_in_env_are_errors() {
        let e = load(Mode::User, &Overrides::default(), env(&[("P2P_FOO", "1")])).unwrap_err();
        assert!(e.to_string().contains("P2P_FOO"));
    }
}
