//! `StockLedger`: the stock lock's decisions, the stampede counts, the outbox lifecycle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use shared::event::ReservationEvent;
use shared::ids::{OrderId, SaleId, UserId};
use shared::stock::{OrderStatus, OutboxSizes, Reservation, StockLedger, Unpublished};
use shared::testing::TestEnv;

shared::conformance!(
    reserve_decides_in_the_scripts_order,
    a_taken_sale_id_is_refused_and_the_first_sale_kept,
    a_stampede_sells_exactly_the_stock,
    completing_orders_is_idempotent_and_empties_the_outbox,
    a_failed_order_keeps_its_unit_accounted_for,
    the_reconciler_sees_stale_unacknowledged_entries_oldest_first,
    deferring_never_re_marks_an_acknowledged_order,
);

async fn attempt(
    ledger: &dyn StockLedger,
    sale_id: &SaleId,
    user: &str,
) -> (ReservationEvent, Reservation) {
    let user: UserId = user.parse().unwrap();
    let event = ReservationEvent::new(OrderId::generate(sale_id), &user, 1250);
    let outcome = ledger
        .reserve(&event, &event.to_json())
        .await
        .expect("the ledger answers");
    (event, outcome)
}

fn sizes(locked: u64, unacknowledged: u64) -> OutboxSizes {
    OutboxSizes {
        locked,
        unacknowledged,
    }
}

async fn reserve_decides_in_the_scripts_order(env: TestEnv) {
    let ledger = env.ledger();
    let absent: SaleId = "no-such-sale".parse().unwrap();
    let (_, unknown) = attempt(ledger.as_ref(), &absent, "alice").await;
    assert_eq!(unknown, Reservation::UnknownSale);
    assert_eq!(ledger.remaining(&absent).await.unwrap(), None);

    let sale = env.create_sale(1).await;
    let (first, reserved) = attempt(ledger.as_ref(), &sale.id, "alice").await;
    assert_eq!(reserved, Reservation::Reserved { remaining: 0 });
    let (_, sold_out) = attempt(ledger.as_ref(), &sale.id, "bob").await;
    assert_eq!(sold_out, Reservation::SoldOut);
    // The duplicate check comes before the stock check: alice learns her order id, not "sold out".
    let (_, again) = attempt(ledger.as_ref(), &sale.id, "alice").await;
    assert_eq!(
        again,
        Reservation::AlreadyPurchased {
            order_id: first.order_id.clone()
        }
    );

    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(0));
    let outbox = ledger.outbox(&sale.id).await.unwrap();
    assert_eq!(
        outbox,
        HashMap::from([(first.order_id.clone(), first.to_json())]),
        "only the reservation wrote, and it wrote the very payload"
    );
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(1, 1));
    assert_eq!(
        ledger
            .order_status(&first.order_id, &"alice".parse().unwrap())
            .await
            .unwrap(),
        Some(OrderStatus::Processing)
    );
    assert_eq!(
        ledger
            .order_status(&first.order_id, &"bob".parse().unwrap())
            .await
            .unwrap(),
        None,
        "nobody else learns the order exists"
    );
}

async fn a_taken_sale_id_is_refused_and_the_first_sale_kept(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(5).await;
    let mut impostor = sale.clone();
    impostor.stock = 500;
    impostor.name = "Impostor".into();
    assert!(!ledger.create_sale(&impostor).await.unwrap());
    assert_eq!(ledger.sale(&sale.id).await.unwrap(), Some(sale.clone()));
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(5));
    assert!(ledger.sale_ids().await.unwrap().contains(&sale.id));
    assert_eq!(ledger.sale(&"absent".parse().unwrap()).await.unwrap(), None);
}

async fn a_stampede_sells_exactly_the_stock(env: TestEnv) {
    const STOCK: u32 = 50;
    const USERS: usize = 400;
    const ATTEMPTS_PER_USER: usize = 3;
    let ledger = env.ledger();
    let sale = env.create_sale(STOCK).await;
    let attempts = (0..USERS * ATTEMPTS_PER_USER).map(|i| {
        let (ledger, sale_id) = (Arc::clone(&ledger), sale.id.clone());
        tokio::spawn(async move {
            let user = format!("user-{}", i % USERS);
            let (event, outcome) = attempt(ledger.as_ref(), &sale_id, &user).await;
            (user, event, outcome)
        })
    });
    let outcomes = futures::future::join_all(attempts).await;

    let mut reserved: HashMap<String, OrderId> = HashMap::new();
    let mut already: Vec<(String, OrderId)> = Vec::new();
    let mut sold_out = 0;
    for joined in outcomes {
        let (user, event, outcome) = joined.expect("no task panicked");
        match outcome {
            Reservation::Reserved { .. } => {
                let previous = reserved.insert(user, event.order_id);
                assert!(previous.is_none(), "one reservation per buyer");
            }
            Reservation::AlreadyPurchased { order_id } => already.push((user, order_id)),
            Reservation::SoldOut => sold_out += 1,
            Reservation::UnknownSale => panic!("the sale exists"),
        }
    }
    assert_eq!(reserved.len(), STOCK as usize, "exactly the stock is sold");
    assert_eq!(
        reserved.len() + already.len() + sold_out,
        USERS * ATTEMPTS_PER_USER
    );
    for (user, order_id) in &already {
        assert_eq!(
            reserved.get(user),
            Some(order_id),
            "told their own order id"
        );
    }
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(0));
    let outbox: HashSet<OrderId> = ledger.outbox(&sale.id).await.unwrap().into_keys().collect();
    assert_eq!(outbox, reserved.values().cloned().collect());
    assert_eq!(
        ledger.outbox_sizes(&sale.id).await.unwrap(),
        sizes(u64::from(STOCK), u64::from(STOCK))
    );
}

