//! Publishes many messages back to back through one control connection, as a busy local
//! application would.
//!
//! Usage: publish_many SOCKET TOPIC COUNT SIZE — publishes COUNT messages of SIZE bytes
//! ("msg-I" padded with dots), each waiting for the daemon's answer before the next; prints
//! `{"published": N, "failed": N, "first_error": "..."}`.

use std::path::PathBuf;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let socket = PathBuf::from(args.next().ok_or("SOCKET")?);
    let topic = args.next().ok_or("TOPIC")?;
    let count: usize = args.next().ok_or("COUNT")?.parse()?;
    let size: usize = args.next().ok_or("SIZE")?.parse()?;
    let mut client = p2pctl::Client::connect(&socket).await?;
    let (mut published, mut failed, mut first_error) = (0, 0, String::new());
    for i in 0..count {
        let mut data = format!("msg-{i}").into_bytes();
        data.resize(size.max(data.len()), b'.');
        match client.pubsub_publish(&topic, data).await {
            Ok(_) => published += 1,
            Err(e) => {
                failed += 1;
                if first_error.is_empty() {
                    first_error = e.to_string();
                }
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({"published": published, "failed": failed, "first_error": first_error})
    );
    Ok(())
}
