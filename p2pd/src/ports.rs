//! "Address in use" with the answer attached: which process holds the port (when /proc lets us
//! see it), which well-known service uses it by default, and how to give p2pd another one.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Services whose default ports p2pd's defaults share.
const WELL_KNOWN: [(u16, &str); 4] = [
    (9100, "Prometheus node_exporter"),
    (4001, "Kubo (IPFS)"),
    (9090, "Prometheus"),
    (8080, "many web services"),
];

/// Socket inodes bound to `port` (listening TCP, or UDP) in /proc/net text.
fn inodes(table: &str, port: u16, proto: Proto) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let listening = match proto {
                Proto::Tcp => *f.get(3)? == "0A",
                Proto::Udp => true,
            };
            (local_port == port && listening)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// `name (pid N)` of a process with a socket inode open, if /proc shows it to us (under
/// systemd's ProtectProc=invisible other users' processes are hidden).
fn owner(proc_root: &Path, wanted: &[u64]) -> Option<String> {
    for entry in std::fs::read_dir(proc_root).ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            let inode = link
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok());
            if inode.is_some_and(|i| wanted.contains(&i)) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", comm.trim()));
            }
        }
    }
    None
}

/// Who holds the port, in words: "held by node_exporter (pid 812)", or the service that uses
/// it by default, or "held by another process".
pub fn holder(proto: Proto, port: u16) -> String {
    let files: &[&str] = match proto {
        Proto::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => &["/proc/net/udp", "/proc/net/udp6"],
    };
    let wanted: Vec<u64> = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| inodes(&t, port, proto))
        .filter(|i| *i != 0)
        .collect();
    let process = (!wanted.is_empty())
        .then(|| owner(Path::new("/proc"), &wanted))
        .flatten();
    let known = WELL_KNOWN
        .iter()
        .find(|(p, _)| *p == port)
        .map(|(_, s)| format!("{port} is the default port of {s}"));
    let who = process.unwrap_or_else(|| "another process".into());
    match known {
        Some(k) => format!("held by {who}; {k}"),
        None => format!("held by {who}"),
    }
}

/// True when an error, or anything in its chain of sources, is "address in use". The
/// transports wrap the socket's error in other I/O errors, whose `source()` skips the wrapped
/// error itself (their `get_ref()` is followed), and in `Either`s, which hide it from the chain
/// altogether: for those the error's debug form, which names the kind, decides.
pub fn in_use(e: &(dyn std::error::Error + 'static)) -> bool {
    typed_in_use(e) || format!("{e:?}").contains("AddrInUse")
}

fn typed_in_use(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::AddrInUse {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                cur = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_socket_of_a_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:238C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:238C 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 5151 1 0000000000000000 100 0 0 10 0
   2: 00000000:0FA1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(inodes(table, 9100, Proto::Tcp), vec![4242]);
        assert_eq!(inodes(table, 4001, Proto::Tcp), vec![777]);
        assert!(inodes(table, 1234, Proto::Tcp).is_empty());
    }

    #[test]
    fn finds_address_in_use_inside_wrapped_errors() {
        let inner = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let wrapped = std::io::Error::other(inner);
        assert!(in_use(&wrapped));
        assert!(!in_use(&std::io::Error::other("something else")));
        // A wrapper that, like `Either`, shows the error but hides it from `source()`.
        #[derive(Debug)]
        struct Hides(std::io::Error);
        impl std::fmt::Display for Hides {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
        impl std::error::Error for Hides {}
        let hidden = std::io::Error::other(Hides(std::io::ErrorKind::AddrInUse.into()));
        assert!(in_use(&hidden));
    }

    #[test]
    fn names_the_process_holding_a_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let who = holder(Proto::Tcp, port);
        assert!(
            who.contains(&format!("pid {}", std::process::id())),
            "{who}"
        );
    }
}
