//! Test harness: real `p2pd` processes on 127.0.0.1 with their own temp dirs, driven by the
//! real `p2pctl` binary. Every wait is a poll for a condition with a deadline.

pub mod churn;
pub mod lab;
pub mod soak;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of a workspace binary built next to this executable (a test in `deps/`, or a binary).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// Polls `f` every 50 ms until it returns true or `within` passes.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command with a clean environment: no inherited P2P_* or XDG variables, HOME in `home`.
pub fn clean_command(program: &Path, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("RUST_LOG", "info,p2pd=debug");
    c
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Quic,
    Both,
}

impl Transport {
    fn listen(self) -> Vec<&'static str> {
        match self {
            Transport::Tcp => vec!["/ip4/127.0.0.1/tcp/0"],
            Transport::Quic => vec!["/ip4/127.0.0.1/udp/0/quic-v1"],
            Transport::Both => vec!["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"],
        }
    }
}

/// Options for starting a node.
#[derive(Debug, Clone)]
pub struct NodeOpts {
    pub transport: Transport,
    pub bootstrap: Vec<String>,
    pub is_bootstrap: bool,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// Listen on this loopback address instead of 127.0.0.1.
    pub ip: Option<String>,
    /// Listen on these addresses instead (`transport` and `ip` are then ignored).
    pub listen: Vec<String>,
    /// Run in this network namespace (see [`lab`]); p2pctl runs there too.
    pub netns: Option<String>,
}

impl Default for NodeOpts {
    fn default() -> Self {
        NodeOpts {
            transport: Transport::Both,
            bootstrap: vec![],
            is_bootstrap: false,
            env: vec![],
            args: vec![],
            ip: None,
            listen: vec![],
            netns: None,
        }
    }
}

