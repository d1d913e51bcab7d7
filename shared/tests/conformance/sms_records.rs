//! `SmsRecords`: one sender at a time per message (order and kind), a claim that expires or is given up, and a
//! "sent" record seen by everyone, to the millisecond, until it expires.

use std::time::Duration;

use shared::ids::OrderId;
use shared::sms_records::{Claim, SmsId, SmsKind};
use shared::testing::TestEnv;

shared::conformance!(
    one_sender_holds_an_orders_claim_until_it_gives_it_up_or_it_expires,
    a_sent_record_is_seen_by_every_sender_until_it_expires,
);

/// The reservation message of `order_id`.
fn reserved(order_id: OrderId) -> SmsId {
    SmsId {
        order_id,
        kind: SmsKind::Reserved,
    }
}

async fn one_sender_holds_an_orders_claim_until_it_gives_it_up_or_it_expires(env: TestEnv) {
    let records = env.backends().sms_records();
    let order = reserved(OrderId::generate(&"sms-sale".parse().unwrap()));
    let ttl = Duration::from_millis(400);
    assert_eq!(records.claim(&order, "a", ttl).await.unwrap(), Claim::Mine);
    assert_eq!(
        records.claim(&order, "b", ttl).await.unwrap(),
        Claim::Theirs
    );
    assert_eq!(
        records.claim(&order, "a", ttl).await.unwrap(),
        Claim::Mine,
        "a holder renews its own claim"
    );
    records.release(&order, "b").await.unwrap();
    assert_eq!(
        records.claim(&order, "b", ttl).await.unwrap(),
        Claim::Theirs,
        "only the holder gives a claim up"
    );
    records.release(&order, "a").await.unwrap();
    assert_eq!(records.claim(&order, "b", ttl).await.unwrap(), Claim::Mine);
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(
        records.claim(&order, "c", ttl).await.unwrap(),
        Claim::Mine,
        "a sender that died loses its claim when it expires"
    );
}

async fn a_sent_record_is_seen_by_every_sender_until_it_expires(env: TestEnv) {
    let records = env.backends().sms_records();
    let sale = "sms-sale".parse().unwrap();
    let order = OrderId::generate(&sale);
    let (other, order) = (
        SmsId {
            order_id: order.clone(),
            kind: SmsKind::Paid,
        },
        reserved(order),
    );
    let claim_ttl = Duration::from_mins(1);
    assert_eq!(
        records.claim(&order, "a", claim_ttl).await.unwrap(),
        Claim::Mine
    );
    records
        .record_sent(&order, Duration::from_millis(1500))
        .await
        .unwrap();
    records.release(&order, "a").await.unwrap();
    for holder in ["a", "b"] {
        assert_eq!(
            records.claim(&order, holder, claim_ttl).await.unwrap(),
            Claim::Sent
        );
    }
    assert_eq!(
        records.claim(&other, "b", claim_ttl).await.unwrap(),
        Claim::Mine,
        "another kind of message of the same order is another message"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        records.claim(&order, "b", claim_ttl).await.unwrap(),
        Claim::Sent,
        "kept to the millisecond, not rounded down"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        records.claim(&order, "b", claim_ttl).await.unwrap(),
        Claim::Mine,
        "expired"
    );
}
