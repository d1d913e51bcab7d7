//! `OrderStore` conformance: every case runs unchanged against SQLite (`embedded`) and
//! PostgreSQL (`real`, from `scripts/services`). Both must be idempotent, keep one order per
//! buyer, refuse bad rows as a whole batch, and say "unavailable" when they are. The payment
//! resolver's cases (`payments`) run on both stock ledgers the same way.

// The cases are plain functions (the macro makes the tests), so clippy does not see test code.
#![allow(clippy::unwrap_used)]

mod payments;

use std::collections::HashSet;
use std::sync::Arc;

use order_worker::store::{DatabaseSettings, OrderStore, OrderStoreError, SaleOrders};
use shared::consumer::Delivery;
use shared::event::TransitionEvent;
use shared::ids::{OrderId, SaleId};
use shared::stock::OrderStatus;
use shared::testing::{TestEnv, reservation};

shared::conformance!(
    a_redelivered_batch_inserts_nothing_more,
    an_event_twice_in_one_batch_is_one_row,
    a_second_order_for_the_same_buyer_is_skipped,
    a_refused_row_fails_its_whole_batch,
    a_batch_larger_than_one_statement_is_inserted_whole,
    an_unreachable_database_is_unavailable,
    transitions_move_a_row_forward_once_and_never_back,
);

async fn migrated_store(env: &TestEnv) -> Arc<dyn OrderStore> {
    let store = order_worker::store::open(&env.database_url, DatabaseSettings::default())
        .expect("DATABASE_URL parses");
    store
        .migrate()
        .await
        .expect("the database is reachable (run scripts/services up)");
    store
}

