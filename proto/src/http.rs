//! The HTTP side of the contract: the endpoints p2pd serves on its metrics address, and the one
//! small client that reads them — used by `p2pd health`, `p2pctl diag` and the tests.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::io;
use std::time::Duration;

/// Prometheus metrics (OpenMetrics when asked for, the classic text format otherwise).
pub const METRICS_PATH: &str = "/metrics";
/// 200 while the event loop turns, 503 when it has stalled.
pub const LIVE_PATH: &str = "/health/live";
/// 200 once listening, serving the control socket and (unless a bootstrap node) connected.
pub const READY_PATH: &str = "/health/ready";

/// The largest body the client reads; `/metrics` of a busy node is well under 1 MiB.
pub const MAX_BODY: usize = 16 << 20;

/// What a GET brought back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Response {
    pub fn ok(&self) -> bool {
        self.status == 200
    }
}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// GET `path` from `addr` (`HOST:PORT`), the whole exchange within `timeout`.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> io::Result<Response> {
    match tokio::time::timeout(timeout, exchange(addr, path)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        )),
    }
}

/// [`get`] for callers without a runtime: runs one on this thread.
pub fn get_blocking(addr: &str, path: &str, timeout: Duration) -> io::Result<Response> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(get(addr, path, timeout))
}

async fn exchange(addr: &str, path: &str) -> io::Result<Response> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| other("HTTP handshake", e))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| other("HTTP request", e))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| other("HTTP body", e))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(Response {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one connection with `answer` after reading the request head; returns the head.
    async fn one_shot(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).await.unwrap();
                assert!(n > 0, "client closed early");
                head.extend_from_slice(&b[..n]);
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn reads_status_type_and_body() {
        let (addr, server) = one_shot(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        let r = get(&addr, READY_PATH, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.content_type.as_str(), r.body.as_str()),
            (503, "application/json", "{}")
        );
        assert!(!r.ok());
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /health/ready HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains(&format!("host: {addr}")),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let e = get(&addr, LIVE_PATH, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        drop(l);
    }

    #[test]
    fn an_oversized_body_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).unwrap();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            );
            let chunk = vec![b'x'; 64 << 10];
            while s.write_all(&chunk).is_ok() {}
        });
        let e = rt
            .block_on(get(&addr, METRICS_PATH, Duration::from_secs(20)))
            .unwrap_err();
        assert!(e.to_string().contains("HTTP body"), "{e}");
        drop(rt);
        server.join().unwrap();
    }
}
