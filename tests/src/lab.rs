//! A network lab in network namespaces, made and torn down by the test itself: an "internet"
//! segment (a bridge in its own namespace, addresses in 198.51.100.0/24, the documentation
//! range), hosts on it, and hosts behind NAT routers (a router namespace with a WAN address on
//! the internet segment, a private LAN 10.K.0.0/24 behind it, and nftables masquerade). Nothing
//! outside the lab's namespaces is ever contacted: the internet segment has no route out.
//!
//! Needs root and Debian's iproute2 and nftables. Every namespace is deleted when the lab is
//! dropped (also when a test fails), and namespaces left by a killed run are deleted by the
//! next lab.
//!
//! ```text
//! let mut lab = Lab::new();
//! let relay = lab.public("relay");
//! let a = lab.behind_nat("a", NatKind::Cone);
//! // start p2pd in relay.ns and a.ns (NodeOpts::netns), dial relay.ip from a
//! ```

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// How a NAT router maps its hosts' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Masquerade keeping the source port where it can: one mapping per host port whatever the
    /// destination (endpoint-independent), which hole punching needs.
    Cone,
    /// Masquerade with a random port per connection: a new mapping per destination, so the
    /// address a relay sees is useless to anyone else (hole punching fails).
    Symmetric,
}

/// A host in the lab: its namespace and its address.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
    /// For a host behind a NAT: the router's public address (what peers see).
    pub public_ip: Option<Ipv4Addr>,
}

pub struct Lab {
    prefix: String,
    internet: String,
    namespaces: Vec<String>,
    /// Ports on the internet bridge so far.
    ports: u8,
    /// NAT routers so far.
    routers: u8,
}

const NS_PREFIX: &str = "p2l-";

/// Runs a command; panics with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install iproute2 and nftables): {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// Deletes namespaces of earlier labs whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Lab {
    /// An empty internet segment. Panics (with what to install) when the tools are missing.
    pub fn new() -> Lab {
        static LABS: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NS_PREFIX}{}-{n}-", std::process::id());
        let mut lab = Lab {
            internet: format!("{prefix}inet"),
            prefix,
            namespaces: Vec::new(),
            ports: 0,
            routers: 0,
        };
        let inet = lab.internet.clone();
        lab.namespace(&inet);
        ip(&["-n", &inet, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &inet, "link", "set", "br0", "up"]);
        lab
    }

    fn namespace(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.namespaces.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// Plugs `ns` into the internet segment as interface `wan` with the next public address.
    fn plug(&mut self, ns: &str) -> Ipv4Addr {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        let addr = Ipv4Addr::new(198, 51, 100, 10 + self.ports);
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            "wan",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.internet,
        ]);
        ip(&[
            "-n",
            &self.internet,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "wan"]);
        ip(&["-n", ns, "link", "set", "wan", "up"]);
        addr
    }

    /// A host on the internet segment, reachable by every other host.
    pub fn public(&mut self, name: &str) -> Host {
        let ns = format!("{}{name}", self.prefix);
        self.namespace(&ns);
        let ip = self.plug(&ns);
        Host {
            ns,
            ip,
            public_ip: None,
        }
    }

    /// A host alone on a private LAN behind its own NAT router on the internet segment.
    pub fn behind_nat(&mut self, name: &str, kind: NatKind) -> Host {
        self.routers += 1;
        let k = self.routers;
        let router = format!("{}{name}-nat", self.prefix);
        self.namespace(&router);
        let public = self.plug(&router);
        let ns = format!("{}{name}", self.prefix);
        self.namespace(&ns);
        let (gw, host) = (Ipv4Addr::new(10, k, 0, 1), Ipv4Addr::new(10, k, 0, 2));
        ip(&[
            "-n", &router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            "lan",
        ]);
        ip(&["-n", &router, "link", "set", "lan", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{host}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "default", "via", &gw.to_string()]);
        run(
            "ip",
            &[
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        let how = match kind {
            NatKind::Cone => "masquerade",
            NatKind::Symmetric => "masquerade fully-random",
        };
        // Like a home router: nothing unsolicited gets in from the internet, and it is dropped
        // silently (no RST or ICMP that would tear down the mappings hole punching makes).
        let rules = format!(
            "add table ip nat\n\
             add chain ip nat post {{ type nat hook postrouting priority 100; }}\n\
             add rule ip nat post oifname \"wan\" ip saddr 10.{k}.0.0/24 {how}\n\
             add table ip filter\n\
             add chain ip filter input {{ type filter hook input priority 0; }}\n\
             add rule ip filter input iifname \"wan\" ct state new drop\n\
             add chain ip filter forward {{ type filter hook forward priority 0; }}\n\
             add rule ip filter forward iifname \"wan\" ct state new drop\n"
        );
        let path = std::env::temp_dir().join(format!("{router}.nft"));
        std::fs::write(&path, rules).expect("the nft rules written");
        let file = path.to_string_lossy().into_owned();
        run("ip", &["netns", "exec", &router, "nft", "-f", &file]);
        let _ = std::fs::remove_file(&path);
        Host {
            ns,
            ip: host,
            public_ip: Some(public),
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
