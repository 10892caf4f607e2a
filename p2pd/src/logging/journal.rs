//! Native journald output: one datagram per event to /run/systemd/journal/socket, in the
//! protocol of systemd's `sd_journal_send` (`KEY=value` lines; values with a newline as `KEY`,
//! a little-endian u64 length, the bytes).
//!
//! MESSAGE carries the message and its `key=value` fields, so `journalctl -u p2pd` (short
//! format) and `journalctl -p warning` show the values; every field is also its own journal
//! field for `-o json` and matches (`journalctl EVENT=ban`). Field names never collide with
//! journald's or with the ones written here (a field named `target` becomes `F_TARGET`).

use super::record::{text, Record};
use std::os::unix::net::UnixDatagram;

pub const SOCKET: &str = "/run/systemd/journal/socket";

/// Names journald or this writer give a meaning to.
const RESERVED: [&str; 14] = [
    "MESSAGE",
    "MESSAGE_ID",
    "PRIORITY",
    "TARGET",
    "ERRNO",
    "INVOCATION_ID",
    "USER_INVOCATION_ID",
    "UNIT",
    "USER_UNIT",
    "DOCUMENTATION",
    "TID",
    "OBJECT_PID",
    "COREDUMP",
    "SYSLOG_IDENTIFIER",
];

pub struct Journal {
    socket: UnixDatagram,
}

impl Journal {
    /// Fails when there is no journal socket (then p2pd logs to stderr).
    pub fn connect() -> std::io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(SOCKET)?;
        // Events are logged from the event loop: a journald that stops reading may cost a line,
        // never more than this wait.
        socket.set_write_timeout(Some(std::time::Duration::from_millis(100)))?;
        Ok(Journal { socket })
    }

    pub fn send(&self, r: &Record) {
        // A full journal drops the line; logging never blocks or fails the daemon.
        let _ = self.socket.send(&encode(r));
    }
}

/// syslog priority of a tracing level (as tracing-journald: INFO is "notice").
fn priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 5,
        tracing::Level::DEBUG => 6,
        tracing::Level::TRACE => 7,
    }
}

/// A journal field name for a tracing field: upper case, `[A-Z0-9_]`, not starting with `_` or a
/// digit, and never one of journald's own.
pub fn field_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9') => c,
            _ => '_',
        })
        .take(60)
        .collect();
    if out.is_empty()
        || out.starts_with(|c: char| c == '_' || c.is_ascii_digit())
        || RESERVED.contains(&out.as_str())
        || out.starts_with("CODE_")
        || out.starts_with("SYSLOG_")
    {
        out.insert_str(0, "F_");
    }
    out
}

fn put(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    buf.extend_from_slice(key.as_bytes());
    if value.contains(&b'\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

pub fn encode(r: &Record) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    put(&mut buf, "MESSAGE", r.line().as_bytes());
    put(
        &mut buf,
        "PRIORITY",
        priority(r.level).to_string().as_bytes(),
    );
    put(&mut buf, "SYSLOG_IDENTIFIER", b"p2pd");
    put(&mut buf, "TARGET", r.target.as_bytes());
    if let Some(file) = &r.file {
        put(&mut buf, "CODE_FILE", file.as_bytes());
    }
    if let Some(line) = r.line {
        put(&mut buf, "CODE_LINE", line.to_string().as_bytes());
    }
    for (k, v) in &r.fields {
        put(&mut buf, &field_name(k), text(v).as_bytes());
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_never_collide() {
        assert_eq!(field_name("peer_id"), "PEER_ID");
        assert_eq!(field_name("target"), "F_TARGET");
        assert_eq!(field_name("message_id"), "F_MESSAGE_ID");
        assert_eq!(field_name("code_file"), "F_CODE_FILE");
        assert_eq!(field_name("_pid"), "F__PID");
        assert_eq!(field_name("1x"), "F_1X");
        assert_eq!(field_name("log.target"), "LOG_TARGET");
    }

    #[test]
    fn values_with_newlines_use_the_binary_form() {
        let mut buf = Vec::new();
        put(&mut buf, "A", b"x\ny");
        assert_eq!(buf, b"A\n\x03\0\0\0\0\0\0\0x\ny\n");
        let mut buf = Vec::new();
        put(&mut buf, "A", b"xy");
        assert_eq!(buf, b"A=xy\n");
    }
}
