//! `SmsRecords`: a record is seen, to the millisecond, until it expires.

use std::time::Duration;

use shared::ids::OrderId;
use shared::testing::TestEnv;

shared::conformance!(an_sms_record_is_seen_until_it_expires);

async fn an_sms_record_is_seen_until_it_expires(env: TestEnv) {
    let store = env.backends().sms_records();
    let sale = "sms-sale".parse().unwrap();
    let order = OrderId::generate(&sale);
    let other = OrderId::generate(&sale);
    assert!(!store.sent(&order).await.unwrap());
    store
        .record_sent(&order, Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(store.sent(&order).await.unwrap());
    assert!(!store.sent(&other).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        store.sent(&order).await.unwrap(),
        "kept to the millisecond, not rounded down"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!store.sent(&order).await.unwrap(), "expired");
}
