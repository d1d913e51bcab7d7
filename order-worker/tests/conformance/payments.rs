//! The payment resolver on both ledgers (Redis, and memory): whatever a gateway left
//! unfinished after recording a payment intent ends with the order paid, or the charge
//! refunded, and its intent settled.

use std::time::Duration;

use order_worker::payments::PaymentResolver;
use shared::event::ReservationEvent;
use shared::payment::Charge;
use shared::sale::Sale;
use shared::stock::{OrderStatus, PaymentIntent, StockLedger};
use shared::testing::TestEnv;

shared::conformance!(
    a_charge_whose_order_was_never_marked_paid_completes_the_payment,
    a_charge_whose_order_expired_is_refunded,
    an_intent_never_charged_waits_while_the_order_is_open_and_is_dropped_when_it_ends,
);

/// A resolver that looks at every intent however young.
fn resolver(env: &TestEnv) -> PaymentResolver {
    PaymentResolver::new(env.ledger(), env.payment_provider(), Duration::ZERO)
}

/// A moment on the ledger's clock after everything done so far (see the ledger's
/// conformance suite: `now_ms` may trail Redis's clock by a round trip).
async fn later(ledger: &dyn StockLedger, sale: &Sale) -> i64 {
    ledger.now_ms(&sale.id).await.unwrap() + 1000
}

/// An order whose buyer's payment intent is recorded; charged too when `charge`: a gateway
/// that died (or lost the ledger) between the charge and marking the order paid.
async fn paying(env: &TestEnv, sale: &Sale, charge: bool) -> ReservationEvent {
    let (event, _) = env.reserve(sale, "payer").await;
    let intent = env
        .ledger()
        .begin_payment(&event.order_id, &event.user_id, sale.price_cents)
        .await
        .unwrap();
    assert_eq!(intent, PaymentIntent::Recorded);
    if charge {
        env.payment_provider()
            .charge(&event.order_id, sale.price_cents)
            .await
            .unwrap();
    }
    event
}

async fn status(env: &TestEnv, event: &ReservationEvent) -> Option<OrderStatus> {
    env.ledger()
        .order_status(&event.order_id, &event.user_id)
        .await
        .unwrap()
}

async fn a_charge_whose_order_was_never_marked_paid_completes_the_payment(env: TestEnv) {
    let sale = env.create_sale(1).await;
    let event = paying(&env, &sale, true).await;

    assert_eq!(
        settle_once(&env, &sale, &event).await,
        Charge::Kept { amount_cents: 1250 },
        "the charge is the sale: kept"
    );
    assert_eq!(status(&env, &event).await, Some(OrderStatus::Paid));
    assert_nothing_left(env.ledger().as_ref(), &sale).await;
}

async fn a_charge_whose_order_expired_is_refunded(env: TestEnv) {
    let ledger = env.ledger();
    let sale = env.create_sale_paid_within(1, 1).await;
    let event = paying(&env, &sale, true).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        ledger.expire_due(&sale.id, 10).await.unwrap(),
        std::slice::from_ref(&event.order_id)
    );
    assert_eq!(settle_once(&env, &sale, &event).await, Charge::Refunded);
    assert_eq!(status(&env, &event).await, Some(OrderStatus::Expired));
    assert_nothing_left(ledger.as_ref(), &sale).await;
}

/// Runs the resolver over every intent of the sale, which must settle exactly one; then what
/// the provider holds for `event`'s order.
async fn settle_once(env: &TestEnv, sale: &Sale, event: &ReservationEvent) -> Charge {
    let now = later(env.ledger().as_ref(), sale).await;
    assert_eq!(resolver(env).resolve(&sale.id, now).await.unwrap(), 1);
    env.payment_provider()
        .charge_of(&event.order_id)
        .await
        .unwrap()
}

/// No payment intent of the sale is left for the resolver, however old.
async fn assert_nothing_left(ledger: &dyn StockLedger, sale: &Sale) {
    let now = later(ledger, sale).await;
    assert_eq!(ledger.claim_payments(&sale.id, now, 10).await.unwrap(), []);
}

async fn an_intent_never_charged_waits_while_the_order_is_open_and_is_dropped_when_it_ends(
    env: TestEnv,
) {
    let ledger = env.ledger();
    let sale = env.create_sale_paid_within(1, 2).await;
    let event = paying(&env, &sale, false).await;
    let now = later(ledger.as_ref(), &sale).await;
    assert_eq!(
        resolver(&env).resolve(&sale.id, now).await.unwrap(),
        0,
        "nothing charged, and the buyer may still pay: it waits"
    );
    assert_eq!(status(&env, &event).await, Some(OrderStatus::Processing));

    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(ledger.expire_due(&sale.id, 10).await.unwrap().len(), 1);
    assert_eq!(
        settle_once(&env, &sale, &event).await,
        Charge::None,
        "no refund without a charge"
    );
    assert!(
        env.payment_provider()
            .charge(&event.order_id, sale.price_cents)
            .await
            .is_err(),
        "a charge still on its way when the order ended is refused: its key was voided"
    );
    assert_nothing_left(ledger.as_ref(), &sale).await;
}
