//! A connection flood for tests: many identities dial one target over and over until a total
//! number of attempts is reached, keeping whatever connections the target lets stay open.
//!
//! Usage: conn_flood TARGET_MULTIADDR IDENTITIES ATTEMPTS
//! Prints `{"attempts":N,"established":N,"closed":N,"failed":N}` when done, then keeps the
//! surviving connections until killed.

use futures::StreamExt;
use libp2p::swarm::{dummy, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Counts {
    attempts: AtomicU64,
    established: AtomicU64,
    closed: AtomicU64,
    failed: AtomicU64,
}

async fn flood(
    target: Multiaddr,
    counts: Arc<Counts>,
    limit: u64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| dummy::Behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    let mut connected = false;
    let dial = |swarm: &mut libp2p::Swarm<dummy::Behaviour>| {
        if counts.attempts.fetch_add(1, Ordering::SeqCst) < limit {
            let _ = swarm.dial(target.clone());
            true
        } else {
            false
        }
    };
    let mut in_flight = dial(&mut swarm);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => {
                counts.established.fetch_add(1, Ordering::SeqCst);
                connected = true;
                in_flight = false;
            }
            SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } => {
                counts.closed.fetch_add(1, Ordering::SeqCst);
                connected = false;
                in_flight = dial(&mut swarm);
            }
            SwarmEvent::OutgoingConnectionError { .. } => {
                counts.failed.fetch_add(1, Ordering::SeqCst);
                in_flight = dial(&mut swarm);
            }
            _ => {}
        }
        if !connected && !in_flight && counts.attempts.load(Ordering::SeqCst) >= limit {
            // Nothing left to do for this identity; idle until the process ends.
            std::future::pending::<()>().await;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target: Multiaddr = args.next().ok_or("TARGET_MULTIADDR")?.parse()?;
    let identities: usize = args.next().ok_or("IDENTITIES")?.parse()?;
    let attempts: u64 = args.next().ok_or("ATTEMPTS")?.parse()?;
    let counts = Arc::new(Counts::default());
    for _ in 0..identities {
        let (t, c) = (target.clone(), counts.clone());
        tokio::spawn(async move {
            if let Err(e) = flood(t, c, attempts).await {
                eprintln!("conn_flood: {e}");
            }
        });
    }
    while counts.attempts.load(Ordering::SeqCst) < attempts {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = |c: &Counts| {
        c.established.load(Ordering::SeqCst) + c.failed.load(Ordering::SeqCst) >= attempts
    };
    for _ in 0..500 {
        if settled(&counts) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{{\"attempts\":{},\"established\":{},\"closed\":{},\"failed\":{}}}",
        attempts,
        counts.established.load(Ordering::SeqCst),
        counts.closed.load(Ordering::SeqCst),
        counts.failed.load(Ordering::SeqCst)
    );
    std::future::pending::<()>().await;
    Ok(())
}
