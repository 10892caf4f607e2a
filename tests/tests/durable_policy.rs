//! Acknowledged policy changes are durable: they survive a reload racing them, and a `kill -9`
//! at any moment; runtime limits are checked exactly as the config file checks them.

use p2pd_e2e::{bin, clean_command, Node, NodeOpts, Tmpfs, Transport};
use std::collections::BTreeSet;
use std::path::Path;

fn opts() -> NodeOpts {
    NodeOpts {
        transport: Transport::Tcp,
        ..Default::default()
    }
}

fn listed_bans(node: &Node) -> BTreeSet<String> {
    node.ctl_json(&["bans"])["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .filter_map(|b| b["target"].as_str().map(String::from))
        .collect()
}

/// The ban list on disk: it must always parse.
fn bans_on_disk(data: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(data.join("bans.json")).unwrap_or_else(|_| "{}".into());
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("bans.json does not parse ({e}):\n{text}"));
    let bans = v["bans"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b["target"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let trusted = v["trusted"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (bans, trusted)
}

/// 200 bans, each followed at once by a reload (p2pctl reload and SIGHUP in turn): every
/// acknowledged ban is listed and on disk at the end.
#[test]
fn bans_acknowledged_just_before_a_reload_are_kept() {
    let n = Node::start("n", opts());
    let mut acknowledged = BTreeSet::new();
    for i in 0..200u32 {
        let target = format!("198.18.{}.{}", i / 200, i % 200 + 1);
        let out = n.ctl(&["ban", &target, "--reason", "reload race"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        acknowledged.insert(target);
        if i % 2 == 0 {
            assert!(n.ctl(&["reload"]).status.success());
        } else {
            let pid = nix::unistd::Pid::from_raw(n.pid() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
        }
    }
    // One more reload through the socket waits for the SIGHUPs before it (one at a time).
    assert!(n.ctl(&["reload"]).status.success());
    let listed = listed_bans(&n);
    let missing: Vec<_> = acknowledged.difference(&listed).collect();
    assert!(missing.is_empty(), "lost from p2pctl bans: {missing:?}");
    let (on_disk, _) = bans_on_disk(&n.data_dir());
    let missing: Vec<_> = acknowledged.difference(&on_disk).collect();
    assert!(missing.is_empty(), "lost from bans.json: {missing:?}");
}

/// An edit an operator makes to bans.json is applied by a reload, and changes made through
/// p2pctl are not undone by it.
#[test]
fn reload_merges_operator_edits() {
    let n = Node::start("n", opts());
    for t in ["192.0.2.1", "192.0.2.2"] {
        assert!(n.ctl(&["ban", t]).status.success());
    }
    let path = n.data_dir().join("bans.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("bans.json")).expect("json");
    let list = v["bans"].as_array_mut().expect("bans");
    list.retain(|b| b["target"] != "192.0.2.1");
    let mut added = list[0].clone();
    added["target"] = "192.0.2.9".into();
    list.push(added);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
    assert!(n.ctl(&["reload"]).status.success());
    assert_eq!(
        listed_bans(&n),
        ["192.0.2.2", "192.0.2.9"].map(String::from).into()
    );
}

/// A tiny deterministic generator, so a failing iteration can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[derive(Debug)]
enum Op {
    Ban(String),
    Unban(String),
    Trust(String),
    Limit(u32),
}

/// 100 times: a stream of ban/unban/trust/limits changes, `kill -9` after a random number of
/// them were acknowledged (the stream goes on), restart. Every acknowledged change is there,
/// no acknowledged unban is undone, the state files parse, no temp file is left.
#[test]
fn acknowledged_changes_survive_kill_9_at_any_moment() {
    let mut n = Node::start("n", opts());
    let mut rng = Lcg(0x5eed);
    let mut banned = BTreeSet::new();
    let mut unbanned = BTreeSet::new();
    let mut trusted = BTreeSet::new();
    let mut acknowledged = 0;
    for round in 0..100u64 {
        let kill_after = rng.next(8);
        let mut ops = Vec::new();
        for k in 0..12u64 {
            let op = match rng.next(4) {
                0 | 1 => Op::Ban(format!("198.19.{round}.{k}")),
                2 if !banned.is_empty() => {
                    let pick = rng.next(banned.len() as u64) as usize;
                    Op::Unban(banned.iter().nth(pick).cloned().expect("pick"))
                }
                2 => Op::Limit(100 + k as u32),
                _ => Op::Trust(
                    libp2p::identity::Keypair::generate_ed25519()
                        .public()
                        .to_peer_id()
                        .to_string(),
                ),
            };
            ops.push(op);
        }
        let socket = n.socket.clone();
        let home = n.dir.clone();
        let pid = n.pid();
        let worker = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut tried = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                if i as u64 == kill_after {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let args: Vec<String> = match &op {
                    Op::Ban(t) => vec!["ban".into(), t.clone()],
                    Op::Unban(t) => vec!["unban".into(), t.clone()],
                    Op::Trust(p) => vec!["trust".into(), "add".into(), p.clone()],
                    Op::Limit(v) => vec![
                        "limits".into(),
                        "set".into(),
                        "max_inbound".into(),
                        v.to_string(),
                    ],
                };
                let ok = clean_command(&bin("p2pctl"), &home)
                    .arg("--socket")
                    .arg(&socket)
                    .args(["--timeout", "2s"])
                    .args(&args)
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    acked.push(op);
                } else {
                    tried.push(op);
                }
            }
            (acked, tried)
        });
        let (acked, tried) = worker.join().expect("worker");
        acknowledged += acked.len();
        n.reap();
        for op in acked {
            match op {
                Op::Ban(t) => {
                    unbanned.remove(&t);
                    banned.insert(t);
                }
                Op::Unban(t) => {
                    banned.remove(&t);
                    unbanned.insert(t);
                }
                Op::Trust(p) => {
                    trusted.insert(p);
                }
                Op::Limit(_) => {}
            }
        }
        // A change that was not acknowledged may or may not have happened: stop judging its
        // target.
        for op in tried {
            match op {
                Op::Ban(t) | Op::Unban(t) => {
                    banned.remove(&t);
                    unbanned.remove(&t);
                }
                Op::Trust(_) | Op::Limit(_) => {}
            }
        }
        let (on_disk, trusted_on_disk) = bans_on_disk(&n.data_dir());
        n.spawn(&opts());
        let listed = listed_bans(&n);
        let lost: Vec<_> = banned.difference(&listed).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged bans lost: {lost:?}"
        );
        let undone: Vec<_> = unbanned.intersection(&listed).collect();
        assert!(
            undone.is_empty(),
            "round {round}: acknowledged unbans undone: {undone:?}"
        );
        assert!(
            banned.is_subset(&on_disk),
            "round {round}: bans.json misses bans"
        );
        assert!(
            trusted.is_subset(&trusted_on_disk),
            "round {round}: bans.json misses trust"
        );
        let temps: Vec<_> = std::fs::read_dir(n.data_dir())
            .expect("data dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.contains(".tmp"))
            .collect();
        assert!(
            temps.is_empty(),
            "round {round}: temp files left: {temps:?}"
        );
        for f in ["routing_table.json", "replay.json"] {
            if let Ok(text) = std::fs::read(n.data_dir().join(f)) {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&text).is_ok(),
                    "round {round}: {f} does not parse"
                );
            }
        }
    }
    assert!(
        acknowledged >= 200,
        "too few acknowledged changes to judge: {acknowledged}"
    );
    let runtime_trust: BTreeSet<String> = n.ctl_json(&["trust", "ls"])["peers"]
        .as_array()
        .expect("trust")
        .iter()
        .filter_map(|t| t["peer_id"].as_str().map(String::from))
        .collect();
    assert!(trusted.is_subset(&runtime_trust));
}

/// `limits set` refuses every value the config file refuses, with the same message.
#[test]
fn limits_set_refuses_what_the_config_refuses_with_the_same_message() {
    let n = Node::start("n", opts());
    let cases = [
        (
            "max_per_peer",
            "1000",
            "1000 is out of range; accepted: 1 to 64",
        ),
        (
            "max_inbound",
            "0",
            "0 is out of range; accepted: 1 to 1000000",
        ),
        (
            "max_pending_inbound",
            "100001",
            "100001 is out of range; accepted: 1 to 100000",
        ),
        (
            "max_memory",
            "2TiB",
            "2TiB is out of range; accepted: 16MiB to 1TiB",
        ),
        (
            "max_memory",
            "1MiB",
            "1MiB is out of range; accepted: 16MiB to 1TiB",
        ),
        (
            "max_inbound_per_ip",
            "0",
            "0 is out of range; accepted: 1 to 1000000",
        ),
    ];
    for (name, value, message) in cases {
        let out = n.ctl(&["limits", "set", name, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}={value} accepted at runtime"
        );
        assert!(err.contains(message), "limits set {name} {value}: {err}");

        let var = format!("P2P_LIMITS__{}", name.to_uppercase());
        let check = clean_command(&bin("p2pd"), &n.dir)
            .arg("check-config")
            .env(&var, value)
            .output()
            .expect("p2pd check-config");
        let cerr = String::from_utf8_lossy(&check.stderr);
        assert_eq!(
            check.status.code(),
            Some(78),
            "{var}={value} accepted in the config"
        );
        assert!(cerr.contains(message), "{var}={value}: {cerr}");
    }
    // Untouched limits say so; a value both accept is applied at once.
    let source = |list: &serde_json::Value, name: &str| {
        list["limits"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["name"] == name))
            .map(|l| l["source"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let before = n.ctl_json(&["limits"]);
    assert_eq!(source(&before, "max_per_peer"), "default", "{before}");
    let limits = n.ctl_json(&["limits", "set", "max_per_peer", "64"]);
    assert!(limits.to_string().contains("\"runtime\""), "{limits}");
    let after = n.ctl_json(&["limits"]);
    assert_eq!(source(&after, "max_per_peer"), "runtime", "{after}");
}

/// Ban durations are bounded (100 years; "permanent" is its own value) and checked before any
/// arithmetic, so a huge one cannot wrap into an expiry in the past; listing never breaks.
#[test]
fn ban_durations_are_bounded_and_every_ban_lists() {
    let n = Node::start("n", opts());
    let out = n.ctl(&["ban", "192.0.2.50", "--for", "10000years"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most 100 years"), "{err}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let refused = rt.block_on(async {
        let mut c = p2pctl::Client::connect(&n.socket).await.expect("connect");
        let target = "192.0.2.51".parse().expect("target");
        c.ban(&target, Some(std::time::Duration::MAX), Some("overflow"))
            .await
    });
    let e = refused.expect_err("a ban of 2^64-1 seconds was accepted");
    assert!(e.to_string().contains("at most 100 years"), "{e}");

    assert!(n
        .ctl(&["ban", "192.0.2.52", "--for", "99years"])
        .status
        .success());
    let listed = n.ctl(&["bans"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("192.0.2.52"));
    assert_eq!(listed_bans(&n), ["192.0.2.52".to_string()].into());
}

/// On a full disk, ban, trust and unban fail with an error that says so, the running node keeps
/// only what is on disk, and after a restart `p2pctl bans` is exactly what was acknowledged.
#[test]
fn a_full_disk_refuses_changes_and_keeps_what_was_acknowledged() {
    let mut n = Node::start("n", opts());
    assert!(n.stop().success());
    let data = n.data_dir();
    let Some(_mount) = Tmpfs::mount(&data, "2m") else {
        eprintln!("skipped: mounting a small tmpfs needs root (scripts/test.sh runs as root)");
        return;
    };
    n.spawn(&opts());
    assert!(n
        .ctl(&["ban", "192.0.2.1", "--reason", "before"])
        .status
        .success());

    // Fill the file system.
    let mut filler = std::fs::File::create(data.join("filler")).expect("filler");
    let block = vec![0u8; 64 << 10];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);

    let peer = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_string();
    for args in [
        vec!["ban", "192.0.2.2"],
        vec!["trust", "add", peer.as_str()],
        vec!["unban", "192.0.2.1"],
    ] {
        let out = n.ctl(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} succeeded on a full disk"
        );
        assert!(err.contains("could not be written"), "{args:?}: {err}");
    }
    // Nothing refused lives on in memory.
    assert_eq!(listed_bans(&n), ["192.0.2.1".to_string()].into());
    assert!(!n.ctl_json(&["trust", "ls"]).to_string().contains(&peer));

    // Space again: changes work, and a restart loads exactly what was acknowledged.
    std::fs::remove_file(data.join("filler")).expect("remove filler");
    assert!(n.ctl(&["ban", "192.0.2.3"]).status.success());
    assert!(n.stop().success());
    n.spawn(&opts());
    assert_eq!(
        listed_bans(&n),
        ["192.0.2.1", "192.0.2.3"].map(String::from).into()
    );
    assert!(n.stop().success());
}

/// A published blocklist of 50,000 lines goes in with one command: comments and blank lines
/// skipped, lines that are no target listed with why, every ban listed (in pages), refused at
/// once, and still there after a restart (from the journal).
#[test]
fn a_blocklist_of_50000_lines_is_imported_in_one_step() {
    let mut n = Node::start("n", opts());
    let mut text = String::from("# a published blocklist\n\n");
    for i in 0..49_990u32 {
        let [_, _, c, d] = (0xc612_0000 + i).to_be_bytes();
        match i % 10 {
            0 => text.push_str(&format!("10.{c}.{d}.0/24  # a range\n")),
            _ => text.push_str(&format!("198.18.{c}.{d}\n")),
        }
    }
    text.push_str("127.0.0.2\nnot-an-address\n300.1.1.1\n10.0.0.0/33\n");
    let file = n.dir.join("blocklist.txt");
    std::fs::write(&file, &text).expect("write the list");
    let out = n.ctl(&[
        "--json",
        "ban",
        "--from-file",
        file.to_str().expect("path"),
        "--reason",
        "blocklist",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["accepted"], 49_991, "{v}");
    let rejected: Vec<String> = v["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["target"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        rejected,
        [
            "line 49994: not-an-address",
            "line 49995: 300.1.1.1",
            "line 49996: 10.0.0.0/33"
        ]
    );
    let count = |n: &Node| n.ctl_json(&["bans"])["bans"].as_array().map_or(0, Vec::len);
    assert_eq!(count(&n), 49_991);
    // A banned address is refused at once.
    let target = p2pd_e2e::socket_addr(&n.multiaddr(Transport::Tcp));
    let mut s = p2pd_e2e::connect_from([127, 0, 0, 2], target);
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let _ = std::io::Write::write_all(&mut s, b"\x13/multistream/1.0.0\n");
    let mut buf = [0u8; 64];
    let answered = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
    assert_eq!(answered, 0, "a banned address was answered");
    // Durable: a restart (after a kill, no clean shutdown) loads them all.
    let pid = nix::unistd::Pid::from_raw(n.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    n.reap();
    n.spawn(&opts());
    assert_eq!(count(&n), 49_991);
}
