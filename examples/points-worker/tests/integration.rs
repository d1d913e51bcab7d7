//! The points worker against real Redis and a Kafka-protocol broker: a redelivered event
//! awards its points once.

use std::time::Duration;

use points_worker::{Config, POINTS};
use shared::testing::{TestEnv, eventually};

#[tokio::test]
async fn a_redelivered_event_awards_its_points_once() {
    let env = TestEnv::new();
    let sale = env.create_sale(10).await; // priced 12.50
    let (first, first_payload) = env.reserve(&sale, "alice").await;
    let (_, second_payload) = env.reserve(&sale, "bob").await;
    let worker = env
        .spawn_worker(&shared::config::defaults::<Config>())
        .await;
    // One key, so one partition in this order: the duplicate is handled before bob's.
    for payload in [&first_payload, &first_payload, &second_payload] {
        env.publish_raw("k", payload.as_bytes()).await;
    }
    let points = env.backends().counters(POINTS, Duration::from_mins(1));
    eventually("bob's points", Duration::from_secs(30), async || {
        (points.get("bob").await.ok()? == 12).then_some(())
    })
    .await;
    worker.stop().await.expect("graceful shutdown returns Ok");

    assert_eq!(
        points.get(first.user_id.as_str()).await.unwrap(),
        12,
        "once, not twice"
    );
}
