//! A bad config fails start-up with one line naming the key and its source; never a panic.

use p2pd_e2e::{bin, clean_command};
use std::process::Output;
use std::time::Duration;

fn start_with(file: Option<&str>, env: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = clean_command(&bin("p2pd"), tmp.path());
    cmd.arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--control-socket")
        .arg(tmp.path().join("control.sock"))
        .arg("--metrics-addr")
        .arg("127.0.0.1:0");
    if let Some(text) = file {
        let path = tmp.path().join("p2pd.toml");
        std::fs::write(&path, text).expect("write config");
        cmd.arg("--config").arg(path);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = p2pd_e2e::wait_until(Duration::from_secs(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        exited,
        "p2pd started with a bad config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, tmp)
}

fn assert_refused(out: &Output, key: &str, source: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(key), "message should name {key}: {err}");
    assert!(err.contains(source), "message should name {source}: {err}");
}

#[test]
fn unknown_key_in_file() {
    let (out, _t) = start_with(Some("[limits]\nmax_inbound = 10\nmax_inboud = 5\n"), &[]);
    assert_refused(&out, "limits.max_inboud", "p2pd.toml line 3");
}

#[test]
fn unknown_key_in_env() {
    let (out, _t) = start_with(None, &[("P2P_LIMITS__MAX_INBOUD", "5")]);
    assert_refused(&out, "limits.max_inboud", "P2P_LIMITS__MAX_INBOUD");
}

#[test]
fn invalid_multiaddr_in_file() {
    let (out, _t) = start_with(
        Some("[network]\nlisten = [\"/ip4/127.0.0.1/tcp/notaport\"]\n"),
        &[],
    );
    assert_refused(&out, "network.listen", "p2pd.toml line 2");
}

#[test]
fn invalid_multiaddr_in_env() {
    let (out, _t) = start_with(
        None,
        &[(
            "P2P_LISTEN_ADDRS",
            "/ip4/127.0.0.1/tcp/0,/ip4/300.1.1.1/tcp/1",
        )],
    );
    assert_refused(&out, "network.listen", "P2P_LISTEN_ADDRS");
}

#[test]
fn out_of_range_limit_in_file() {
    let (out, _t) = start_with(Some("# limits\n[limits]\nmax_per_peer = 1000\n"), &[]);
    assert_refused(&out, "limits.max_per_peer", "p2pd.toml line 3");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 to 64"));
}

/// A value of the wrong type names the accepted range, not a Rust type ("expected u32").
#[test]
fn negative_limit_names_the_accepted_range() {
    let (out, _t) = start_with(Some("[limits]\nmax_inbound = -5\n"), &[]);
    assert_refused(&out, "limits.max_inbound", "p2pd.toml line 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("accepted: 1 to 1000000"), "{err}");
    assert!(!err.contains("u32"), "{err}");
    let (out, _t) = start_with(None, &[("P2P_RATE_LIMIT__CAPACITY", "-1")]);
    assert_refused(&out, "rate_limit.capacity", "P2P_RATE_LIMIT__CAPACITY");
}

/// check-config exits with the same status as a refused start (78, EX_CONFIG).
#[test]
fn check_config_exits_78_on_a_bad_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("p2pd.toml");
    std::fs::write(&path, "[limits]\nmax_inbound = 0\n").expect("write");
    let out = clean_command(&bin("p2pd"), tmp.path())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn out_of_range_limit_in_env() {
    let (out, _t) = start_with(None, &[("P2P_MAX_CONNECTIONS", "0")]);
    assert_refused(&out, "limits.max_connections", "P2P_MAX_CONNECTIONS");
}

#[test]
fn check_config_prints_the_effective_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("p2pd.toml");
    std::fs::write(&path, "[limits]\nmax_inbound = 77\n").expect("write");
    let out = clean_command(&bin("p2pd"), tmp.path())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env("P2P_LIMITS__MAX_OUTBOUND", "33")
        .env("P2P_METRICS_PORT", "9555")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("max_inbound = 77"), "{text}");
    assert!(text.contains("max_outbound = 33"), "{text}");
    assert!(text.contains("127.0.0.1:9555"), "{text}");
    // The printed config is itself a valid config file.
    std::fs::write(&path, text.as_bytes()).expect("write");
    let again = clean_command(&bin("p2pd"), tmp.path())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// The shipped conffile documents every key: uncommenting every `# key = value` line gives a
/// valid config that sets each key the daemon knows.
#[test]
fn default_conffile_documents_every_key() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped =
        std::fs::read_to_string(root.join("packaging/p2pd.toml")).expect("packaging/p2pd.toml");
    let mut seen = std::collections::BTreeSet::new();
    let mut section = String::new();
    let mut uncommented = String::new();
    for line in shipped.lines() {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            uncommented.push_str(line);
            uncommented.push('\n');
        } else if let Some(kv) = line
            .strip_prefix("# ")
            .filter(|l| l.contains(" = ") && !l.starts_with(' '))
        {
            let key = kv.split(" = ").next().unwrap_or("").to_string();
            if seen.insert(format!("{section}.{key}")) {
                uncommented.push_str(kv);
                uncommented.push('\n');
            }
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("p2pd.toml");
    std::fs::write(&path, &uncommented).expect("write");
    let out = clean_command(&bin("p2pd"), tmp.path())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}\n{uncommented}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every key of the effective config is documented.
    let effective = String::from_utf8_lossy(&out.stdout).to_string();
    let mut section = String::new();
    for line in effective.lines() {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                seen.contains(&format!("{section}.{key}")),
                "{section}.{key} is not documented in packaging/p2pd.toml"
            );
        }
    }
}

/// A port already in use fails the start with who holds it and how to give p2pd another one
/// (exit 1: not a config error, the other service may go away).
#[test]
fn port_in_use_names_the_holder_and_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let me = format!("pid {}", std::process::id());
    for (flag, value, fix) in [
        (
            "--metrics-addr",
            format!("127.0.0.1:{port}"),
            "P2P_METRICS_PORT",
        ),
        (
            "--listen",
            format!("/ip4/127.0.0.1/tcp/{port}"),
            "P2P_LISTEN_ADDRS",
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut cmd = clean_command(&bin("p2pd"), tmp.path());
        cmd.arg("--data-dir")
            .arg(tmp.path().join("data"))
            .arg("--control-socket")
            .arg(tmp.path().join("control.sock"));
        if flag == "--listen" {
            cmd.args(["--metrics-addr", "127.0.0.1:0"]);
        }
        let out = cmd
            .args([flag, &value])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
            .wait_with_output()
            .expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("in use"), "{err}");
        assert!(err.contains(&me), "the holder is this test process: {err}");
        assert!(err.contains(fix), "{err}");
    }
}
