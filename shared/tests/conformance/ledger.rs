//! `StockLedger`: the stock lock's decisions, the stampede counts, the outbox lifecycle, and
//! the order's life after the lock: paid, or expired with its unit sold again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shared::event::{ReservationEvent, TransitionEvent};
use shared::ids::{OrderId, SaleId, UserId};
use shared::sale::{DEFAULT_PAYMENT_WINDOW_SECS, Sale};
use shared::stock::{
    OrderStatus, OutboxEntry, OutboxSizes, Payment, PaymentIntent, Publication, Reservation,
    StockLedger, TransitionId,
};
use shared::testing::TestEnv;

shared::conformance!(
    reserve_decides_in_the_scripts_order,
    the_same_attempt_sent_again_is_answered_reserved_and_locks_nothing_more,
    a_lock_found_later_is_confirmed_durable_and_changes_nothing,
    a_taken_sale_id_is_refused_and_the_first_sale_kept,
    a_sale_id_stays_taken_after_its_sale_settled_and_its_keys_expired,
    a_stampede_sells_exactly_the_stock,
    completing_orders_is_idempotent_and_empties_the_outbox,
    a_batch_of_several_slices_completes_each_order_once,
    a_failed_order_returns_its_unit_once,
    a_payment_in_time_is_final_and_repeat_safe,
    an_order_unpaid_past_its_window_expires_and_its_unit_is_sold_again,
    a_payment_window_closes_at_the_sales_end_and_the_sale_settles_one_sweep_later,
    a_late_payment_changes_nothing_and_the_sweep_expires_the_order,
    payment_and_expiry_race_with_exactly_one_winner_per_order,
    the_reconciler_sees_stale_unacknowledged_entries_oldest_first,
    an_acknowledged_entry_without_an_order_row_ages_until_it_counts_as_lost,
    deferring_never_re_marks_an_acknowledged_order,
    a_sale_settles_once_its_outbox_is_empty_and_no_purchase_can_add_to_it,
    every_transition_is_recorded_once_and_relayed_until_acknowledged,
    an_unsettled_payment_keeps_its_sale_from_settling,
    an_order_paid_before_its_row_was_refused_fails_and_its_payment_reopens_for_a_refund,
);

async fn attempt(
    ledger: &dyn StockLedger,
    sale_id: &SaleId,
    user: &str,
) -> (ReservationEvent, Reservation) {
    let user: UserId = user.parse().unwrap();
    let window = chrono::Duration::seconds(i64::from(DEFAULT_PAYMENT_WINDOW_SECS));
    let now = ledger.now(sale_id).await.unwrap();
    let event = ReservationEvent::new(OrderId::generate(sale_id), &user, 1250, now, now + window);
    let outcome = ledger
        .reserve(&event, &event.to_json())
        .await
        .expect("the ledger answers");
    (event, outcome)
}

/// The status the ledger gives the buyer of `event`.
async fn status_of(ledger: &dyn StockLedger, event: &ReservationEvent) -> Option<OrderStatus> {
    ledger
        .order_status(&event.order_id, &event.user_id)
        .await
        .expect("the ledger answers")
}

/// A moment on the ledger's clock no earlier than anything the test did before it: `now_ms`
/// may trail Redis's clock by up to a round trip (see `RedisClock`), which a second covers.
async fn after_all_so_far(ledger: &dyn StockLedger, sale_id: &SaleId) -> i64 {
    ledger.now_ms(sale_id).await.unwrap() + 1_000
}

/// How long a claimed transition event waits for its acknowledgement in these tests.
const REDELIVER_AFTER: Duration = Duration::from_mins(1);

/// Claims every transition event of the sale that is due, as the relay does.
async fn claim_transitions(ledger: &dyn StockLedger, sale_id: &SaleId) -> Vec<TransitionEvent> {
    ledger
        .due_transitions(sale_id, 1000, REDELIVER_AFTER)
        .await
        .unwrap()
        .iter()
        .map(|due| TransitionEvent::from_json(due.payload.as_bytes()).expect("a valid event"))
        .collect()
}