/// A running p2pd. Killed on drop; its log is printed if the test is failing.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    netns: Option<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node with a fresh data dir and waits until its control socket answers.
    pub fn start(name: &str, opts: NodeOpts) -> Node {
        Node::start_with(name, opts, None)
    }

    /// Starts a node with a fresh data dir holding a copy of the identity key `key` (a peer
    /// that comes back), and waits until its control socket answers.
    pub fn start_as(name: &str, opts: NodeOpts, key: &Path) -> Node {
        Node::start_with(name, opts, Some(key))
    }

    fn start_with(name: &str, opts: NodeOpts, key: Option<&Path>) -> Node {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("p2pd-{name}-"))
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut node = Node {
            name: name.into(),
            socket: dir.join("control.sock"),
            dir,
            netns: opts.netns.clone(),
            child: None,
            _tmp: Some(tmp),
        };
        if let Some(key) = key {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            let data = node.data_dir();
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&data)
                .expect("data dir");
            let copy = data.join("identity.key");
            std::fs::copy(key, &copy).expect("identity key copied");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
                .expect("identity key mode");
        }
        node.spawn(&opts);
        node
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("p2pd.log")
    }

    /// (Re)starts the process on the same data dir.
    pub fn spawn(&mut self, opts: &NodeOpts) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = self.command("p2pd");
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .arg("--control-socket")
            .arg(&self.socket)
            .arg("--metrics-addr")
            .arg("127.0.0.1:0");
        if !opts.args.iter().any(|a| a == "--log-format") {
            cmd.args(["--log-format", "text"]);
        }
        if opts.listen.is_empty() {
            for l in opts.transport.listen() {
                let ip = opts.ip.as_deref().unwrap_or("127.0.0.1");
                cmd.arg("--listen").arg(l.replace("127.0.0.1", ip));
            }
        }
        for l in &opts.listen {
            cmd.arg("--listen").arg(l);
        }
        for b in &opts.bootstrap {
            cmd.arg("--bootstrap").arg(b);
        }
        if opts.is_bootstrap {
            cmd.env("P2P_BOOTSTRAP", "true");
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)))
            .args(&opts.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn p2pd"));
        let ok = wait_until(Duration::from_secs(20), || {
            self.ctl(&["status"]).status.success() || !self.is_running()
        });
        assert!(
            ok && self.is_running(),
            "{} did not come up:\n{}",
            self.name,
            self.log()
        );
    }

    /// A workspace binary run as this node's: in its network namespace, if it has one.
    pub fn command(&self, name: &str) -> Command {
        match &self.netns {
            None => clean_command(&bin(name), &self.dir),
            Some(ns) => {
                let mut c = clean_command(Path::new("ip"), &self.dir);
                c.args(["netns", "exec", ns]).arg(bin(name));
                c
            }
        }
    }

    /// This node's metrics, fetched where the node runs (its namespace, if any).
    pub fn metrics_text(&self) -> String {
        let addr = self.status()["metrics_addr"]
            .as_str()
            .expect("metrics_addr")
            .to_string();
        let out = self
            .command("http_get")
            .arg(format!("http://{addr}/metrics"))
            .output()
            .expect("run http_get");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs p2pctl against this node.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_within("5s", args)
    }

    /// Runs p2pctl with its own `--timeout` (how long p2pctl waits for the daemon).
    pub fn ctl_within(&self, timeout: &str, args: &[&str]) -> Output {
        self.command("p2pctl")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--timeout")
            .arg(timeout)
            .args(args)
            .output()
            .expect("run p2pctl")
    }

    /// Runs `p2pctl --json ARGS`, asserts success, returns the parsed document.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        assert!(
            out.status.success(),
            "p2pctl {args:?} on {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("p2pctl --json output is JSON")
    }

    pub fn status(&self) -> Value {
        self.ctl_json(&["status"])
    }

    pub fn peer_id(&self) -> String {
        self.status()["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_string()
    }

    /// A full dialable multiaddr (with /p2p/ID) of the given transport.
    pub fn multiaddr(&self, transport: Transport) -> String {
        let s = self.status();
        let want = match transport {
            Transport::Quic => "/quic-v1",
            _ => "/tcp/",
        };
        let addr = s["listen_addrs"]
            .as_array()
            .expect("listen_addrs")
            .iter()
            .filter_map(|a| a.as_str())
            .find(|a| a.contains(want))
            .unwrap_or_else(|| panic!("{} has no {transport:?} listen address: {s}", self.name));
        format!("{addr}/p2p/{}", s["peer_id"].as_str().expect("peer_id"))
    }

    /// Peer ids that `p2pctl peers` lists.
    pub fn peers(&self) -> BTreeSet<String> {
        let out = self.ctl(&["--json", "peers"]);
        if !out.status.success() {
            return BTreeSet::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["peers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["peer_id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Resident set size of the daemon in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Waits for a process that was killed from outside, so it can be started again.
    pub fn reap(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait for p2pd")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not exit after SIGTERM:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- log of {} ----\n{}", self.name, self.log());
        }
    }
}

/// `p2pctl --json pubsub sub TOPIC` running in the background, collecting messages.
pub struct Subscriber {
    child: Child,
    pub lines: Arc<Mutex<Vec<Value>>>,
}

impl Subscriber {
    pub fn start(node: &Node, topic: &str) -> Subscriber {
        let mut child = clean_command(&bin("p2pctl"), &node.dir)
            .arg("--socket")
            .arg(&node.socket)
            .args(["--json", "pubsub", "sub", topic])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pubsub sub");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().expect("lock").push(v);
                }
            }
        });
        Subscriber { child, lines }
    }

    /// Messages received whose data is `data`.
    pub fn count(&self, data: &str) -> usize {
        self.lines
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| message_text(m).as_deref() == Some(data))
            .count()
    }
}

