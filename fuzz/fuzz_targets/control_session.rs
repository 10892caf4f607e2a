//! Request handling, end to end: one real daemon runs in this process (started once, with its
//! own data dir and control socket), and each input is what a hostile local client sends on a
//! fresh control connection after a valid hello — any frames, valid or not, of any request. The
//! daemon's handlers, the node's event loop, the ban store and the block store all run
//! instrumented; any panic in any of their threads aborts the run (libFuzzer's panic hook).
//!
//! Checked beyond "no panic": after every input the daemon still answers `status` on a new
//! connection within 10 s (it did not stop, wedge its event loop, or lose its control socket).
//!
//! Nothing leaves the machine: the daemon listens on 127.0.0.1 only, has no bootstrap peers,
//! refuses every outbound dial (`dial_deny_cidrs` covers all of IPv4 and IPv6, from the config
//! file, which no request can change), and inputs that name a DNS multiaddr (`/dns...`) are
//! skipped before they are sent, so no name is ever resolved. Inputs that change the log filter
//! are skipped too: a fuzzed `trace` would slow every later input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pd_proto::control::{
    client_frame, request::Kind, response, server_frame, ClientFrame, Hello, Request, ServerFrame,
    StatusRequest,
};
use p2pd_proto::frame;
use prost::Message;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

struct Daemon {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

const CONFIG: &str = r#"
[network]
# Every outbound dial is refused: nothing a request names is ever contacted.
dial_deny_cidrs = ["0.0.0.0/0", "::/0"]

[control]
query_socket = ""

[log]
filter = "off"
"#;

fn daemon() -> &'static Daemon {
    static D: OnceLock<Daemon> = OnceLock::new();
    D.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("p2pd-fuzz-session.")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let config = dir.join("p2pd.toml");
        std::fs::write(&config, CONFIG).expect("the config file written");
        let socket = dir.join("control.sock");
        let overrides = p2pd::config::Overrides {
            config: Some(config),
            data_dir: Some(dir.join("data")),
            control_socket: Some(socket.clone()),
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap: Vec::new(),
            metrics_addr: Some("127.0.0.1:0".into()),
            log_format: Some("text".into()),
        };
        let mode = p2pd_proto::paths::Mode::User;
        let (cfg, _) = p2pd::config::load(mode, &overrides, Vec::new()).expect("the fuzz config");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("the daemon's runtime");
            let result = rt.block_on(p2pd::daemon::run(cfg, mode, overrides, None));
            panic!("the daemon stopped: {result:?}");
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the client's runtime");
        // Up when it answers (start-up includes creating its identity).
        let deadline = Instant::now() + Duration::from_secs(60);
        while rt.block_on(status(&socket)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the daemon did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { socket, rt }
    })
}

fn hello() -> Vec<u8> {
    frame::encode_frame(&ClientFrame {
        frame: Some(client_frame::Frame::Hello(Hello {
            protocol_version: p2pd_proto::PROTOCOL_VERSION,
            agent: "p2pd-fuzz".into(),
            peer_id: String::new(),
        })),
    })
}

/// One `status` round trip on a new connection.
async fn status(socket: &PathBuf) -> Result<(), String> {
    let mut s = UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = hello();
    frame::encode_frame_into(
        &ClientFrame {
            frame: Some(client_frame::Frame::Request(Request {
                id: 1,
                kind: Some(Kind::Status(StatusRequest {})),
            })),
        },
        &mut out,
    );
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    loop {
        let f = frame::read_message::<ServerFrame, _>(&mut s, p2pd_proto::MAX_FRAME_BYTES)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("closed before the status")?;
        if let Some(server_frame::Frame::Response(r)) = f.frame {
            return match r.kind {
                Some(response::Kind::Status(_)) => Ok(()),
                other => Err(format!("status answered with {other:?}")),
            };
        }
    }
}

/// Whether the input may be sent (see the top of this file).
fn allowed(data: &[u8]) -> bool {
    if data.windows(3).any(|w| w.eq_ignore_ascii_case(b"dns")) {
        return false;
    }
    let mut rd = data;
    let rt = &daemon().rt;
    while let Ok(Some(body)) = rt.block_on(frame::read_frame(&mut rd, p2pd_proto::MAX_FRAME_BYTES))
    {
        let Ok(f) = ClientFrame::decode(body.as_slice()) else {
            break;
        };
        if let Some(client_frame::Frame::Request(Request {
            kind: Some(Kind::LogLevel(_)),
            ..
        })) = f.frame
        {
            return false;
        }
    }
    true
}

/// Sends the input after a hello, then closes the sending half and reads every answer until
/// the daemon closes (or 5 s pass: a streaming answer may go on).
async fn session(socket: &PathBuf, data: &[u8]) {
    let Ok(mut s) = UnixStream::connect(socket).await else {
        return;
    };
    let (mut rd, mut wr) = s.split();
    let write = async {
        let _ = wr.write_all(&hello()).await;
        let _ = wr.write_all(data).await;
        let _ = wr.shutdown().await;
    };
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), futures::future::join(write, read)).await;
}

fuzz_target!(|data: &[u8]| {
    let d = daemon();
    if !allowed(data) {
        return;
    }
    d.rt.block_on(session(&d.socket, data));
    let answered = d
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), status(&d.socket)).await });
    match answered {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the daemon stopped answering status: {e}"),
        Err(_) => panic!("the daemon did not answer status within 10 s"),
    }
});
