//! Using p2pd from a Rust application with the `p2pctl` client library: print the node's
//! identity, publish one message, and follow a topic.
//!
//! ```sh
//! cargo run -p p2pctl --example watch_topic -- [SOCKET] [TOPIC]
//! ```

use p2pctl::{Client, ClientError};
use std::path::PathBuf;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let socket = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(p2pctl::default_socket);
    let topic = args.next().unwrap_or_else(|| "example".to_string());

    let mut client = Client::connect(&socket).await?;
    let status = client.status().await?;
    println!(
        "connected to {} (p2pd {}), {} peers",
        status.peer_id, status.version, status.connected_peers
    );

    // A subscription takes over its connection, so publishing uses a second one.
    let subscription = Client::connect(&socket)
        .await?
        .pubsub_subscribe(&topic)
        .await?;
    match client
        .pubsub_publish(&topic, b"hello from the example".to_vec())
        .await
    {
        Ok(r) => println!("published {}", r.message_id),
        Err(e) => println!("not published: {e}"),
    }
    let mut subscription = subscription;
    while let Some(message) = subscription.next().await {
        let m = message?;
        println!(
            "{} #{}: {}",
            m.from,
            m.seq_no,
            String::from_utf8_lossy(&m.data)
        );
    }
    Ok(())
}
