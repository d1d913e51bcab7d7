//! The stats worker against real Redis and a Kafka-protocol broker.

use std::time::Duration;

use shared::testing::{TestEnv, eventually};
use stats_worker::Config;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_redelivered_event_is_counted_once() {
    let env = TestEnv::on_services();
    let worker = env
        .spawn_worker(&shared::config::defaults::<Config>())
        .await;

    let sale = env.create_sale(10).await;
    let (_, first) = env.reserve(&sale, "alice").await;
    let (_, second) = env.reserve(&sale, "bob").await;
    // One key, so one partition in this order: the duplicate is handled before `second`.
    for payload in [&first, &first, &second] {
        env.publish_raw("k", payload.as_bytes()).await;
    }
    let store = env.backends().stats();
    let stats = eventually("both orders counted", WAIT, async || {
        let stats = store.read(&sale.id).await.ok()?;
        (stats.counts.sold >= 2).then_some(stats)
    })
    .await;
    worker.stop().await.expect("graceful shutdown returns Ok");

    assert_eq!(stats.counts.sold, 2);
    assert_eq!(stats.counts.revenue_cents, 2 * sale.price_cents);
    assert_eq!(stats.counts.buyers, 2);
    assert_eq!(stats.timeline.iter().map(|p| p.sold).sum::<u64>(), 2);
    assert_eq!(
        store.read(&sale.id).await.unwrap(),
        stats,
        "nothing counted later"
    );
}

#[tokio::test]
async fn statistics_counted_after_the_sale_settled_expire_with_it() {
    let env = TestEnv::on_services();
    let sale = env.create_sale(3).await;
    assert!(
        env.ledger()
            .settle_sale(&sale.id, true, Duration::from_mins(10))
            .await
            .unwrap()
    );
    // A late redelivery, counted after the settle gave the sale's keys their expiry.
    let late = shared::testing::reservation(
        shared::ids::OrderId::generate(&sale.id),
        &"latecomer".parse().unwrap(),
        sale.price_cents,
    );
    assert_eq!(env.backends().stats().apply(&[&late]).await.unwrap(), 1);

    let keys = env.keys().sale(&sale.id);
    let mut redis = env.redis_connection().await;
    for key in [
        &keys.stats,
        &keys.stats_events,
        &keys.stats_buyers,
        &keys.stats_timeline,
    ] {
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            ttl_ms > 0,
            "{key} expires with the sale, not never ({ttl_ms})"
        );
    }
}
