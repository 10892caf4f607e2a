//! `churn [NODES] [WAVES]`: a network of NODES (default 50) under WAVES (default 3) of churn
//! (see `p2pd_e2e::churn`); prints what it measured. `scripts/churn.sh` runs it on a release
//! build.

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(50);
    let waves = args.get(1).copied().unwrap_or(3);
    let report = p2pd_e2e::churn::run(n, waves, &mut |l| eprintln!("{l}"));
    print!("{}", report.table());
}