/// Claims and acknowledges every due transition event, as the relay and the broker do.
async fn relay_everything(ledger: &dyn StockLedger, sale_id: &SaleId) -> Vec<TransitionEvent> {
    let events = claim_transitions(ledger, sale_id).await;
    let acknowledged: Vec<TransitionId> = events
        .iter()
        .map(|event| TransitionId {
            order_id: event.order_id.clone(),
            status: event.status,
        })
        .collect();
    ledger
        .mark_transitions_published(&acknowledged)
        .await
        .unwrap();
    events
}

fn sizes(locked: u64, unacknowledged: u64) -> OutboxSizes {
    OutboxSizes {
        locked,
        unacknowledged,
    }
}

async fn the_same_attempt_sent_again_is_answered_reserved_and_locks_nothing_more(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(2).await;
    let (first, reserved) = attempt(ledger.as_ref(), &sale.id, "alice").await;
    assert_eq!(reserved, Reservation::Reserved { remaining: 1 });
    let resent = ledger.reserve(&first, &first.to_json()).await.unwrap();
    assert_eq!(
        resent,
        Reservation::Reserved { remaining: 1 },
        "a resend of the very attempt is its own lock, not a second purchase"
    );
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(1));
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(1, 1));
    let (_, again) = attempt(ledger.as_ref(), &sale.id, "alice").await;
    assert_eq!(
        again,
        Reservation::AlreadyPurchased {
            order_id: first.order_id.clone()
        },
        "another attempt of the same buyer is still refused"
    );
    let (_, bob) = attempt(ledger.as_ref(), &sale.id, "bob").await;
    assert_eq!(bob, Reservation::Reserved { remaining: 0 });
}

async fn a_lock_found_later_is_confirmed_durable_and_changes_nothing(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(2).await;
    let (event, reserved) = attempt(ledger.as_ref(), &sale.id, "carol").await;
    assert_eq!(reserved, Reservation::Reserved { remaining: 1 });
    ledger
        .confirm_written(&sale.id)
        .await
        .expect("a healthy ledger confirms what it holds (on a cluster: a replica does)");
    assert_eq!(
        ledger
            .order_status(&event.order_id, &event.user_id)
            .await
            .unwrap(),
        Some(OrderStatus::Processing)
    );
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(1));
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(1, 1));
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
    assert_eq!(
        ledger
            .buyers_order(&sale.id, &"alice".parse().unwrap())
            .await
            .unwrap(),
        Some(first.order_id.clone()),
        "a buyer finds the order they hold"
    );
    assert_eq!(
        ledger
            .buyers_order(&sale.id, &"bob".parse().unwrap())
            .await
            .unwrap(),
        None
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
    assert!(ledger.active_sale_ids().await.unwrap().contains(&sale.id));
    assert_eq!(ledger.sale(&"absent".parse().unwrap()).await.unwrap(), None);
}

