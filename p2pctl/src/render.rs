//! Human tables for each command's answer. `--json` prints the answer's message itself (see
//! `p2pd_proto::json`); the only addition is `status`'s `p2p_addrs`.

use p2pd_proto::control::{PeersResponse, StatusResponse};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn ago(since_unix: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    humantime::format_duration(Duration::from_secs(now.saturating_sub(since_unix))).to_string()
}

fn or_dash(list: &[String]) -> String {
    if list.is_empty() {
        "-".into()
    } else {
        list.join("\n               ")
    }
}

/// AutoNAT v2's results, one address a line: reachable, or unreachable with why.
fn address_tests(s: &StatusResponse) -> String {
    let lines: Vec<String> = s
        .address_tests
        .iter()
        .map(|t| {
            if t.reachable {
                format!("{} reachable", t.address)
            } else if t.error.is_empty() {
                format!("{} unreachable", t.address)
            } else {
                format!("{} unreachable ({})", t.address, t.error)
            }
        })
        .collect();
    or_dash(&lines)
}

/// `status --json`: the StatusResponse, and its listen and external addresses with
/// `/p2p/PEER_ID` (ready for another node's `--bootstrap`) as `p2p_addrs`.
#[derive(Serialize)]
pub struct StatusJson<'a> {
    #[serde(flatten)]
    status: &'a StatusResponse,
    p2p_addrs: Vec<String>,
}

impl<'a> StatusJson<'a> {
    pub fn new(status: &'a StatusResponse) -> Self {
        let all = [status.listen_addrs.clone(), status.external_addrs.clone()].concat();
        StatusJson {
            status,
            p2p_addrs: with_peer_id(&all, &status.peer_id),
        }
    }
}

fn with_peer_id(addrs: &[String], peer_id: &str) -> Vec<String> {
    addrs
        .iter()
        .map(|a| {
            if a.contains("/p2p/") {
                a.clone()
            } else {
                format!("{a}/p2p/{peer_id}")
            }
        })
        .collect()
}

pub fn status_text(s: &StatusResponse) -> String {
    let rows = [
        ("peer id", s.peer_id.clone()),
        ("version", s.version.clone()),
        ("mode", s.mode.clone()),
        (
            "uptime",
            humantime::format_duration(Duration::from_secs(s.uptime_seconds)).to_string(),
        ),
        // Full addresses, ready to paste as another node's --bootstrap.
        (
            "listen",
            or_dash(&with_peer_id(&s.listen_addrs, &s.peer_id)),
        ),
        (
            "external",
            or_dash(&with_peer_id(&s.external_addrs, &s.peer_id)),
        ),
        ("metrics", format!("http://{}/metrics", s.metrics_addr)),
        (
            "connections",
            format!(
                "{} inbound, {} outbound ({} peers)",
                s.connections_inbound, s.connections_outbound, s.connected_peers
            ),
        ),
        ("routing table", format!("{} peers", s.routing_table_size)),
        ("DHT mode", s.dht_mode.clone()),
        ("NAT", format!("{} ({})", s.nat_status, s.nat_source)),
        ("tested addrs", address_tests(s)),
        ("relayed at", or_dash(&s.relay_addrs)),
        (
            "relay server",
            if s.relay_serving {
                "on (relays for others)".into()
            } else {
                "off until this node has a confirmed external address".into()
            },
        ),
        (
            "hole punching",
            format!(
                "{} upgraded to direct, {} failed{}; {} relayed connections",
                s.hole_punch_succeeded,
                s.hole_punch_failed,
                if s.hole_punch_error.is_empty() {
                    String::new()
                } else {
                    format!(" (last: {})", s.hole_punch_error)
                },
                s.connections_relayed
            ),
        ),
        ("open files", s.open_files_limit.to_string()),
        (
            "QUIC buffers",
            if s.udp_receive_buffer == 0 {
                "-".into()
            } else {
                format!(
                    "receive {} KiB, send {} KiB (wanted {} KiB)",
                    s.udp_receive_buffer / 1024,
                    s.udp_send_buffer / 1024,
                    s.udp_buffer_wanted / 1024
                )
            },
        ),
    ];
    rows.iter().map(|(k, v)| format!("{k:<14} {v}\n")).collect()
}

pub fn peers_text(p: &PeersResponse, verbose: bool) -> String {
    if p.peers.is_empty() {
        return "no peers connected\n".into();
    }
    let mut rows = Vec::new();
    for e in &p.peers {
        let latency = if e.latency_us > 0 {
            format!("{:.1}ms", e.latency_us as f64 / 1000.0)
        } else {
            "-".into()
        };
        for c in &e.connections {
            rows.push(vec![
                e.peer_id.clone(),
                c.direction.clone(),
                c.address.clone(),
                latency.clone(),
                if e.agent.is_empty() {
                    "-".into()
                } else {
                    e.agent.clone()
                },
                ago(c.since_unix),
            ]);
        }
    }
    let mut out = table(
        &[
            "PEER ID",
            "DIRECTION",
            "ADDRESS",
            "LATENCY",
            "AGENT",
            "SINCE",
        ],
        rows,
    );
    if verbose {
        for e in &p.peers {
            out.push_str(&format!(
                "\n{}\n  protocols: {}\n  listen:    {}\n  score:     gossip {:.2}, policy {:.2}\n",
                e.peer_id,
                e.protocols.join(", "),
                e.listen_addrs.join(", "),
                e.gossip_score,
                e.policy_score
            ));
        }
    }
    out
}

