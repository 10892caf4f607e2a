//! The churn scenario at CI size: 15 nodes on loopback, two waves of 20% stopped and restarted
//! without bootstrap peers. Asserted: every gossip message reaches every live subscriber, and
//! every find-peer of a live peer succeeds (timings are printed, never asserted;
//! `scripts/churn.sh` runs 50 nodes).

#[test]
fn fifteen_nodes_under_two_waves_of_churn_deliver_and_find_everyone() {
    let report = p2pd_e2e::churn::run(15, 2, &mut |l| eprintln!("{l}"));
    eprint!("{}", report.table());
    let (lost, failed) = report.misses();
    assert_eq!(
        lost,
        0,
        "gossip messages missed live subscribers:\n{}",
        report.table()
    );
    assert_eq!(
        failed,
        0,
        "find-peer failed for live peers:\n{}",
        report.table()
    );
    assert!(
        report.dht_get.iter().all(|g| g.is_some()),
        "dht get failed:\n{}",
        report.table()
    );
}