async fn a_sale_id_stays_taken_after_its_sale_settled_and_its_keys_expired(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(3).await;
    // An order names the sale (its row outlives the sale's keys); then the sale settles.
    let (event, _) = env.reserve(&sale, "returning-buyer").await;
    ledger
        .fail_orders(&sale.id, &[&event.order_id])
        .await
        .unwrap();
    relay_everything(ledger.as_ref(), &sale.id).await;
    let retention = Duration::from_millis(50);
    assert!(ledger.settle_sale(&sale.id, true, retention).await.unwrap());
    tokio::time::sleep(retention * 4).await;

    let mut reuse = sale.clone();
    reuse.name = "Another sale under a used id".into();
    assert!(
        !ledger.create_sale(&reuse).await.unwrap(),
        "the id is never given to another sale while an order may name it"
    );
    assert!(!ledger.active_sale_ids().await.unwrap().contains(&sale.id));
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
    let never_locked = OrderId::generate(&sale.id);
    assert_eq!(
        ledger
            .in_outbox(&sale.id, &[&a.order_id, &never_locked])
            .await
            .unwrap(),
        HashSet::from([a.order_id.clone()]),
        "asked about two, one is locked"
    );
    assert_eq!(ledger.complete_orders(&sale.id, &orders).await.unwrap(), 2);
    assert!(
        ledger
            .in_outbox(&sale.id, &orders)
            .await
            .unwrap()
            .is_empty(),
        "completed orders leave the outbox"
    );
    assert_eq!(
        ledger.complete_orders(&sale.id, &orders).await.unwrap(),
        0,
        "a redelivered batch removes nothing more"
    );
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(0, 0));
    for event in [&a, &b] {
        assert_eq!(
            status_of(ledger.as_ref(), event).await,
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

/// The Redis script works in slices of 1000 orders (what one command can take): a batch of
/// several slices, with an order repeated across them, completes every order once.
async fn a_batch_of_several_slices_completes_each_order_once(env: TestEnv) {
    const ORDERS: u32 = 2_100;
    let ledger = env.ledger();
    let sale = env.create_sale(ORDERS).await;
    let mut events = Vec::new();
    for user in 0..ORDERS {
        events.push(env.reserve(&sale, &format!("user-{user}")).await.0);
    }
    let mut batch: Vec<&OrderId> = events.iter().map(|event| &event.order_id).collect();
    batch.push(&events[0].order_id);
    assert_eq!(
        ledger.complete_orders(&sale.id, &batch).await.unwrap(),
        u64::from(ORDERS)
    );
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(0, 0));
    let owners: HashMap<&OrderId, &UserId> = events
        .iter()
        .map(|event| (&event.order_id, &event.user_id))
        .collect();
    let transitions = ledger
        .due_transitions(&sale.id, 10_000, REDELIVER_AFTER)
        .await
        .unwrap();
    assert_eq!(transitions.len(), ORDERS as usize, "one event per order");
    for due in &transitions {
        let event = TransitionEvent::from_json(due.payload.as_bytes()).expect("a valid event");
        assert_eq!(event.status, OrderStatus::Created);
        assert_eq!(owners.get(&event.order_id), Some(&&event.user_id));
    }
    for event in [&events[0], &events[1_500], &events[2_099]] {
        assert_eq!(
            status_of(ledger.as_ref(), event).await,
            Some(OrderStatus::Created)
        );
    }
}

async fn a_failed_order_returns_its_unit_once(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(2).await;
    let (event, _) = env.reserve(&sale, "carol").await;
    let never_locked = OrderId::generate(&sale.id);
    for _ in 0..2 {
        ledger
            .fail_orders(&sale.id, &[&event.order_id, &never_locked])
            .await
            .unwrap();
    }
    assert_eq!(
        status_of(ledger.as_ref(), &event).await,
        Some(OrderStatus::Failed)
    );
    // Compensated once, however often it is reported, and an order id the sale never locked
    // returns nothing: stock = remaining + live orders.
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(2));
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(0, 0));
    assert_eq!(
        ledger.pay(&event.order_id, &event.user_id).await.unwrap(),
        Payment::Failed
    );
    let (_, again) = attempt(ledger.as_ref(), &sale.id, "carol").await;
    assert!(
        matches!(again, Reservation::AlreadyPurchased { .. }),
        "a failed order does not free the buyer to buy again: {again:?}"
    );
}