async fn completing_orders_is_idempotent_and_empties_the_outbox(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(3).await;
    let (a, _) = env.reserve(&sale, "a").await;
    let (b, _) = env.reserve(&sale, "b").await;
    let orders = [&a.order_id, &b.order_id];
    assert_eq!(ledger.complete_orders(&sale.id, &orders).await.unwrap(), 2);
    assert_eq!(
        ledger.complete_orders(&sale.id, &orders).await.unwrap(),
        0,
        "a redelivered batch removes nothing more"
    );
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(0, 0));
    for event in [&a, &b] {
        assert_eq!(
            ledger
                .order_status(&event.order_id, &event.user_id)
                .await
                .unwrap(),
            Some(OrderStatus::Created)
        );
    }
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(1));
    let (_, again) = attempt(ledger.as_ref(), &sale.id, "a").await;
    assert_eq!(
        again,
        Reservation::AlreadyPurchased {
            order_id: a.order_id.clone()
        },
        "a created order still counts as the buyer's one purchase"
    );
}

async fn a_failed_order_keeps_its_unit_accounted_for(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(2).await;
    let (event, _) = env.reserve(&sale, "carol").await;
    ledger
        .fail_orders(&sale.id, &[&event.order_id])
        .await
        .unwrap();
    assert_eq!(
        ledger
            .order_status(&event.order_id, &"carol".parse().unwrap())
            .await
            .unwrap(),
        Some(OrderStatus::Failed)
    );
    // Out of the reconciler's reach, still in the outbox: stock = remaining + outbox.
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(1, 0));
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(1));
    let (_, again) = attempt(ledger.as_ref(), &sale.id, "carol").await;
    assert!(
        matches!(again, Reservation::AlreadyPurchased { .. }),
        "a failed order does not free the buyer to buy again: {again:?}"
    );
}

async fn the_reconciler_sees_stale_unacknowledged_entries_oldest_first(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(5).await;
    let mut events = Vec::new();
    for user in ["u1", "u2", "u3", "u4"] {
        events.push(env.reserve(&sale, user).await.0);
        // Distinct reservation times, so "oldest first" is observable.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    ledger
        .mark_published(std::slice::from_ref(&events[1].order_id))
        .await
        .unwrap();
    ledger
        .complete_orders(&sale.id, &[&events[2].order_id])
        .await
        .unwrap();
    let now_ms = Utc::now().timestamp_millis();

    let due = ledger
        .stale_unpublished(&sale.id, now_ms, 10)
        .await
        .unwrap();
    let expected: Vec<Unpublished> = [&events[0], &events[3]]
        .iter()
        .map(|event| Unpublished {
            order_id: event.order_id.clone(),
            payload: Some(event.to_json()),
        })
        .collect();
    assert_eq!(
        due, expected,
        "acknowledged and completed entries are not stale"
    );
    assert_eq!(
        ledger.stale_unpublished(&sale.id, now_ms, 1).await.unwrap(),
        expected[..1],
        "the limit keeps the oldest"
    );
    let before_any = events[0].reserved_at.timestamp_millis() - 1;
    assert!(
        ledger
            .stale_unpublished(&sale.id, before_any, 10)
            .await
            .unwrap()
            .is_empty(),
        "entries younger than the cutoff wait"
    );

    let later = now_ms + 60_000;
    ledger
        .defer_unpublished(std::slice::from_ref(&events[0].order_id), later)
        .await
        .unwrap();
    let due = ledger
        .stale_unpublished(&sale.id, now_ms, 10)
        .await
        .unwrap();
    assert_eq!(
        due,
        expected[1..],
        "a deferred entry waits until its new time"
    );
}

async fn deferring_never_re_marks_an_acknowledged_order(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(2).await;
    let (event, _) = env.reserve(&sale, "dave").await;
    ledger
        .mark_published(std::slice::from_ref(&event.order_id))
        .await
        .unwrap();
    ledger
        .defer_unpublished(std::slice::from_ref(&event.order_id), 0)
        .await
        .unwrap();
    assert!(
        ledger
            .stale_unpublished(&sale.id, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(1, 0));
}
