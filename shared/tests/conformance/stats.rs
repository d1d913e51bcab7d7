//! `StatsStore`: every event counted exactly once, however often and however concurrently it
//! arrives.

use std::sync::Arc;

use shared::event::TransitionEvent;
use shared::stats::{SaleCounts, SaleStats, TimelinePoint};
use shared::stock::OrderStatus;
use shared::testing::TestEnv;

shared::conformance!(
    an_event_is_counted_once_however_often_it_arrives,
    concurrent_redeliveries_count_each_event_once,
    each_transition_is_counted_once_by_status,
    a_payment_undone_by_its_orders_failure_is_no_sale_whichever_event_comes_first,
    the_counts_are_the_statistics_without_their_timeline,
);

async fn an_event_is_counted_once_however_often_it_arrives(env: TestEnv) {
    let stats = env.backends().stats();
    let sale = env.create_sale(10).await;
    assert_eq!(stats.read(&sale.id).await.unwrap(), SaleStats::default());
    let (alice, _) = env.reserve(&sale, "alice").await;
    let (bob, _) = env.reserve(&sale, "bob").await;

    assert_eq!(stats.apply(&[&alice, &alice, &bob]).await.unwrap(), 2);
    assert_eq!(stats.apply(&[&bob]).await.unwrap(), 0);

    let counted = stats.read(&sale.id).await.unwrap();
    assert_eq!(counted.counts.sold, 2);
    assert_eq!(counted.counts.revenue_cents, 2 * sale.price_cents);
    assert_eq!(counted.counts.buyers, 2);
    let mut seconds = vec![alice.reserved_at.timestamp(), bob.reserved_at.timestamp()];
    seconds.dedup();
    let timeline_total: u64 = counted.timeline.iter().map(|p| p.sold).sum();
    assert_eq!(timeline_total, 2);
    assert_eq!(
        counted
            .timeline
            .iter()
            .map(|p: &TimelinePoint| p.second)
            .collect::<Vec<_>>(),
        seconds
    );
}

async fn concurrent_redeliveries_count_each_event_once(env: TestEnv) {
    let stats = env.backends().stats();
    let sale = env.create_sale(20).await;
    let mut events = Vec::new();
    for user in 0..20 {
        events.push(env.reserve(&sale, &format!("user-{user}")).await.0);
    }
    let events = Arc::new(events);
    // Eight workers race to apply the same twenty events.
    let racers = (0..8).map(|_| {
        let (stats, events) = (Arc::clone(&stats), Arc::clone(&events));
        tokio::spawn(async move {
            let batch: Vec<_> = events.iter().collect();
            stats.apply(&batch).await.unwrap()
        })
    });
    let newly_counted: u64 = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|joined| joined.expect("no task panicked"))
        .sum();
    assert_eq!(
        newly_counted, 20,
        "each event new exactly once across all workers"
    );
    let counted = stats.counts(&sale.id).await.unwrap();
    assert_eq!((counted.sold, counted.buyers), (20, 20));
    assert_eq!(counted.revenue_cents, 20 * sale.price_cents);
}

async fn each_transition_is_counted_once_by_status(env: TestEnv) {
    let stats = env.backends().stats();
    let sale = env.create_sale(10).await;
    let (paid, _) = env.reserve(&sale, "pam").await;
    let (expired, _) = env.reserve(&sale, "ed").await;
    let (failed, _) = env.reserve(&sale, "fiona").await;
    let at = 1_795_000_000_000;
    let transition = |event: &shared::event::ReservationEvent, status| {
        TransitionEvent::new(&event.order_id, &event.user_id, 700, status, at)
    };
    let events = [
        transition(&paid, OrderStatus::Created),
        transition(&paid, OrderStatus::Paid),
        transition(&expired, OrderStatus::Created),
        transition(&expired, OrderStatus::Expired),
        transition(&failed, OrderStatus::Failed),
    ];
    let batch: Vec<&TransitionEvent> = events.iter().chain(&events).collect();
    assert_eq!(stats.apply_transitions(&batch).await.unwrap(), 5);
    assert_eq!(stats.apply_transitions(&batch).await.unwrap(), 0);
    let counted = stats.counts(&sale.id).await.unwrap();
    assert_eq!(
        (
            counted.created,
            counted.paid,
            counted.expired,
            counted.failed
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(counted.paid_revenue_cents, 700);
    assert_eq!(
        counted.sold, 0,
        "reservations are counted from their own events"
    );
}

/// An order paid while processing whose row was then refused fails, and its charge is
/// refunded: the statistics count it failed, never paid, in either order of its events.
async fn a_payment_undone_by_its_orders_failure_is_no_sale_whichever_event_comes_first(
    env: TestEnv,
) {
    let stats = env.backends().stats();
    let sale = env.create_sale(10).await;
    let (paid_first, _) = env.reserve(&sale, "pia").await;
    let (failed_first, _) = env.reserve(&sale, "fred").await;
    let (kept, _) = env.reserve(&sale, "kim").await;
    let transition = |event: &shared::event::ReservationEvent, status| {
        TransitionEvent::new(
            &event.order_id,
            &event.user_id,
            700,
            status,
            1_795_000_000_000,
        )
    };
    for events in [
        [
            transition(&paid_first, OrderStatus::Paid),
            transition(&failed_first, OrderStatus::Failed),
            transition(&kept, OrderStatus::Paid),
        ],
        [
            transition(&paid_first, OrderStatus::Failed),
            transition(&failed_first, OrderStatus::Paid),
            transition(&kept, OrderStatus::Paid),
        ],
    ] {
        let batch: Vec<&TransitionEvent> = events.iter().collect();
        stats.apply_transitions(&batch).await.unwrap();
    }
    let counted = stats.counts(&sale.id).await.unwrap();
    assert_eq!((counted.paid, counted.failed), (1, 2), "{counted:?}");
    assert_eq!(
        counted.paid_revenue_cents, 700,
        "only the kept order's payment"
    );
}

/// The dashboard reads the counts every second: the same figures as a full read, without the
/// timeline that grows with every second of selling.
async fn the_counts_are_the_statistics_without_their_timeline(env: TestEnv) {
    let stats = env.backends().stats();
    let sale = env.create_sale(10).await;
    assert_eq!(stats.counts(&sale.id).await.unwrap(), SaleCounts::default());
    let (reserved, _) = env.reserve(&sale, "cora").await;
    let (paid, _) = env.reserve(&sale, "paco").await;
    stats.apply(&[&reserved, &paid]).await.unwrap();
    let payment = TransitionEvent::new(
        &paid.order_id,
        &paid.user_id,
        700,
        OrderStatus::Paid,
        1_795_000_000_000,
    );
    stats.apply_transitions(&[&payment]).await.unwrap();

    let full = stats.read(&sale.id).await.unwrap();
    assert!(!full.timeline.is_empty(), "the full read has the timeline");
    let counts = stats.counts(&sale.id).await.unwrap();
    assert_eq!(counts, full.counts);
    assert_eq!((counts.sold, counts.buyers, counts.paid), (2, 2, 1));
}
