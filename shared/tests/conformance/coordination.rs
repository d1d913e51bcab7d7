//! `Coordination`: the versioned blacklist, the lease, the expiring SMS records.

use std::collections::HashSet;
use std::time::Duration;

use shared::ids::OrderId;
use shared::testing::TestEnv;

shared::conformance!(
    the_blacklist_version_moves_with_every_change,
    one_holder_has_the_lease_until_it_expires,
    an_sms_record_is_seen_until_it_expires,
);

async fn the_blacklist_version_moves_with_every_change(env: TestEnv) {
    let store = env.backends().coordination;
    assert_eq!(
        store.blacklist_since(-1).await.unwrap(),
        (0, Some(HashSet::new())),
        "an empty list at version 0"
    );
    assert_eq!(store.blacklist_since(0).await.unwrap(), (0, None));

    store.set_blacklisted("mallory", true).await.unwrap();
    store.set_blacklisted("trudy", true).await.unwrap();
    let (version, users) = store.blacklist_since(0).await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        users,
        Some(HashSet::from(["mallory".into(), "trudy".into()]))
    );
    assert_eq!(
        store.blacklist_since(2).await.unwrap(),
        (2, None),
        "no reload without a change"
    );

    store.set_blacklisted("mallory", false).await.unwrap();
    assert_eq!(
        store.blacklist_since(2).await.unwrap(),
        (3, Some(HashSet::from(["trudy".into()])))
    );
}

async fn one_holder_has_the_lease_until_it_expires(env: TestEnv) {
    let store = env.backends().coordination;
    let ttl = Duration::from_millis(300);
    assert!(store.hold_lease("job", "first", ttl).await.unwrap());
    assert!(
        !store.hold_lease("job", "second", ttl).await.unwrap(),
        "taken"
    );
    tokio::time::sleep(ttl / 2).await;
    assert!(
        store.hold_lease("job", "first", ttl).await.unwrap(),
        "renewed"
    );
    tokio::time::sleep(ttl * 2 / 3).await;
    assert!(
        !store.hold_lease("job", "second", ttl).await.unwrap(),
        "still taken: the renewal extended the lease"
    );
    assert!(
        store.hold_lease("other-job", "second", ttl).await.unwrap(),
        "leases are per job"
    );
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(
        store.hold_lease("job", "second", ttl).await.unwrap(),
        "a holder that stopped renewing loses the lease"
    );
    assert!(!store.hold_lease("job", "first", ttl).await.unwrap());
}

async fn an_sms_record_is_seen_until_it_expires(env: TestEnv) {
    let store = env.backends().coordination;
    let order = OrderId::generate("sms-sale");
    let other = OrderId::generate("sms-sale");
    assert!(!store.sms_sent(&order).await.unwrap());
    store
        .record_sms_sent(&order, Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(store.sms_sent(&order).await.unwrap());
    assert!(!store.sms_sent(&other).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        store.sms_sent(&order).await.unwrap(),
        "kept to the millisecond, not rounded down"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!store.sms_sent(&order).await.unwrap(), "expired");
}
