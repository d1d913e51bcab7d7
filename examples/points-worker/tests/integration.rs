//! The points worker against real Redis and a Kafka-protocol broker: a payment awards its
//! points once however often its event arrives, and no other transition awards any.

use std::time::Duration;

use points_worker::{Config, POINTS};
use shared::event::Stream;
use shared::stock::OrderStatus;
use shared::testing::{TestEnv, eventually};

#[tokio::test]
async fn a_redelivered_event_awards_its_points_once() {
    let env = TestEnv::on_services();
    let sale = env.create_sale(10).await; // priced 12.50
    let ledger = env.ledger();
    let (first, _) = env.reserve(&sale, "alice").await;
    let (second, _) = env.reserve(&sale, "bob").await;
    let (unpaid, _) = env.reserve(&sale, "carl").await;
    let orders = [&first.order_id, &second.order_id, &unpaid.order_id];
    ledger.complete_orders(&sale.id, &orders).await.unwrap();
    for buyer in [&first, &second] {
        ledger.pay(&buyer.order_id, &buyer.user_id).await.unwrap();
    }
    let worker = env
        .spawn_worker(&shared::config::defaults::<Config>())
        .await;
    // One key, so one partition in this order; alice's payment arrives twice.
    let transitions = env.claim_transitions(&sale.id).await;
    let alices_payment = transitions
        .iter()
        .find(|(event, _)| event.order_id == first.order_id && event.status == OrderStatus::Paid)
        .expect("alice paid")
        .1
        .clone();
    let payloads = transitions.into_iter().map(|(_, json)| json);
    for payload in std::iter::once(alices_payment).chain(payloads) {
        env.publish_raw_to(Stream::OrderEvents, "k", payload.as_bytes())
            .await;
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
    assert_eq!(
        points.get(unpaid.user_id.as_str()).await.unwrap(),
        0,
        "a reservation without payment earns nothing"
    );
}
