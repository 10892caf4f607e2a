//! A hostile local control client: `control_flood SOCKET N idle|stall`. Opens N connections to
//! SOCKET; each sends a hello (`idle`), or a hello and then all but the last byte of a 4 MiB
//! frame, as far as the daemon reads it within 20 ms (`stall`). Prints `held H refused R` (connections the daemon answered
//! with its hello, and ones it turned away), then holds them until standard input closes.

use p2pd_proto::control::{client_frame, server_frame, ClientFrame, Hello, ServerFrame};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, n, mode] = &args[..] else {
        eprintln!("usage: control_flood SOCKET N idle|stall");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N");
    let hello = p2pd_proto::frame::encode_frame(&ClientFrame {
        frame: Some(client_frame::Frame::Hello(Hello {
            protocol_version: p2pd_proto::PROTOCOL_VERSION,
            agent: "control_flood".into(),
            peer_id: String::new(),
        })),
    });
    let body = vec![0u8; (4 << 20) - 1];
    let (mut held, mut refused) = (Vec::new(), 0);
    for _ in 0..n {
        let Ok(mut s) = UnixStream::connect(socket) else {
            refused += 1;
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        if s.write_all(&hello).is_err() {
            refused += 1;
            continue;
        }
        match read_frame(&mut s) {
            Some(ServerFrame {
                frame: Some(server_frame::Frame::Hello(_)),
            }) => {}
            _ => {
                refused += 1;
                continue;
            }
        }
        if mode == "stall" {
            // A 4 MiB frame: its length, then all of it but the last byte.
            let mut head = Vec::new();
            let mut len = 4u64 << 20;
            while len >= 0x80 {
                head.push((len as u8) | 0x80);
                len >>= 7;
            }
            head.push(len as u8);
            s.set_write_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            let _ = s.write_all(&head);
            let _ = s.write_all(&body);
        }
        held.push(s);
    }
    println!("held {} refused {refused}", held.len());
    std::io::stdout().flush().expect("flush");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

fn read_frame(s: &mut UnixStream) -> Option<ServerFrame> {
    let mut len = 0usize;
    for shift in (0..35).step_by(7) {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).ok()?;
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).ok()?;
    prost::Message::decode(buf.as_slice()).ok()
}