/// A fresh sale id: the tests share PostgreSQL's orders table.
fn sale_id() -> SaleId {
    format!("sale-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
        .parse()
        .unwrap()
}

fn order(sale_id: &SaleId, user: &str, price_cents: i64) -> Delivery {
    let user = user.parse().unwrap();
    Delivery {
        event: reservation(OrderId::generate(sale_id), &user, price_cents),
        traceparent: None,
    }
}

fn order_ids(batch: &[Delivery]) -> HashSet<OrderId> {
    batch.iter().map(|d| d.event.order_id.clone()).collect()
}

async fn a_redelivered_batch_inserts_nothing_more(env: TestEnv) {
    let store = migrated_store(&env).await;
    let sale = sale_id();
    let batch = [
        order(&sale, "a", 100),
        order(&sale, "b", 250),
        order(&sale, "c", 300),
    ];
    assert_eq!(store.insert(&batch).await.unwrap(), order_ids(&batch));
    assert_eq!(
        store.insert(&batch).await.unwrap(),
        order_ids(&batch),
        "present from the earlier delivery"
    );
    assert_eq!(
        store.sale_orders(&sale).await.unwrap(),
        SaleOrders {
            rows: 3,
            distinct_buyers: 3,
            revenue_cents: 650,
            ..SaleOrders::default()
        }
    );
    assert_eq!(
        store.sale_orders(&sale_id()).await.unwrap(),
        SaleOrders::default()
    );
}

async fn an_event_twice_in_one_batch_is_one_row(env: TestEnv) {
    // A re-published event can land in the same batch as its first copy.
    let store = migrated_store(&env).await;
    let sale = sale_id();
    let first = order(&sale, "gina", 100);
    let batch = [first.clone(), order(&sale, "hank", 100), first];
    assert_eq!(store.insert(&batch).await.unwrap(), order_ids(&batch));
    assert_eq!(store.sale_orders(&sale).await.unwrap().rows, 2);
}

async fn a_second_order_for_the_same_buyer_is_skipped(env: TestEnv) {
    let store = migrated_store(&env).await;
    let sale = sale_id();
    let original = order(&sale, "frank", 100);
    let forged = order(&sale, "frank", 100);
    store.insert(std::slice::from_ref(&original)).await.unwrap();
    let present = store.insert(std::slice::from_ref(&forged)).await.unwrap();
    assert!(present.is_empty(), "the forged order is not in the table");
    assert_eq!(store.sale_orders(&sale).await.unwrap().rows, 1);
}

async fn a_refused_row_fails_its_whole_batch(env: TestEnv) {
    let store = migrated_store(&env).await;
    let sale = sale_id();
    let batch = [order(&sale, "good", 100), order(&sale, "bad", -1)];
    let result = store.insert(&batch).await;
    assert!(
        matches!(result, Err(OrderStoreError::Rejected(_))),
        "{result:?}"
    );
    assert_eq!(
        store.sale_orders(&sale).await.unwrap().rows,
        0,
        "nothing half-written"
    );
}

async fn a_batch_larger_than_one_statement_is_inserted_whole(env: TestEnv) {
    let store = migrated_store(&env).await;
    let sale = sale_id();
    let batch: Vec<Delivery> = (0..2500)
        .map(|user| order(&sale, &format!("user-{user}"), 10))
        .collect();
    assert_eq!(store.insert(&batch).await.unwrap().len(), 2500);
    assert_eq!(
        store.sale_orders(&sale).await.unwrap(),
        SaleOrders {
            rows: 2500,
            distinct_buyers: 2500,
            revenue_cents: 25_000,
            ..SaleOrders::default()
        }
    );
}

async fn an_unreachable_database_is_unavailable(env: TestEnv) {
    let unreachable = if env.database_url.starts_with("sqlite:") {
        "sqlite:/nonexistent-directory/orders.db".to_owned()
    } else {
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("postgres://postgres@127.0.0.1:{closed_port}/x")
    };
    let store = order_worker::store::open(&unreachable, DatabaseSettings::default())
        .expect("the URL parses");
    let result = store.insert(&[order(&sale_id(), "erin", 100)]).await;
    // The pool retries a refused connection until its acquire timeout, which is also the store's
    // own deadline: whichever fires first names the outage, and both mean "retry later".
    assert!(
        matches!(
            result,
            Err(OrderStoreError::Unavailable(_) | OrderStoreError::TimedOut(_))
        ),
        "{result:?}"
    );
}

/// The transition of `delivery`'s order to `status`, at `at_ms`.
fn transition(delivery: &Delivery, status: OrderStatus, at_ms: i64) -> TransitionEvent {
    let event = &delivery.event;
    TransitionEvent::new(
        &event.order_id,
        &event.user_id,
        event.price_cents,
        status,
        at_ms,
    )
}

async fn transitions_move_a_row_forward_once_and_never_back(env: TestEnv) {
    let store = migrated_store(&env).await;
    let sale = sale_id();
    let (payer, idler, unstored) = (
        order(&sale, "payer", 700),
        order(&sale, "idler", 300),
        order(&sale, "unstored", 100),
    );
    store.insert(&[payer.clone(), idler.clone()]).await.unwrap();

    let paid = transition(&payer, OrderStatus::Paid, 1_795_000_000_000);
    let batch = [
        transition(&payer, OrderStatus::Created, 1_794_999_999_000),
        paid.clone(),
        transition(&idler, OrderStatus::Expired, 1_795_000_000_500),
        transition(&unstored, OrderStatus::Paid, 1_795_000_000_600),
    ];
    let present = store.apply_transitions(&batch).await.unwrap();
    assert_eq!(
        present,
        order_ids(&[payer.clone(), idler.clone()]),
        "the unstored order has no row"
    );
    let expected = SaleOrders {
        rows: 2,
        distinct_buyers: 2,
        revenue_cents: 1000,
        paid: 1,
        paid_revenue_cents: 700,
        expired: 1,
    };
    assert_eq!(store.sale_orders(&sale).await.unwrap(), expected);

    // Again, late, and a contradicting one: a final status never moves.
    let contradiction = transition(&payer, OrderStatus::Expired, 1_795_000_001_000);
    store.apply_transitions(&batch).await.unwrap();
    store.apply_transitions(&[contradiction]).await.unwrap();
    assert_eq!(store.sale_orders(&sale).await.unwrap(), expected);
}