async fn a_payment_in_time_is_final_and_repeat_safe(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(2).await;
    let (event, _) = env.reserve(&sale, "paula").await;
    let pay_by = ledger.pay_by(&event.order_id).await.unwrap();
    let now = after_all_so_far(ledger.as_ref(), &sale.id).await;
    let window = i64::from(DEFAULT_PAYMENT_WINDOW_SECS) * 1000;
    assert!(
        pay_by.is_some_and(|at| (now + window - 10_000..=now + window).contains(&at)),
        "pay by {pay_by:?}, now {now}"
    );
    let stranger: UserId = "mallory".parse().unwrap();
    assert_eq!(
        ledger.pay(&event.order_id, &stranger).await.unwrap(),
        Payment::NotFound
    );
    assert_eq!(
        ledger.pay(&event.order_id, &event.user_id).await.unwrap(),
        Payment::Paid
    );
    assert_eq!(
        ledger.pay(&event.order_id, &event.user_id).await.unwrap(),
        Payment::AlreadyPaid
    );
    assert_eq!(ledger.pay_by(&event.order_id).await.unwrap(), None);
    // The order row stored after the payment does not move it back.
    ledger
        .complete_orders(&sale.id, &[&event.order_id])
        .await
        .unwrap();
    assert_eq!(
        status_of(ledger.as_ref(), &event).await,
        Some(OrderStatus::Paid)
    );
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(1));
}

async fn an_order_unpaid_past_its_window_expires_and_its_unit_is_sold_again(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale_paid_within(1, 1).await;
    let (event, _) = env.reserve(&sale, "ida").await;
    let (_, refused) = attempt(ledger.as_ref(), &sale.id, "jon").await;
    assert_eq!(refused, Reservation::SoldOut);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        ledger.expire_due(&sale.id, 10).await.unwrap(),
        std::slice::from_ref(&event.order_id)
    );
    assert!(
        ledger.expire_due(&sale.id, 10).await.unwrap().is_empty(),
        "expired once"
    );
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(1));
    assert_eq!(
        status_of(ledger.as_ref(), &event).await,
        Some(OrderStatus::Expired)
    );
    assert_eq!(
        ledger.pay(&event.order_id, &event.user_id).await.unwrap(),
        Payment::Expired
    );
    // Its order row, stored late, does not bring it back.
    ledger
        .complete_orders(&sale.id, &[&event.order_id])
        .await
        .unwrap();
    assert_eq!(
        status_of(ledger.as_ref(), &event).await,
        Some(OrderStatus::Expired)
    );

    let (_, resold) = attempt(ledger.as_ref(), &sale.id, "jon").await;
    assert_eq!(resold, Reservation::Reserved { remaining: 0 });
    let (_, again) = attempt(ledger.as_ref(), &sale.id, "ida").await;
    assert_eq!(
        again,
        Reservation::AlreadyPurchased {
            order_id: event.order_id.clone()
        },
        "a buyer whose order expired cannot buy again in that sale"
    );
}

async fn a_payment_window_closes_at_the_sales_end_and_the_sale_settles_one_sweep_later(
    env: TestEnv,
) {
    let ledger = env.ledger();
    let id: SaleId = "closing-soon".parse().unwrap();
    let now = ledger.now(&id).await.unwrap();
    // The default window, 15 minutes, in a sale that ends in a second and a half.
    let sale = Sale {
        id,
        name: "Short sale".into(),
        price_cents: 1250,
        stock: 1,
        starts_at: now - chrono::Duration::minutes(1),
        ends_at: now + chrono::Duration::milliseconds(1500),
        payment_window_secs: DEFAULT_PAYMENT_WINDOW_SECS,
    };
    assert!(ledger.create_sale(&sale).await.unwrap());
    let (event, _) = env.reserve(&sale, "last-minute").await;
    assert_eq!(event.pay_by, sale.ends_at, "{event:?}");
    assert_eq!(
        ledger.pay_by(&event.order_id).await.unwrap(),
        Some(event.pay_by.timestamp_millis()),
        "the ledger enforces the very deadline the buyer is told"
    );
    ledger
        .complete_orders(&sale.id, &[&event.order_id])
        .await
        .unwrap();

    while ledger.now(&sale.id).await.unwrap() <= sale.ends_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ledger.pay(&event.order_id, &event.user_id).await.unwrap(),
        Payment::Expired
    );
    assert_eq!(
        ledger.expire_due(&sale.id, 10).await.unwrap(),
        vec![event.order_id.clone()]
    );
    relay_everything(ledger.as_ref(), &sale.id).await;
    assert!(
        ledger
            .settle_sale(&sale.id, true, Duration::from_mins(1))
            .await
            .unwrap(),
        "no order outlives the sale's end by more than a sweep"
    );
}

