//! `Leases`: one holder at a time, renewals extend, an abandoned lease expires.

use std::time::Duration;

use shared::testing::TestEnv;

shared::conformance!(one_holder_has_the_lease_until_it_expires);

async fn one_holder_has_the_lease_until_it_expires(env: TestEnv) {
    let store = env.backends().leases();
    let ttl = Duration::from_millis(300);
    assert!(store.hold("job", "first", ttl).await.unwrap());
    assert!(!store.hold("job", "second", ttl).await.unwrap(), "taken");
    tokio::time::sleep(ttl / 2).await;
    assert!(store.hold("job", "first", ttl).await.unwrap(), "renewed");
    tokio::time::sleep(ttl * 2 / 3).await;
    assert!(
        !store.hold("job", "second", ttl).await.unwrap(),
        "still taken: the renewal extended the lease"
    );
    assert!(
        store.hold("other-job", "second", ttl).await.unwrap(),
        "leases are per job"
    );
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(
        store.hold("job", "second", ttl).await.unwrap(),
        "a holder that stopped renewing loses the lease"
    );
    assert!(!store.hold("job", "first", ttl).await.unwrap());
}
