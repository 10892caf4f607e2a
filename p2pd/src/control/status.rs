//! `status`: the node's summary.

use crate::node::{ApiError, NodeHandle, Status};
use p2pd_proto::control::{response::Kind, AddressTest, StatusRequest, StatusResponse};

pub async fn handle(node: &NodeHandle, _req: StatusRequest) -> Result<Kind, ApiError> {
    let s = node.call(|n| Ok(n.status())).await?;
    Ok(Kind::Status(to_proto(s)))
}

fn to_proto(s: Status) -> StatusResponse {
    let addrs = |list: Vec<libp2p::Multiaddr>| list.iter().map(|a| a.to_string()).collect();
    StatusResponse {
        peer_id: s.peer_id.to_string(),
        version: s.version.into(),
        uptime_seconds: s.uptime.as_secs(),
        listen_addrs: addrs(s.listen_addrs),
        external_addrs: addrs(s.external_addrs),
        metrics_addr: s.metrics_addr,
        connections_inbound: s.connections_inbound,
        connections_outbound: s.connections_outbound,
        connected_peers: s.connected_peers,
        routing_table_size: s.routing_table_size,
        nat_status: s.nat_status.into(),
        open_files_limit: s.open_files_limit,
        dht_mode: s.dht_mode,
        mode: s.mode.into(),
        bootstrap_configured: s.bootstrap_configured,
        bootstrap_connected: s.bootstrap_connected,
        nat_source: s.nat_source,
        relay_addrs: addrs(s.relay_addrs),
        relay_serving: s.relay_serving,
        connections_relayed: s.connections_relayed,
        hole_punch_succeeded: s.hole_punches.succeeded,
        hole_punch_failed: s.hole_punches.failed,
        hole_punch_error: s.hole_punches.last_error.unwrap_or_default(),
        address_tests: s
            .address_tests
            .into_iter()
            .map(|(a, t)| AddressTest {
                address: a.to_string(),
                reachable: t.reachable,
                tested_by: t.by.to_string(),
                error: t.error.unwrap_or_default(),
                tested_unix: t
                    .at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default(),
            })
            .collect(),
        udp_receive_buffer: s.udp_buffers.map_or(0, |b| b.0 as u64),
        udp_send_buffer: s.udp_buffers.map_or(0, |b| b.1 as u64),
        udp_buffer_wanted: crate::udp::WANTED as u64,
    }
}