async fn a_late_payment_changes_nothing_and_the_sweep_expires_the_order(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale_paid_within(1, 1).await;
    let (event, _) = env.reserve(&sale, "lou").await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        ledger.pay(&event.order_id, &event.user_id).await.unwrap(),
        Payment::Expired
    );
    assert_eq!(
        ledger.remaining(&sale.id).await.unwrap(),
        Some(0),
        "a refusal writes nothing"
    );
    assert_eq!(
        ledger.expire_due(&sale.id, 10).await.unwrap(),
        std::slice::from_ref(&event.order_id)
    );
    assert_eq!(ledger.remaining(&sale.id).await.unwrap(), Some(1));
}

/// Payers and sweepers hit orders whose windows close while they run: every order ends paid
/// or expired, never both, and exactly the expired ones are back in stock.
async fn payment_and_expiry_race_with_exactly_one_winner_per_order(env: TestEnv) {
    const ORDERS: u32 = 24;
    let ledger = env.ledger();
    let sale = env.create_sale_paid_within(ORDERS, 1).await;
    let mut events = Vec::new();
    for i in 0..ORDERS {
        events.push(env.reserve(&sale, &format!("racer-{i}")).await.0);
    }
    // The payers of the first orders come well inside their windows, those of the last ones
    // well after, and those between meet the sweepers right at the deadline.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, event) in events.iter().enumerate() {
        for attempt in 0..4 {
            let (ledger, event) = (Arc::clone(&ledger), event.clone());
            tasks.spawn(async move {
                tokio::time::sleep(Duration::from_millis(i as u64 * 35 + attempt * 3)).await;
                let payment = ledger.pay(&event.order_id, &event.user_id).await.unwrap();
                (Some((event.order_id, payment)), Vec::new())
            });
        }
    }
    for sweeper in 0..4_u64 {
        let (ledger, sale_id) = (Arc::clone(&ledger), sale.id.clone());
        tasks.spawn(async move {
            let mut expired = Vec::new();
            for round in 0..60 {
                tokio::time::sleep(Duration::from_millis(10 + (sweeper + round) % 5)).await;
                expired.extend(ledger.expire_due(&sale_id, 5).await.unwrap());
            }
            (None, expired)
        });
    }
    let mut paid: HashMap<OrderId, usize> = HashMap::new();
    let mut expired_by_sweep: HashMap<OrderId, usize> = HashMap::new();
    for (payment, expired) in tasks.join_all().await {
        if let Some((order, Payment::Paid)) = payment {
            *paid.entry(order).or_default() += 1;
        }
        for order in expired {
            *expired_by_sweep.entry(order).or_default() += 1;
        }
    }
    ledger.expire_due(&sale.id, 100).await.unwrap(); // anything left unpaid
    let mut expired = 0;
    for event in &events {
        let status = status_of(ledger.as_ref(), event).await;
        let wins = paid.get(&event.order_id).copied().unwrap_or(0);
        let sweeps = expired_by_sweep.get(&event.order_id).copied().unwrap_or(0);
        match status {
            Some(OrderStatus::Paid) => assert_eq!((wins, sweeps), (1, 0), "{}", event.order_id),
            Some(OrderStatus::Expired) => {
                assert_eq!(wins, 0, "{}", event.order_id);
                assert!(sweeps <= 1, "{}", event.order_id);
                expired += 1;
            }
            other => panic!("{} ended {other:?}", event.order_id),
        }
    }
    assert_eq!(
        ledger.remaining(&sale.id).await.unwrap(),
        Some(expired),
        "exactly the expired orders' units are back"
    );
    assert!(
        (1..ORDERS).contains(&expired),
        "both sides won some orders ({expired} of {ORDERS} expired), or there was no race"
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
    let now_ms = after_all_so_far(ledger.as_ref(), &sale.id).await;
    let unacknowledged = async |before_ms, limit| {
        ledger
            .stale_entries(&sale.id, Publication::Unacknowledged, before_ms, limit)
            .await
            .unwrap()
    };

    let expected: Vec<OutboxEntry> = [&events[0], &events[3]]
        .iter()
        .map(|event| OutboxEntry {
            order_id: event.order_id.clone(),
            payload: Some(event.to_json()),
        })
        .collect();
    assert_eq!(
        unacknowledged(now_ms, 10).await,
        expected,
        "acknowledged and completed entries are not unacknowledged"
    );
    assert_eq!(
        unacknowledged(now_ms, 1).await,
        expected[..1],
        "the limit keeps the oldest"
    );
    assert!(
        unacknowledged(now_ms - 60_000, 10).await.is_empty(),
        "entries younger than the cutoff wait"
    );

    ledger
        .defer(std::slice::from_ref(&events[0].order_id), now_ms + 60_000)
        .await
        .unwrap();
    assert_eq!(
        unacknowledged(now_ms, 10).await,
        expected[1..],
        "a deferred entry waits until its new time"
    );
}

