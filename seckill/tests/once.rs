//! `seckill --once` end to end, in-process: the demo on embedded backends must report every
//! invariant held, with orders paid, expired and resold, and its order table must agree.

use std::num::NonZeroU32;

use loadtest::Report;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_demo_sells_pays_expires_resells_and_proves_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut cli: seckill::Cli = shared::config::defaults();
    cli.once = true;
    cli.listen = "127.0.0.1:0".parse().unwrap();
    cli.data_dir = data_dir.path().to_owned();
    cli.users = 400;
    cli.stock = 60;
    cli.sms_rate_per_sec = NonZeroU32::new(1000).unwrap();

    let report = seckill::run(cli, CancellationToken::new())
        .await
        .expect("the demo runs")
        .expect("not stopped before the report");

    let Report::Crowd(summary) = report else {
        panic!("the demo runs a flash crowd")
    };
    assert!(summary.checked, "the invariants were checked");
    assert_eq!(summary.violations, Vec::<String>::new());
    let (paid, expired, resold) = (
        summary.paid.expect("a lifecycle run"),
        summary.expired.expect("a lifecycle run"),
        summary.resold.expect("a lifecycle run"),
    );
    assert_eq!(
        summary.accepted,
        60 + resold,
        "the stock, then the resold units"
    );
    assert!(
        paid > 0 && expired > 0 && resold > 0,
        "{paid} {expired} {resold}"
    );
    assert_eq!(
        paid + summary.remaining,
        60,
        "stock = remaining + paid orders"
    );
    assert_eq!(
        summary.sms,
        Some(summary.accepted + paid + expired),
        "one SMS per order, and one per payment or expiry"
    );
    // Read the SQLite file again, independently of the load test's own checks.
    let orders = order_worker::store::open(
        &format!("sqlite:{}", data_dir.path().join("orders.db").display()),
        order_worker::store::DatabaseSettings::default(),
    )
    .unwrap()
    .sale_orders(&summary.sale_id.parse().unwrap())
    .await
    .unwrap();
    assert_eq!(
        (orders.rows, orders.distinct_buyers),
        (summary.accepted, summary.accepted)
    );
    assert_eq!((orders.paid, orders.expired), (paid, expired));
}
