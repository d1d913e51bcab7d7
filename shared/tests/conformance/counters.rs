//! `Counters`: each event adds once, whatever the redelivery, until its id is forgotten.

use std::time::Duration;

use shared::counters::Increment;
use shared::testing::TestEnv;
use uuid::Uuid;

shared::conformance!(
    an_event_adds_once_however_often_it_arrives,
    concurrent_redeliveries_add_once,
    an_event_id_is_forgotten_after_the_retention,
);

async fn an_event_adds_once_however_often_it_arrives(env: TestEnv) {
    let points = env.backends().counters("points", Duration::from_mins(1));
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [
        Increment {
            event_id: first,
            key: "alice",
            amount: 19,
        },
        Increment {
            event_id: second,
            key: "bob",
            amount: 5,
        },
        Increment {
            event_id: first,
            key: "alice",
            amount: 19,
        },
    ];
    assert_eq!(
        points.add_once(&batch).await.unwrap(),
        2,
        "a duplicate within a batch"
    );
    assert_eq!(
        points.add_once(&batch).await.unwrap(),
        0,
        "a redelivered batch"
    );
    assert_eq!(points.get("alice").await.unwrap(), 19);
    assert_eq!(points.get("bob").await.unwrap(), 5);
    assert_eq!(points.get("carol").await.unwrap(), 0);

    let other_set = env.backends().counters("miles", Duration::from_mins(1));
    assert_eq!(
        other_set.add_once(&batch[..1]).await.unwrap(),
        1,
        "sets are apart"
    );
    assert_eq!(points.get("alice").await.unwrap(), 19);
}

async fn concurrent_redeliveries_add_once(env: TestEnv) {
    let points = env.backends().counters("points", Duration::from_mins(1));
    let events: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let deliveries = (0..8).map(|_| {
        let (points, events) = (points.clone(), events.clone());
        tokio::spawn(async move {
            let increments: Vec<Increment<'_>> = events
                .iter()
                .map(|&event_id| Increment {
                    event_id,
                    key: "alice",
                    amount: 1,
                })
                .collect();
            points.add_once(&increments).await.unwrap()
        })
    });
    let mut added = 0;
    for delivery in deliveries {
        added += delivery.await.unwrap();
    }
    assert_eq!(added, 50);
    assert_eq!(points.get("alice").await.unwrap(), 50);
}

async fn an_event_id_is_forgotten_after_the_retention(env: TestEnv) {
    let points = env
        .backends()
        .counters("points", Duration::from_millis(300));
    let increment = [Increment {
        event_id: Uuid::new_v4(),
        key: "alice",
        amount: 1,
    }];
    assert_eq!(points.add_once(&increment).await.unwrap(), 1);
    assert_eq!(points.add_once(&increment).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        points.add_once(&increment).await.unwrap(),
        1,
        "a redelivery later than the retention counts again: choose it longer than the topic's"
    );
    assert_eq!(points.get("alice").await.unwrap(), 2);
}
