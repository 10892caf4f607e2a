//! The metrics and health endpoints (`/metrics`, `/health/live`, `/health/ready`) on hyper's
//! HTTP/1.1 server: GET and HEAD only, at most [`Limits::connections`] connections at once (more
//! are closed at once, so a flood cannot queue up behind the cap), the request head within
//! [`Limits::head`] (also the keep-alive idle time), and each connection's whole life within
//! [`Limits::lifetime`].

use crate::health::Health;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use libp2p::metrics::Registry;
use p2pd_proto::http::{LIVE_PATH, METRICS_PATH, READY_PATH};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The event loop must have turned within this time for /health/live to say ok.
const LIVE_WITHIN: Duration = Duration::from_secs(10);

/// What one scraper or prober may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// Time to send a request head, and the longest idle time between keep-alive requests.
    pub head: Duration,
    /// The longest any one connection lives.
    pub lifetime: Duration,
    /// The largest request head.
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 64,
            head: Duration::from_secs(5),
            lifetime: Duration::from_secs(30),
            max_head_bytes: 8 * 1024,
        }
    }
}

pub struct HttpServer {
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    limits: Limits,
}

impl HttpServer {
    pub fn new(listener: TcpListener, registry: Arc<Registry>, health: Arc<Health>) -> Self {
        HttpServer {
            listener,
            registry,
            health,
            limits: Limits::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.limits.connections));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.head)
            .max_buf_size(self.limits.max_head_bytes.max(8192))
            .max_headers(64);
        let builder = Arc::new(builder);
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::debug!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(
                    limit = self.limits.connections,
                    "metrics endpoint at its connection limit; closing a new connection"
                );
                continue;
            };
            let (registry, health) = (self.registry.clone(), self.health.clone());
            let builder = builder.clone();
            let lifetime = self.limits.lifetime;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = respond(&req, &registry, &health);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(lifetime, connection).await;
                drop(slot);
            });
        }
    }
}

fn respond<B>(req: &Request<B>, registry: &Registry, health: &Health) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is supported\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        METRICS_PATH => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) if wants_openmetrics(req) => reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Ok(()) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    to_prometheus_text(&text),
                ),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "metrics encoding failed\n".into(),
                ),
            }
        }
        LIVE_PATH => {
            if health.alive(LIVE_WITHIN) {
                reply(
                    StatusCode::OK,
                    "application/json",
                    "{\"status\":\"ok\"}".into(),
                )
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    "{\"status\":\"stalled\"}".into(),
                )
            }
        }
        READY_PATH => {
            let ready = health.ready();
            let body = serde_json::json!({
                "status": if ready { "ready" } else { "not_ready" },
                "connected_peers": health.connected_peers(),
                "routing_table_size": health.routing_table_size(),
                "uptime_seconds": health.uptime().as_secs(),
            })
            .to_string();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("not found; try {METRICS_PATH}, {LIVE_PATH} or {READY_PATH}\n"),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// `p2pd health --url URL`: Ok(true) when the endpoint answers 200. `http://HOST:PORT` (no path,
/// or `/`) means its readiness endpoint.
pub fn probe(url: &str) -> std::io::Result<bool> {
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected http://HOST:PORT (checks /health/ready) or http://HOST:PORT/PATH",
        )
    };
    let uri: hyper::Uri = url.parse().map_err(|_| invalid())?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid());
    }
    let authority = uri.authority().ok_or_else(invalid)?;
    if authority.port().is_none() {
        return Err(invalid());
    }
    let path = match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") | Some("/") => READY_PATH,
        Some(p) => p,
    };
    let response =
        p2pd_proto::http::get_blocking(authority.as_str(), path, Duration::from_secs(5))?;
    Ok(response.ok())
}

/// True when the scraper asked for OpenMetrics (Prometheus does); otherwise the classic text
/// format is served, which promtool and older tools read.
fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
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

    /// A server with small limits on a loopback port.
    async fn server(limits: super::Limits) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let health = std::sync::Arc::new(crate::health::Health::new(false));
        let registry = std::sync::Arc::new(libp2p::metrics::Registry::default());
        tokio::spawn(
            super::HttpServer::new(l, registry, health)
                .with_limits(limits)
                .run(),
        );
        addr
    }

    fn small() -> super::Limits {
        super::Limits {
            connections: 3,
            head: std::time::Duration::from_millis(300),
            lifetime: std::time::Duration::from_secs(5),
            max_head_bytes: 8192,
        }
    }

    async fn get(addr: &str, path: &str) -> std::io::Result<p2pd_proto::http::Response> {
        p2pd_proto::http::get(addr, path, std::time::Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn answers_each_endpoint_and_refuses_other_methods() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = server(small()).await;
        let live = get(&addr, "/health/live").await.unwrap();
        assert_eq!(
            (live.status, live.body.as_str()),
            (200, "{\"status\":\"ok\"}")
        );
        let metrics = get(&addr, "/metrics").await.unwrap();
        assert_eq!(metrics.status, 200);
        assert!(metrics
            .content_type
            .starts_with("text/plain; version=0.0.4"));
        assert_eq!(get(&addr, "/nope").await.unwrap().status, 404);
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("allow: get, head"),
            "{answer}"
        );
    }

    /// Connections over the cap are closed at once (the head timeout here is far longer than
    /// the wait), and the endpoint answers again when the others go.
    #[tokio::test]
    async fn connections_over_the_cap_are_closed() {
        use tokio::io::AsyncReadExt;
        let limits = super::Limits {
            head: std::time::Duration::from_secs(600),
            ..small()
        };
        let addr = server(limits).await;
        let mut idle = Vec::new();
        for _ in 0..limits.connections {
            idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
        let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), extra.read(&mut b))
            .await
            .expect("a connection over the cap is closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        drop(idle);
        assert!(
            wait_for_live(&addr).await,
            "the endpoint never answered again"
        );
    }

    /// A connection that sends nothing is cut by the head timeout, and its slot comes back.
    #[tokio::test]
    async fn a_silent_connection_is_cut() {
        use tokio::io::AsyncReadExt;
        let limits = super::Limits {
            connections: 1,
            head: std::time::Duration::from_millis(200),
            ..small()
        };
        let addr = server(limits).await;
        let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            silent.read_to_end(&mut rest),
        )
        .await
        .expect("a silent connection is cut")
        .ok();
        assert!(wait_for_live(&addr).await, "the slot never came back");
    }

    async fn wait_for_live(addr: &str) -> bool {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if get(addr, "/health/live").await.is_ok_and(|r| r.ok()) {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    }

    #[test]
    fn openmetrics_to_prometheus_text() {
        let om = "# HELP hits Hits.\n# TYPE hits counter\nhits_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n# EOF\n";
        let text = super::to_prometheus_text(om);
        assert_eq!(text, "# HELP hits_total Hits.\n# TYPE hits_total counter\nhits_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n");
    }
}
