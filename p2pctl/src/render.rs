//! Human tables and `--json` documents for each command's answer. JSON field names are stable:
//! scripts depend on them.

use p2pd_proto::control::{PeersResponse, StatusResponse};
use serde_json::{json, Value};
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

pub fn status_json(s: &StatusResponse) -> Value {
    json!({
        "peer_id": s.peer_id,
        "version": s.version,
        "mode": s.mode,
        "uptime_seconds": s.uptime_seconds,
        "listen_addrs": s.listen_addrs,
        "external_addrs": s.external_addrs,
        // Listen and external addresses with /p2p/PEER_ID: ready for another node's --bootstrap.
        "p2p_addrs": with_peer_id(&[s.listen_addrs.clone(), s.external_addrs.clone()].concat(), &s.peer_id),
        "metrics_addr": s.metrics_addr,
        "connections_inbound": s.connections_inbound,
        "connections_outbound": s.connections_outbound,
        "connected_peers": s.connected_peers,
        "routing_table_size": s.routing_table_size,
        "dht_mode": s.dht_mode,
        "nat_status": s.nat_status,
        "open_files_limit": s.open_files_limit,
    })
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
        ("NAT", s.nat_status.clone()),
        ("open files", s.open_files_limit.to_string()),
    ];
    rows.iter().map(|(k, v)| format!("{k:<14} {v}\n")).collect()
}

pub fn peers_json(p: &PeersResponse, verbose: bool) -> Value {
    Value::Array(
        p.peers
            .iter()
            .map(|e| {
                let mut v = json!({
                    "peer_id": e.peer_id,
                    "connections": e.connections.iter().map(|c| json!({
                        "address": c.address,
                        "direction": c.direction,
                        "since_unix": c.since_unix,
                    })).collect::<Vec<_>>(),
                    "latency_ms": (e.latency_us > 0).then(|| e.latency_us as f64 / 1000.0),
                    "agent": e.agent,
                });
                if verbose {
                    v["protocols"] = json!(e.protocols);
                    v["listen_addrs"] = json!(e.listen_addrs);
                    v["gossip_score"] = json!(e.gossip_score);
                    v["policy_score"] = json!(e.policy_score);
                }
                v
            })
            .collect(),
    )
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn message_json(m: &p2pd_proto::control::PubsubMessage) -> Value {
    json!({
        "topic": m.topic,
        "from": m.from,
        "seq_no": m.seq_no,
        "data": String::from_utf8_lossy(&m.data),
        "data_hex": hex(&m.data),
        "message_id": m.message_id,
    })
}

pub fn block_json(s: &p2pd_proto::control::BlockStat) -> Value {
    json!({
        "hash": s.hash,
        "size": s.size,
        "chunks": s.chunks,
        "created_unix": s.created_unix,
        "expires_unix": (s.expires_unix > 0).then_some(s.expires_unix),
    })
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

pub fn streams(list: &p2pd_proto::control::StreamList, as_json: bool) -> String {
    if as_json {
        let v: Vec<Value> = list
            .handlers
            .iter()
            .map(|h| json!({"protocol": h.protocol, "socket": h.socket, "active_streams": h.active_streams, "total_streams": h.total_streams, "owner_uid": h.owner_uid}))
            .collect();
        return format!("{}\n", Value::Array(v));
    }
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

pub fn ban_json(b: &p2pd_proto::control::BanEntry) -> Value {
    json!({
        "target": b.target,
        "kind": b.kind,
        "reason": b.reason,
        "created_unix": b.created_unix,
        "expires_unix": (b.expires_unix > 0).then_some(b.expires_unix),
        "created_by": b.created_by,
    })
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

pub fn bans(list: &p2pd_proto::control::BanList, as_json: bool) -> String {
    if as_json {
        return format!(
            "{}\n",
            Value::Array(list.bans.iter().map(ban_json).collect())
        );
    }
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

pub fn trusted(list: &p2pd_proto::control::TrustList, as_json: bool) -> String {
    if as_json {
        let v: Vec<Value> = list
            .peers
            .iter()
            .map(|p| json!({"peer_id": p.peer_id, "addr": p.addr, "connected": p.connected, "source": p.source}))
            .collect();
        return format!("{}\n", Value::Array(v));
    }
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

pub fn limits(list: &p2pd_proto::control::LimitList, as_json: bool) -> String {
    if as_json {
        let v: Vec<Value> = list
            .limits
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "value": l.value,
                    "usage": (!l.usage.is_empty()).then_some(&l.usage),
                    "percent": (l.percent >= 0.0).then_some(l.percent),
                    "source": l.source,
                })
            })
            .collect();
        return format!("{}\n", Value::Array(v));
    }
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

    #[test]
    fn any_timestamp_renders() {
        assert_eq!(super::when(0), "1970-01-01 00:00:00 UTC");
        assert!(super::when(u64::MAX).contains("after the year 9999"));
    }
}
