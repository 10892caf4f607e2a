//! What a client sends cannot grow the daemon: topic names are bounded, and subscriptions that
//! come and go give their memory and metric labels back.

use p2pd_e2e::{http_get, wait_until, Node, NodeOpts, Transport};
use std::time::Duration;

fn subscribe_and_close(rt: &tokio::runtime::Runtime, node: &Node, topic: &str) {
    rt.block_on(async {
        let client = p2pctl::Client::connect(&node.socket)
            .await
            .expect("connect");
        let sub = client.pubsub_subscribe(topic).await.expect("subscribe");
        drop(sub);
    });
}

#[test]
fn subscriptions_that_come_and_go_leave_nothing_behind() {
    let n = Node::start(
        "n",
        NodeOpts {
            transport: Transport::Tcp,
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // An oversized topic is refused before it becomes state.
    let huge = "t".repeat(1 << 20);
    let refused = rt.block_on(async {
        let client = p2pctl::Client::connect(&n.socket).await.expect("connect");
        client.pubsub_subscribe(&huge).await.map(|_| ())
    });
    let e = refused.expect_err("a 1 MiB topic was accepted");
    assert!(e.to_string().contains("at most 1024"), "{e}");

    let long = |i: usize| format!("{i:04}-{}", "x".repeat(1_000));
    let released = |n: &Node| {
        wait_until(Duration::from_secs(10), || {
            n.ctl_json(&["pubsub", "topics"])["topics"] == serde_json::json!([])
        })
    };
    for i in 0..20 {
        subscribe_and_close(&rt, &n, &long(i));
    }
    assert!(
        released(&n),
        "topics stayed subscribed after their clients left"
    );
    let baseline = n.rss_kib();
    for i in 20..220 {
        subscribe_and_close(&rt, &n, &long(i));
    }
    assert!(
        released(&n),
        "topics stayed subscribed after their clients left"
    );
    let grown = n.rss_kib().saturating_sub(baseline);
    assert!(
        grown < 8 * 1024,
        "RSS grew by {grown} KiB over 200 subscriptions"
    );

    let metrics = n.status()["metrics_addr"]
        .as_str()
        .expect("metrics")
        .to_string();
    let body = http_get(&metrics, "/metrics").body;
    assert!(body.len() < 256 << 10, "/metrics is {} bytes", body.len());
}

/// Whatever a client sends, the log gets a bounded copy: a 100 kB multiaddr, ban reason and log
/// filter are cut short in every output format, and say so.
#[test]
fn logged_client_values_are_bounded() {
    for format in ["json", "text"] {
        let n = Node::start(
            &format!("log-{format}"),
            NodeOpts {
                transport: Transport::Tcp,
                args: vec!["--log-format".into(), format.into()],
                ..Default::default()
            },
        );
        let long = "a".repeat(100_000);
        // Each is audited (or refused with an error that quotes it) before any check.
        let _ = n.ctl(&["connect", &format!("/dns4/{long}/tcp/1")]);
        // Not a valid filter (a valid one would silence the rest of the test).
        let _ = n.ctl(&["log-level", &format!("info,[{long}")]);
        let _ = n.ctl(&["ban", "192.0.2.44", "--reason", &long[..1000]]);
        assert!(
            wait_until(Duration::from_secs(5), || n.log().contains("192.0.2.44")),
            "the ban was not logged"
        );
        let log = n.log();
        let longest = log.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 8192, "{format}: a log line of {longest} bytes");
        assert!(
            log.contains("…["),
            "{format}: no value was marked as cut: {}",
            &log[log.len().saturating_sub(2000)..]
        );
    }
}
