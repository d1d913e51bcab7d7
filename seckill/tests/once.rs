//! `seckill --once` end to end, in-process: the demo on embedded backends must report every
//! invariant held, and its order table must hold exactly the stock.

use std::num::NonZeroU32;

use loadtest::Report;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_demo_sells_exactly_the_stock_and_proves_it() {
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
    assert_eq!(summary.accepted, 60);
    assert_eq!(summary.sms, Some(60));
    // Read the SQLite file again, independently of the load test's own checks.
    let orders = order_worker::store::open(
        &format!("sqlite:{}", data_dir.path().join("orders.db").display()),
        order_worker::store::DatabaseSettings::default(),
    )
    .unwrap()
    .sale_orders(&summary.sale_id.parse().unwrap())
    .await
    .unwrap();
    assert_eq!((orders.rows, orders.distinct_buyers), (60, 60));
}