async fn an_acknowledged_entry_without_an_order_row_ages_until_it_counts_as_lost(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale(3).await;
    let (lost, _) = env.reserve(&sale, "lena").await;
    let (ordered, _) = env.reserve(&sale, "max").await;
    ledger
        .mark_published(&[lost.order_id.clone(), ordered.order_id.clone()])
        .await
        .unwrap();
    ledger
        .complete_orders(&sale.id, &[&ordered.order_id])
        .await
        .unwrap();
    let now_ms = after_all_so_far(ledger.as_ref(), &sale.id).await;
    let acknowledged = async |before_ms| {
        ledger
            .stale_entries(&sale.id, Publication::Acknowledged, before_ms, 10)
            .await
            .unwrap()
    };
    let lost_entry = OutboxEntry {
        order_id: lost.order_id.clone(),
        payload: Some(lost.to_json()),
    };
    assert_eq!(
        acknowledged(now_ms).await,
        std::slice::from_ref(&lost_entry)
    );
    assert!(
        acknowledged(now_ms - 60_000).await.is_empty(),
        "not old enough yet"
    );
    ledger
        .defer(std::slice::from_ref(&lost.order_id), now_ms + 60_000)
        .await
        .unwrap();
    assert!(
        acknowledged(now_ms).await.is_empty(),
        "re-published: it waits another whole age"
    );
    assert_eq!(acknowledged(now_ms + 60_000).await, [lost_entry]);
    assert_eq!(
        ledger.outbox_sizes(&sale.id).await.unwrap(),
        sizes(1, 0),
        "still locked, no longer unacknowledged"
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
        .defer(std::slice::from_ref(&event.order_id), 0)
        .await
        .unwrap();
    assert!(
        ledger
            .stale_entries(&sale.id, Publication::Unacknowledged, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ledger.outbox_sizes(&sale.id).await.unwrap(), sizes(1, 0));
}

async fn a_sale_settles_once_its_outbox_is_empty_and_no_purchase_can_add_to_it(env: TestEnv) {
    let ledger = env.ledger();
    let retention = std::time::Duration::from_mins(1);
    let sale = env.create_sale(1).await;
    assert!(
        !ledger
            .settle_sale(&sale.id, false, retention)
            .await
            .unwrap(),
        "open, with stock: purchases may come"
    );
    let (event, _) = env.reserve(&sale, "nina").await;
    assert!(
        !ledger
            .settle_sale(&sale.id, false, retention)
            .await
            .unwrap(),
        "sold out, but its outbox is not empty"
    );
    ledger
        .complete_orders(&sale.id, &[&event.order_id])
        .await
        .unwrap();
    assert!(
        !ledger
            .settle_sale(&sale.id, false, retention)
            .await
            .unwrap(),
        "its order awaits payment: an expiry would put the unit back on sale"
    );
    ledger.pay(&event.order_id, &event.user_id).await.unwrap();
    assert!(
        !ledger
            .settle_sale(&sale.id, false, retention)
            .await
            .unwrap(),
        "its transition events wait for the broker"
    );
    relay_everything(ledger.as_ref(), &sale.id).await;
    assert!(ledger.active_sale_ids().await.unwrap().contains(&sale.id));
    assert!(
        ledger
            .settle_sale(&sale.id, false, retention)
            .await
            .unwrap()
    );
    assert!(!ledger.active_sale_ids().await.unwrap().contains(&sale.id));
    assert_eq!(
        ledger.sale(&sale.id).await.unwrap().map(|s| s.id),
        Some(sale.id.clone()),
        "kept for the retention"
    );

    let unsold = env.create_sale(5).await;
    assert!(
        ledger
            .settle_sale(&unsold.id, true, retention)
            .await
            .unwrap(),
        "an ended sale settles with stock left"
    );
}

async fn every_transition_is_recorded_once_and_relayed_until_acknowledged(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale_paid_within(4, 1).await;
    let (paid, _) = env.reserve(&sale, "pat").await;
    let (expired, _) = env.reserve(&sale, "eve").await;
    let (failed, _) = env.reserve(&sale, "fay").await;
    assert!(
        claim_transitions(ledger.as_ref(), &sale.id)
            .await
            .is_empty(),
        "a lock is a reservation event, not a transition"
    );
    let orders = [&paid.order_id, &expired.order_id];
    for _ in 0..2 {
        ledger.complete_orders(&sale.id, &orders).await.unwrap();
    }
    assert_eq!(
        ledger.pay(&paid.order_id, &paid.user_id).await.unwrap(),
        Payment::Paid
    );
    ledger.pay(&paid.order_id, &paid.user_id).await.unwrap();
    ledger
        .fail_orders(&sale.id, &[&failed.order_id])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ledger.expire_due(&sale.id, 10).await.unwrap();

    let mut seen: Vec<(String, OrderStatus, i64)> = claim_transitions(ledger.as_ref(), &sale.id)
        .await
        .into_iter()
        .map(|event| {
            assert_eq!(event.sale_id, sale.id);
            assert_eq!(event.price_cents, sale.price_cents);
            let buyer = [&paid, &expired, &failed]
                .into_iter()
                .find(|reservation| reservation.order_id == event.order_id)
                .expect("an order of this sale");
            assert_eq!(event.user_id, buyer.user_id);
            (
                event.user_id.to_string(),
                event.status,
                event.at.timestamp_millis(),
            )
        })
        .collect();
    seen.sort();
    let statuses: Vec<(&str, OrderStatus)> = seen
        .iter()
        .map(|(user, status, _)| (user.as_str(), *status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("eve", OrderStatus::Created),
            ("eve", OrderStatus::Expired),
            ("fay", OrderStatus::Failed),
            ("pat", OrderStatus::Created),
            ("pat", OrderStatus::Paid),
        ],
        "one event per transition, however often a step ran"
    );
    let now = after_all_so_far(ledger.as_ref(), &sale.id).await;
    assert!(
        seen.iter()
            .all(|(_, _, at)| (now - 10_000..=now).contains(at)),
        "stamped on the ledger's clock: {seen:?}, now {now}"
    );

    assert!(
        claim_transitions(ledger.as_ref(), &sale.id)
            .await
            .is_empty(),
        "a claimed event waits for its acknowledgement before it is handed out again"
    );
    let none_due_yet = ledger
        .due_transitions(&sale.id, 1000, Duration::ZERO)
        .await
        .unwrap();
    assert!(none_due_yet.is_empty());
    // A claim with no wait makes the events due again at once: unacknowledged, they return.
    let sale2 = env.create_sale(1).await;
    let (lone, _) = env.reserve(&sale2, "lone").await;
    ledger
        .complete_orders(&sale2.id, &[&lone.order_id])
        .await
        .unwrap();
    for _ in 0..2 {
        let handed = ledger
            .due_transitions(&sale2.id, 1000, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(handed.len(), 1, "unacknowledged, so handed out again");
    }
    assert_eq!(relay_everything(ledger.as_ref(), &sale2.id).await.len(), 1);
    assert!(
        claim_transitions(ledger.as_ref(), &sale2.id)
            .await
            .is_empty(),
        "acknowledged, so gone"
    );
}

/// A charge may still have to be refunded: the reconciler must keep sweeping the sale.
async fn an_unsettled_payment_keeps_its_sale_from_settling(env: TestEnv) {
    let ledger = env.ledger();
    let retention = std::time::Duration::from_mins(1);
    let sale = env.create_sale_paid_within(1, 1).await;
    let (event, _) = env.reserve(&sale, "olga").await;
    ledger
        .complete_orders(&sale.id, &[&event.order_id])
        .await
        .unwrap();
    let intent = ledger
        .begin_payment(&event.order_id, &event.user_id, sale.price_cents)
        .await
        .unwrap();
    assert_eq!(intent, PaymentIntent::Recorded);
    assert_eq!(ledger.open_payments(&sale.id).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(ledger.expire_due(&sale.id, 10).await.unwrap().len(), 1);
    relay_everything(ledger.as_ref(), &sale.id).await;
    assert!(
        !ledger.settle_sale(&sale.id, true, retention).await.unwrap(),
        "its payment intent is open: a charge may have to be refunded"
    );

    ledger.settle_payment(&event.order_id).await.unwrap();
    assert_eq!(ledger.open_payments(&sale.id).await.unwrap(), 0);
    assert!(ledger.settle_sale(&sale.id, true, retention).await.unwrap());
}

/// Paid while processing, then its row refused (its event dead-lettered): the order cannot
/// exist, so it fails, its unit returns once, and its charge is left for the payment resolver
/// to refund, due at once.
async fn an_order_paid_before_its_row_was_refused_fails_and_its_payment_reopens_for_a_refund(
    env: TestEnv,
) {
    let ledger = env.ledger();
    let sale = env.create_sale(1).await;
    let (event, _) = env.reserve(&sale, "rita").await;
    let intent = ledger
        .begin_payment(&event.order_id, &event.user_id, sale.price_cents)
        .await
        .unwrap();
    assert_eq!(intent, PaymentIntent::Recorded);
    assert_eq!(
        ledger.pay(&event.order_id, &event.user_id).await.unwrap(),
        Payment::Paid
    );
    assert_eq!(ledger.open_payments(&sale.id).await.unwrap(), 0);

    for _ in 0..2 {
        ledger
            .fail_orders(&sale.id, &[&event.order_id])
            .await
            .unwrap();
    }
    assert_eq!(
        status_of(ledger.as_ref(), &event).await,
        Some(OrderStatus::Failed)
    );
    assert_eq!(
        ledger.remaining(&sale.id).await.unwrap(),
        Some(1),
        "returned once"
    );
    let now = after_all_so_far(ledger.as_ref(), &sale.id).await;
    let due = ledger.claim_payments(&sale.id, now, 10).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|payment| (&payment.order_id, payment.status))
            .collect::<Vec<_>>(),
        [(&event.order_id, OrderStatus::Failed)],
        "its charge is due for a refund at once"
    );
}
