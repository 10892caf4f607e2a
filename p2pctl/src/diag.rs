//! `p2pctl diag`: the operator's diagnosis in one command. Each check gives pass, warn or fail,
//! the measured value, and for anything not passing the likely cause and the fix.

use p2pctl::{Client, ClientError};
use p2pd_proto::control::{LimitList, StatusResponse};
use p2pd_proto::http::{get, LIVE_PATH, METRICS_PATH};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// How long each HTTP check may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

pub struct Check {
    name: &'static str,
    verdict: Verdict,
    value: String,
    cause: &'static str,
    fix: &'static str,
}

fn check(
    name: &'static str,
    verdict: Verdict,
    value: String,
    cause: &'static str,
    fix: &'static str,
) -> Check {
    Check {
        name,
        verdict,
        value,
        cause,
        fix,
    }
}

/// Samples by full series text ("name" or "name{labels}").
fn parse_metrics(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metric(m: &HashMap<String, f64>, name: &str) -> Option<f64> {
    m.get(name).copied()
}

/// The 0.99 quantile of a histogram from its cumulative buckets, if it has observations.
fn p99(m: &HashMap<String, f64>, name: &str) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, c)| *c >= 0.99 * total)
        .map(|(le, _)| *le)
}

fn percent(usage: f64, limit: f64) -> f64 {
    if limit > 0.0 {
        usage * 100.0 / limit
    } else {
        0.0
    }
}