/// The data of a `pubsub sub --json` message (base64 in the JSON) as text.
pub fn message_text(m: &Value) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(m["data"].as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A helper process that is killed when the test ends, passing or failing.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small tmpfs mounted over a directory (a full disk on demand), unmounted when the test ends,
/// passing or failing.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts `size` (e.g. `"2m"`) over `dir`; `None` when not root (the caller says it skipped:
    /// `scripts/test.sh` runs as root).
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(mounted.success(), "mount -t tmpfs failed");
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `n` nodes over TCP: the first a bootstrap node, the others joining through it; returns once
/// every node lists all the others.
pub fn tcp_network(n: usize) -> Vec<Node> {
    let first = Node::start(
        "a",
        NodeOpts {
            transport: Transport::Tcp,
            is_bootstrap: true,
            ..Default::default()
        },
    );
    let boot = first.multiaddr(Transport::Tcp);
    let mut nodes = vec![first];
    for i in 1..n {
        let name = ((b'a' + i as u8) as char).to_string();
        nodes.push(Node::start(
            &name,
            NodeOpts {
                transport: Transport::Tcp,
                bootstrap: vec![boot.clone()],
                ..Default::default()
            },
        ));
    }
    for node in &nodes {
        let ok = wait_until(Duration::from_secs(10), || node.peers().len() + 1 >= n);
        assert!(ok, "{} did not join: {:?}", node.name, node.peers());
    }
    nodes
}

/// The IP and port of an /ip4/HOST/tcp/PORT multiaddr.
pub fn socket_addr(multiaddr: &str) -> std::net::SocketAddr {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    format!("{}:{}", parts[2], parts[4])
        .parse()
        .expect("ip4/tcp multiaddr")
}

/// A TCP connection to `dst` from the loopback address `src` (127.0.0.0/8 is all local, so a
/// test can play several hosts).
pub fn connect_from(src: [u8; 4], dst: std::net::SocketAddr) -> std::net::TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    let local = std::net::SocketAddrV4::new(src.into(), 0);
    bind(fd.as_raw_fd(), &SockaddrIn::from(local)).expect("bind source address");
    let std::net::SocketAddr::V4(dst) = dst else {
        panic!("IPv4 expected")
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst)).expect("connect");
    std::net::TcpStream::from(fd)
}

/// GET `path` (/metrics, /health/*) from a node's metrics address with the project's one HTTP
/// client: status, content type and body.
pub fn http_get(addr: &str, path: &str) -> p2pd_proto::http::Response {
    p2pd_proto::http::get_blocking(addr, path, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// A service manager's notification socket, as systemd binds it: a Unix datagram socket with
/// SO_PASSCRED, so every message carries the sender's pid.
pub struct NotifySocket {
    pub path: PathBuf,
    sock: std::os::unix::net::UnixDatagram,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn new() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::PassCred, &true)
            .expect("SO_PASSCRED");
        NotifySocket {
            path,
            sock,
            _dir: dir,
        }
    }

    /// The next message and its sender's pid, or None after `within`.
    pub fn recv(&self, within: Duration) -> Option<(String, Option<i32>)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
        use std::os::fd::AsRawFd;
        self.sock
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .ok()?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let msg = recvmsg::<UnixAddr>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .ok()?;
        let pid = msg.cmsgs().ok()?.find_map(|c| match c {
            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
            _ => None,
        });
        let len = msg.bytes;
        Some((String::from_utf8_lossy(&buf[..len]).into_owned(), pid))
    }

    /// Waits for a message containing `needle`; returns it with its pid and arrival time.
    pub fn expect(
        &self,
        needle: &str,
        within: Duration,
    ) -> Option<(String, Option<i32>, std::time::Instant)> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some((m, pid)) if m.contains(needle) => return Some((m, pid, Instant::now())),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }
}

impl Default for NotifySocket {
    fn default() -> Self {
        Self::new()
    }
}

/// A baseline for the benchmarks: `n` request/answer round trips (128 bytes out, 16 back) over a
/// bare Unix socket pair. Returns (round trips per second, one-way milliseconds).
pub fn unix_round_trips(n: usize) -> (f64, f64) {
    let (mut client, mut server) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 128];
        for _ in 0..n {
            server.read_exact(&mut buf).expect("read");
            server.write_all(&buf[..16]).expect("write");
        }
    });
    let start = Instant::now();
    let (req, mut answer) = ([7u8; 128], [0u8; 16]);
    for _ in 0..n {
        client.write_all(&req).expect("write");
        client.read_exact(&mut answer).expect("read");
    }
    let secs = start.elapsed().as_secs_f64();
    echo.join().expect("echo");
    (n as f64 / secs, secs * 1e3 / n as f64 / 2.0)
}
