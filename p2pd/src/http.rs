//! A deliberately small HTTP/1.1 server for `/metrics`, `/health/live` and `/health/ready`:
//! GET only, one request per connection, bounded header size and read time.

use crate::health::Health;
use libp2p::metrics::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The event loop must have turned within this time for /health/live to say ok.
const LIVE_WITHIN: Duration = Duration::from_secs(10);

pub struct HttpServer {
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
}

impl HttpServer {
    pub fn new(listener: TcpListener, registry: Arc<Registry>, health: Arc<Health>) -> Self {
        HttpServer {
            listener,
            registry,
            health,
        }
    }

    pub async fn run(self) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let registry = self.registry.clone();
            let health = self.health.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(READ_TIMEOUT, serve(stream, &registry, &health)).await;
            });
        }
    }
}

async fn serve(mut stream: TcpStream, registry: &Registry, health: &Health) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line =
        String::from_utf8_lossy(buf.split(|b| *b == b'\n').next().unwrap_or_default()).into_owned();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) if wants_openmetrics(&buf) => (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Ok(()) => (
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    to_prometheus_text(&text),
                ),
                Err(_) => (500, "text/plain", "metrics encoding failed\n".into()),
            }
        }
        ("GET", "/health/live") => {
            if health.alive(LIVE_WITHIN) {
                (200, "application/json", "{\"status\":\"ok\"}".into())
            } else {
                (503, "application/json", "{\"status\":\"stalled\"}".into())
            }
        }
        ("GET", "/health/ready") => {
            let ready = health.ready();
            let body = serde_json::json!({
                "status": if ready { "ready" } else { "not_ready" },
                "connected_peers": health.connected_peers(),
                "routing_table_size": health.routing_table_size(),
                "uptime_seconds": health.uptime().as_secs(),
            })
            .to_string();
            (if ready { 200 } else { 503 }, "application/json", body)
        }
        ("GET", _) => (
            404,
            "text/plain",
            "not found; try /metrics, /health/live or /health/ready\n".into(),
        ),
        _ => (405, "text/plain", "only GET is supported\n".into()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Blocking GET of a readiness URL (`http://HOST:PORT/PATH`): Ok(true) on 200.
/// What `probe` checks when given only `http://HOST:PORT`.
pub const READY_PATH: &str = "/health/ready";

pub fn probe(url: &str) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected http://HOST:PORT (checks /health/ready) or http://HOST:PORT/PATH",
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
    // A base URL (no path, or "/") means the readiness endpoint under it.
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) if !p.is_empty() => (h, format!("/{p}")),
        Some((h, _)) => (h, READY_PATH.into()),
        None => (rest, READY_PATH.into()),
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)?
        .next()
        .ok_or_else(invalid)?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    // One write: the request in one segment.
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut resp = String::new();
    s.take(64 * 1024).read_to_string(&mut resp)?;
    Ok(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"))
}

/// True when the scraper asked for OpenMetrics (Prometheus does); otherwise the classic text
/// format is served, which promtool and older tools read.
fn wants_openmetrics(request: &[u8]) -> bool {
    String::from_utf8_lossy(request).lines().any(|l| {
        l.to_ascii_lowercase().starts_with("accept:") && l.contains("application/openmetrics-text")
    })
}

/// OpenMetrics text to the classic Prometheus text format: counters are described under their
/// `_total` sample name, and the `# EOF` and `# UNIT` lines go.
fn to_prometheus_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let counters: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in lines {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    /// Answers `n` requests: 200 for GET /health/ready, 404 for anything else.
    fn ready_server(n: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let mut asked = Vec::new();
            for _ in 0..n {
                let (s, _) = l.accept().unwrap();
                let mut r = std::io::BufReader::new(&s);
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                // The rest of the head, up to the blank line.
                let mut h = String::new();
                while r.read_line(&mut h).unwrap() > 0 && h != "\r\n" {
                    h.clear();
                }
                let status = if line.starts_with("GET /health/ready ") {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                write!(&s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
                asked.push(line.trim().to_string());
            }
            asked
        });
        (base, t)
    }

    #[test]
    fn a_base_url_means_its_readiness_endpoint() {
        let (base, server) = ready_server(4);
        assert!(super::probe(&base).unwrap());
        assert!(super::probe(&format!("{base}/")).unwrap());
        assert!(super::probe(&format!("{base}/health/ready")).unwrap());
        assert!(!super::probe(&format!("{base}/metrics")).unwrap());
        let asked = server.join().unwrap();
        assert_eq!(asked[0], "GET /health/ready HTTP/1.1");
        assert_eq!(asked[3], "GET /metrics HTTP/1.1");
        let e = super::probe("127.0.0.1:9100").unwrap_err().to_string();
        assert!(e.contains("http://HOST:PORT"), "{e}");
    }

    #[test]
    fn openmetrics_to_prometheus_text() {
        let om = "# HELP hits Hits.\n# TYPE hits counter\nhits_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n# EOF\n";
        let text = super::to_prometheus_text(om);
        assert_eq!(text, "# HELP hits_total Hits.\n# TYPE hits_total counter\nhits_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n");
    }
}