fn by_share(p: f64, warn: f64, fail: f64) -> Verdict {
    if p >= fail {
        Verdict::Fail
    } else if p >= warn {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}

fn connections(limits: &LimitList) -> Check {
    let worst = limits
        .limits
        .iter()
        .filter(|l| {
            matches!(
                l.name.as_str(),
                "max_connections" | "max_inbound" | "max_outbound"
            ) && l.percent >= 0.0
        })
        .max_by(|a, b| a.percent.total_cmp(&b.percent));
    match worst {
        Some(l) => check(
            "connections",
            by_share(l.percent, 80.0, 100.0),
            format!("{} {} of {} ({:.0}%)", l.name, l.usage, l.value, l.percent),
            "the node is at or near its connection limit: new peers are refused",
            "raise limits.max_connections / max_inbound (and LimitNOFILE), or find a flood with `p2pctl peers` and `p2pctl ban`",
        ),
        None => check("connections", Verdict::Pass, "no limits reported".into(), "", ""),
    }
}

fn checks(
    status: &StatusResponse,
    limits: &LimitList,
    live: Result<(u16, String), String>,
    m: &HashMap<String, f64>,
) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match &live {
        Ok((200, _)) => check(
            "metrics endpoint",
            Verdict::Pass,
            format!("http://{}/health/live 200", status.metrics_addr),
            "",
            "",
        ),
        Ok((code, _)) => check(
            "metrics endpoint",
            Verdict::Fail,
            format!("/health/live answered {code}"),
            "the event loop is not turning (stalled or overloaded)",
            "check `journalctl -u p2pd` for a stall; systemd's watchdog restarts a stuck daemon",
        ),
        Err(e) => check(
            "metrics endpoint",
            Verdict::Fail,
            format!("{} unreachable: {e}", status.metrics_addr),
            "metrics.addr is not reachable from here",
            "check metrics.addr in the config and any firewall between Prometheus and the node",
        ),
    });
    out.push(connections(limits));
    out.push(match p99(m, "libp2p_dht_query_duration_seconds") {
        None => check("DHT query P99", Verdict::Pass, "no queries finished yet".into(), "", ""),
        Some(v) => check(
            "DHT query P99",
            if v > 5.0 { Verdict::Fail } else if v > 2.0 { Verdict::Warn } else { Verdict::Pass },
            format!("{v}s"),
            "DHT lookups are slow: few or distant peers answer",
            "add 3-5 stable bootstrap peers (network.bootstrap_peers) and check outbound connectivity",
        ),
    });
    let rss = metric(m, "process_resident_memory_bytes").unwrap_or(0.0);
    let ceiling = metric(m, "p2p_limit{name=\"max_memory\"}").unwrap_or(0.0);
    let p = percent(rss, ceiling);
    out.push(check(
        "memory",
        by_share(p, 80.0, 90.0),
        format!(
            "{:.0} MiB of {:.0} MiB ({p:.0}%)",
            rss / 1048576.0,
            ceiling / 1048576.0
        ),
        "RSS is near limits.max_memory: new connections will be refused",
        "lower the connection limits, or raise limits.max_memory if the host has room",
    ));
    let attempts = metric(m, "libp2p_swarm_dial_attempt_total").unwrap_or(0.0);
    let failures = metric(m, "p2p_peer_dial_failures_total").unwrap_or(0.0);
    let rate = percent(failures, attempts.max(failures));
    out.push(check(
        "dial failures",
        if attempts < 10.0 {
            Verdict::Pass
        } else {
            by_share(rate, 50.0, 90.0)
        },
        format!("{failures:.0} failed of {attempts:.0} dials ({rate:.0}%)"),
        "most dials fail: stale addresses, outbound filtering, or no route",
        "check the firewall and network.dial_deny_cidrs; stale peers age out of the routing table",
    ));
    let fds = metric(m, "process_open_fds").unwrap_or(0.0);
    let max_fds = metric(m, "process_max_fds").unwrap_or(status.open_files_limit as f64);
    let p = percent(fds, max_fds);
    out.push(check(
        "open files",
        by_share(p, 80.0, 90.0),
        format!("{fds:.0} of {max_fds:.0} ({p:.0}%)"),
        "file descriptors are near RLIMIT_NOFILE: accepts and dials will fail",
        "raise LimitNOFILE in p2pd.service (or ulimit -n), or lower the connection limits",
    ));
    let topics = metric(m, "p2p_pubsub_topics").unwrap_or(0.0);
    let mesh = metric(m, "libp2p_gossipsub_peers").unwrap_or(0.0);
    out.push(if topics == 0.0 {
        check(
            "gossipsub mesh",
            Verdict::Pass,
            "no topics subscribed".into(),
            "",
            "",
        )
    } else {
        check(
            "gossipsub mesh",
            if !(4.0..=20.0).contains(&mesh) {
                Verdict::Warn
            } else {
                Verdict::Pass
            },
            format!("{mesh:.0} mesh peers over {topics:.0} topics (healthy: 4 to 20)"),
            "the mesh is too small (messages may not spread) or too large (wasted bandwidth)",
            "connect more peers on the topic, or tune the mesh degree D",
        )
    });
    out.push(match (status.bootstrap_configured, status.bootstrap_connected) {
        (0, _) if status.routing_table_size == 0 => check(
            "bootstrap peers",
            Verdict::Warn,
            "none configured and the routing table is empty".into(),
            "the node knows nobody: it cannot find the network",
            "set network.bootstrap_peers (P2P_BOOTSTRAP_PEERS), or make this node a bootstrap node",
        ),
        (0, _) => check("bootstrap peers", Verdict::Pass, format!("none configured; {} peers in the routing table", status.routing_table_size), "", ""),
        (n, 0) => check(
            "bootstrap peers",
            Verdict::Fail,
            format!("0 of {n} connected"),
            "no bootstrap peer is reachable",
            "check the bootstrap addresses (p2pctl connect ADDR says why) and outbound connectivity",
        ),
        (n, c) => check("bootstrap peers", Verdict::Pass, format!("{c} of {n} connected"), "", ""),
    });
    out.push(nat_check(status));
    out.push(udp_check(status));
    out
}

/// QUIC's socket buffers: the kernel caps them at net.core.rmem_max / wmem_max.
fn udp_check(s: &StatusResponse) -> Check {
    let (recv, send, wanted) = (s.udp_receive_buffer, s.udp_send_buffer, s.udp_buffer_wanted);
    if recv == 0 {
        return check(
            "QUIC buffers",
            Verdict::Pass,
            "no QUIC socket".into(),
            "",
            "",
        );
    }
    check(
        "QUIC buffers",
        if recv < wanted || send < wanted {
            Verdict::Warn
        } else {
            Verdict::Pass
        },
        format!(
            "receive {} KiB, send {} KiB of {} KiB wanted",
            recv / 1024,
            send / 1024,
            wanted / 1024
        ),
        "the kernel caps UDP socket buffers (net.core.rmem_max / wmem_max): a fast peer overflows them, datagrams are dropped and QUIC slows down",
        "raise both: `sysctl -w net.core.rmem_max=4194304 net.core.wmem_max=4194304` and keep them in /etc/sysctl.d/ (the packages ship /usr/lib/sysctl.d/30-p2pd.conf), then restart p2pd",
    )
}

