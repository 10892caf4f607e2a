//! `soak [SECONDS] [EVERY]`: a mixed load on a node (control clients, peers joining and leaving,
//! gossip, blocks) for SECONDS (default 600), its RSS and open descriptors sampled every EVERY
//! seconds (default 30); prints the samples and whether they level off. `scripts/soak.sh` runs
//! it on a release build.

use std::time::Duration;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let length = Duration::from_secs(args.first().copied().unwrap_or(600));
    let every = Duration::from_secs(args.get(1).copied().unwrap_or(30));
    let samples = p2pd_e2e::soak::run(length, every);
    print!("{}", p2pd_e2e::soak::table(&samples));
    match p2pd_e2e::soak::levels_off(&samples, 0.10) {
        Ok(()) => println!("levels off: yes"),
        Err(e) => {
            println!("levels off: no — {e}");
            std::process::exit(1);
        }
    }
}