pub fn block_text(s: &p2pd_proto::control::BlockStat) -> String {
    let expires = if s.expires_unix == 0 {
        "never".to_string()
    } else {
        format!("in {}", ago_until(s.expires_unix))
    };
    format!(
        "hash     {}\nsize     {} bytes\nchunks   {}\ncreated  {} ago\nexpires  {expires}\n",
        s.hash,
        s.size,
        s.chunks,
        ago(s.created_unix)
    )
}

fn ago_until(unix: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    humantime::format_duration(Duration::from_secs(unix.saturating_sub(now))).to_string()
}

pub fn streams(list: &p2pd_proto::control::StreamList) -> String {
    if list.handlers.is_empty() {
        return "no protocols served\n".into();
    }
    list.handlers
        .iter()
        .map(|h| {
            format!(
                "{}  ->  {}  (active {}, total {}, uid {})\n",
                h.protocol, h.socket, h.active_streams, h.total_streams, h.owner_uid
            )
        })
        .collect()
}

/// A Unix time as "YYYY-MM-DD HH:MM:SS UTC" (any u64: past year 9999 it says so).
pub fn when(unix: u64) -> String {
    const LAST_OF_9999: u64 = 253_402_300_799;
    if unix > LAST_OF_9999 {
        return format!("after the year 9999 (unix time {unix})");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix))
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    std::iter::once(head)
        .chain(rows)
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

pub fn bans(list: &p2pd_proto::control::BanList) -> String {
    if list.bans.is_empty() {
        return "no bans\n".into();
    }
    let rows = list
        .bans
        .iter()
        .map(|b| {
            vec![
                b.target.clone(),
                b.kind.clone(),
                when(b.created_unix),
                if b.expires_unix == 0 {
                    "never".into()
                } else {
                    when(b.expires_unix)
                },
                b.created_by.clone(),
                b.reason.clone(),
            ]
        })
        .collect();
    table(
        &["TARGET", "KIND", "CREATED", "EXPIRES", "BY", "REASON"],
        rows,
    )
}

pub fn trusted(list: &p2pd_proto::control::TrustList) -> String {
    if list.peers.is_empty() {
        return "no trusted peers\n".into();
    }
    let rows = list
        .peers
        .iter()
        .map(|p| {
            vec![
                p.peer_id.clone(),
                if p.connected { "yes" } else { "no" }.into(),
                p.source.clone(),
                if p.addr.is_empty() {
                    "-".into()
                } else {
                    p.addr.clone()
                },
            ]
        })
        .collect();
    table(&["PEER ID", "CONNECTED", "SOURCE", "ADDRESS"], rows)
}

pub fn limits(list: &p2pd_proto::control::LimitList) -> String {
    let rows = list
        .limits
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.value.clone(),
                if l.usage.is_empty() {
                    "-".into()
                } else {
                    l.usage.clone()
                },
                if l.percent >= 0.0 {
                    format!("{:.0}%", l.percent)
                } else {
                    "-".into()
                },
                l.source.clone(),
            ]
        })
        .collect();
    table(&["LIMIT", "VALUE", "USAGE", "USED", "SOURCE"], rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_lists_full_addresses() {
        let s = p2pd_proto::control::StatusResponse {
            peer_id: "12D3KooWX".into(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            ..Default::default()
        };
        assert!(super::status_text(&s).contains("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWX"));
    }

    /// `status --json` is the StatusResponse with every field (bootstrap counts included), plus
    /// `p2p_addrs`.
    #[test]
    fn status_json_is_the_message_and_p2p_addrs() {
        let s = p2pd_proto::control::StatusResponse {
            peer_id: "12D3KooWX".into(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            bootstrap_configured: 2,
            ..Default::default()
        };
        let plain = serde_json::to_value(&s).unwrap();
        let v = serde_json::to_value(super::StatusJson::new(&s)).unwrap();
        for (k, value) in plain.as_object().unwrap() {
            assert_eq!(&v[k], value, "{k}");
        }
        assert_eq!(v["bootstrap_configured"], 2);
        assert_eq!(v["p2p_addrs"][0], "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWX");
        assert_eq!(
            v.as_object().unwrap().len(),
            plain.as_object().unwrap().len() + 1
        );
    }

    #[test]
    fn any_timestamp_renders() {
        assert_eq!(super::when(0), "1970-01-01 00:00:00 UTC");
        assert!(super::when(u64::MAX).contains("after the year 9999"));
    }
}