/// Reachability: what AutoNAT found, the relays this node is reachable through, and whether
/// hole punching gets direct connections through its NAT.
fn nat_check(s: &StatusResponse) -> Check {
    let relays = s.relay_addrs.join(", ");
    let (punched, failed) = (s.hole_punch_succeeded, s.hole_punch_failed);
    match s.nat_status.as_str() {
        "private" if s.relay_addrs.is_empty() => check(
            "NAT",
            Verdict::Warn,
            format!("private, no relay reservation ({})", s.nat_source),
            "peers cannot dial this node (it is behind a NAT or a firewall) and no relay holds a slot for it yet",
            "add a relay to network.relays (or connect to a peer that relays); for a direct path, forward the listen port to this host and set network.external",
        ),
        "private" if failed > 0 && punched == 0 => check(
            "NAT",
            Verdict::Warn,
            format!(
                "private; reachable through a relay ({relays}); hole punching failed {failed} times{}",
                if s.hole_punch_error.is_empty() { String::new() } else { format!(" (last: {})", s.hole_punch_error) }
            ),
            "direct connections cannot be opened through this NAT (a symmetric NAT or a firewall): a relay is being used",
            "for a direct path, forward the listen port to this host and set network.external (P2P_EXTERNAL_ADDRS) to its public address",
        ),
        "private" => check(
            "NAT",
            Verdict::Pass,
            format!("private; reachable through a relay ({relays}); hole punching upgraded {punched} connections to direct"),
            "",
            "",
        ),
        other => check("NAT", Verdict::Pass, format!("{other} ({})", s.nat_source), "", ""),
    }
}

/// Runs every check; returns the report and whether anything failed.
pub async fn run(client: &mut Client, as_json: bool) -> Result<(String, bool), ClientError> {
    let status = client.status().await?;
    let limits = client.limits().await?;
    let live = get(&status.metrics_addr, LIVE_PATH, HTTP_TIMEOUT)
        .await
        .map(|r| (r.status, r.body))
        .map_err(|e| e.to_string());
    let metrics = match get(&status.metrics_addr, METRICS_PATH, HTTP_TIMEOUT).await {
        Ok(r) if r.ok() => parse_metrics(&r.body),
        _ => HashMap::new(),
    };
    let all = checks(&status, &limits, live, &metrics);
    let failed = all.iter().any(|c| c.verdict == Verdict::Fail);
    if as_json {
        let v: Vec<Value> = all
            .iter()
            .map(|c| {
                json!({
                    "check": c.name,
                    "status": match c.verdict { Verdict::Pass => "pass", Verdict::Warn => "warn", Verdict::Fail => "fail" },
                    "value": c.value,
                    "cause": (c.verdict != Verdict::Pass).then_some(c.cause),
                    "fix": (c.verdict != Verdict::Pass).then_some(c.fix),
                })
            })
            .collect();
        return Ok((format!("{}\n", Value::Array(v)), failed));
    }
    let mut out = String::new();
    for c in &all {
        let mark = match c.verdict {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        out.push_str(&format!("[{mark}] {:<16} {}\n", c.name, c.value));
        if c.verdict != Verdict::Pass {
            out.push_str(&format!(
                "       cause: {}\n       fix:   {}\n",
                c.cause, c.fix
            ));
        }
    }
    Ok((out, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_from_buckets() {
        let m = parse_metrics("h_bucket{le=\"0.1\"} 50\nh_bucket{le=\"1\"} 99\nh_bucket{le=\"10\"} 100\nh_bucket{le=\"+Inf\"} 100\n");
        assert_eq!(p99(&m, "h"), Some(1.0));
        assert_eq!(p99(&parse_metrics("h_bucket{le=\"+Inf\"} 0\n"), "h"), None);
    }

    #[test]
    fn quic_buffers_below_the_wanted_size_warn_with_the_sysctl_to_raise() {
        let mut s = StatusResponse {
            udp_buffer_wanted: 4 << 20,
            ..Default::default()
        };
        assert_eq!(udp_check(&s).verdict, Verdict::Pass);
        s.udp_receive_buffer = 4 << 20;
        s.udp_send_buffer = 4 << 20;
        assert_eq!(udp_check(&s).verdict, Verdict::Pass);
        s.udp_receive_buffer = 212_992;
        let c = udp_check(&s);
        assert_eq!(c.verdict, Verdict::Warn);
        assert_eq!(c.value, "receive 208 KiB, send 4096 KiB of 4096 KiB wanted");
        assert!(c.fix.contains("net.core.rmem_max=4194304"), "{}", c.fix);
    }
}
