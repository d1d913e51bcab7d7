//! After the stock lock: the owner pays in time (once, however often asked), or the window
//! closes, payment is refused, and the unit goes back on sale at every gateway, to every buyer
//! who arrives for it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use order_worker::payments::PaymentResolver;
use serde_json::Value;
use shared::backends::Backends;
use shared::ids::OrderId;
use shared::payment::{Charge, PaymentError, PaymentProvider};

use crate::helpers::{
    TestApp, assert_error, spawn_app, spawn_app_paying_through, spawn_app_with, test_config,
};

async fn pay(app: &TestApp, order_id: &str, token: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/api/v1/orders/{order_id}/payment")))
        .bearer_auth(token)
        .send()
        .await
        .expect("payment request")
}

async fn order(app: &TestApp, order_id: &str, token: &str) -> Value {
    app.http
        .get(app.url(&format!("/api/v1/orders/{order_id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("order request")
        .json()
        .await
        .expect("an order")
}

/// A newcomer's purchase is refused as sold out (and the gateway's flag is set).
async fn assert_sold_out(gateway: &TestApp, sale_id: &str) {
    let newcomer = gateway.token("early-bird");
    assert_error(gateway.purchase(sale_id, &newcomer).await, 410, "sold_out").await;
}

/// What the expiry sweep (the order worker's reconciler, not running here) does: expires the
/// sale's orders that are due and returns their units. How many it expired.
async fn sweep_expiries(app: &TestApp, sale_id: &str) -> usize {
    let ledger = Backends::open(&app.config.redis)
        .expect("the test's backends")
        .ledger();
    let sale_id = sale_id.parse().expect("a sale id");
    ledger
        .expire_due(&sale_id, 10)
        .await
        .expect("the expiry sweep")
        .len()
}

#[tokio::test]
async fn a_buyer_pays_in_time_once_and_a_repeat_answers_the_same() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("payer");
    let order_id = app.buy(&sale, &token).await;

    let pending = order(&app, &order_id, &token).await;
    let pay_by: DateTime<Utc> = pending["pay_by"].as_str().unwrap().parse().unwrap();
    let left = pay_by - Utc::now();
    assert!(
        left > chrono::Duration::minutes(14) && left <= chrono::Duration::minutes(15),
        "the default window is 15 minutes: {pending}"
    );

    assert_error(
        pay(&app, &order_id, &app.token("someone-else")).await,
        404,
        "not_found",
    )
    .await;
    for attempt in ["first", "repeat"] {
        let response = pay(&app, &order_id, &token).await;
        assert_eq!(response.status(), 200, "{attempt}");
        let paid: Value = response.json().await.unwrap();
        assert_eq!(paid["status"], "paid", "{attempt}: {paid}");
        assert!(
            paid.get("pay_by").is_none(),
            "nothing left to pay by: {paid}"
        );
    }
    assert_eq!(order(&app, &order_id, &token).await["status"], "paid");
    assert_eq!(app.sale_view(&sale).await["remaining"], 4);
}

#[tokio::test]
async fn an_unpaid_order_is_refused_payment_after_its_window_and_its_unit_sells_again_everywhere() {
    let first = spawn_app().await;
    let second = spawn_app_with(first.config.clone()).await;
    let sale = first.create_open_sale_paid_within(1, 1).await;
    let late = first.token("late");
    let order_id = first.buy(&sale, &late).await;
    // Both gateways learn the sale is sold out and keep answering it locally.
    for gateway in [&first, &second] {
        assert_sold_out(gateway, &sale).await;
    }

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_error(pay(&first, &order_id, &late).await, 409, "order_expired").await;
    assert_eq!(sweep_expiries(&first, &sale).await, 1);
    assert_eq!(order(&first, &order_id, &late).await["status"], "expired");
    assert_eq!(first.sale_view(&sale).await["state"], "open");

    // The other gateway's sold-out flag (older than its recheck delay) lets a purchase ask the
    // stock lock again.
    let resold = second.purchase(&sale, &second.token("second-chance")).await;
    assert_eq!(resold.status(), 202, "the returned unit is sold again");
    assert_error(first.purchase(&sale, &late).await, 409, "already_purchased").await;
    assert_eq!(first.sale_view(&sale).await["remaining"], 0);
}

#[tokio::test]
async fn returned_units_all_sell_to_latecomers_arriving_together() {
    const UNITS: u32 = 6;
    let app = spawn_app().await;
    let sale = app.create_open_sale_paid_within(UNITS, 1).await;
    for buyer in 0..UNITS {
        app.buy(&sale, &app.token(&format!("idler-{buyer}"))).await;
    }
    assert_sold_out(&app, &sale).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(sweep_expiries(&app, &sale).await, UNITS as usize);

    // A purchase refused before the stock lock (no valid token) learns nothing about the stock,
    // so it must not stand in for the recheck.
    assert_eq!(app.purchase(&sale, "not-a-token").await.status(), 401);
    // Twice as many latecomers as units, all in flight at once.
    let tokens: Vec<String> = (0..2 * UNITS)
        .map(|buyer| app.token(&format!("latecomer-{buyer}")))
        .collect();
    let answers =
        futures::future::join_all(tokens.iter().map(|token| app.purchase(&sale, token))).await;
    let accepted = answers
        .iter()
        .filter(|answer| answer.status() == 202)
        .count();
    assert_eq!(accepted, UNITS as usize, "every returned unit sold again");
    assert_eq!(app.sale_view(&sale).await["remaining"], 0);
}

#[tokio::test]
async fn a_window_that_would_outlive_the_sale_closes_at_its_end_for_the_api_and_the_message() {
    let app = spawn_app().await;
    let now = Utc::now().trunc_subsecs(0);
    let ends_at = now + chrono::Duration::minutes(10);
    // The default window is 15 minutes: longer than what is left of this sale.
    let sale = app
        .create_sale(1, now - chrono::Duration::minutes(1), ends_at)
        .await;
    let token = app.token("late-shopper");
    let order_id = app.buy(&sale, &token).await;

    let pending = order(&app, &order_id, &token).await;
    let pay_by: DateTime<Utc> = pending["pay_by"].as_str().unwrap().parse().unwrap();
    assert_eq!(pay_by, ends_at, "the API shows the deadline: {pending}");
    let events = app.read_events(1).await;
    assert_eq!(
        events[0].0.pay_by, ends_at,
        "the event the \"reserved\" SMS is written from carries the same deadline"
    );
}

/// A provider on the test's books that misbehaves after each charge it makes.
struct AfterCharging {
    books: Arc<dyn PaymentProvider>,
    then: AfterCharge,
}

enum AfterCharge {
    /// The charge's answer never reaches the gateway.
    LosesTheAnswer,
    /// The answer comes, this much later.
    Answers(Duration),
}

#[async_trait]
impl PaymentProvider for AfterCharging {
    async fn charge(&self, order: &OrderId, amount_cents: i64) -> Result<(), PaymentError> {
        self.books.charge(order, amount_cents).await?;
        match self.then {
            AfterCharge::LosesTheAnswer => Err(PaymentError("the answer was lost".into())),
            AfterCharge::Answers(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }

    async fn refund(&self, order: &OrderId) -> Result<(), PaymentError> {
        self.books.refund(order).await
    }

    async fn charge_of(&self, order: &OrderId) -> Result<Charge, PaymentError> {
        self.books.charge_of(order).await
    }

    async fn void(&self, order: &OrderId) -> Result<Charge, PaymentError> {
        self.books.void(order).await
    }
}

/// A gateway charging through `then`, and the books it charges into.
async fn gateway_whose_provider(then: AfterCharge) -> (TestApp, Arc<dyn PaymentProvider>) {
    let config = test_config();
    let books = config.payments.provider();
    let provider = AfterCharging {
        books: Arc::clone(&books),
        then,
    };
    (
        spawn_app_paying_through(config, Arc::new(provider)).await,
        books,
    )
}

#[tokio::test]
async fn a_charge_whose_answer_was_lost_is_completed_by_the_resolver_not_kept_without_a_sale() {
    let (app, books) = gateway_whose_provider(AfterCharge::LosesTheAnswer).await;
    let sale = app.create_open_sale(1).await;
    let token = app.token("payer");
    let order_id = app.buy(&sale, &token).await;

    let response = pay(&app, &order_id, &token).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("refunded"),
        "the 503 does not claim nothing was charged: {body}"
    );
    let order_id: OrderId = order_id.parse().unwrap();
    assert!(matches!(
        books.charge_of(&order_id).await.unwrap(),
        Charge::Kept { .. }
    ));

    // The order worker's reconciler runs the resolver on every sweep; here, once, at an age
    // of zero.
    let ledger = Backends::open(&app.config.redis).unwrap().ledger();
    let resolver = PaymentResolver::new(Arc::clone(&ledger), books, Duration::ZERO);
    let now = ledger.now_ms(&order_id.sale_id()).await.unwrap() + 1000;
    assert_eq!(resolver.resolve(&order_id.sale_id(), now).await.unwrap(), 1);
    let token = app.token("payer");
    assert_eq!(
        order(&app, order_id.as_str(), &token).await["status"],
        "paid"
    );
}

#[tokio::test]
async fn a_charge_that_lost_the_race_to_the_deadline_is_refunded_at_once() {
    let (app, books) =
        gateway_whose_provider(AfterCharge::Answers(Duration::from_millis(1_500))).await;
    let sale = app.create_open_sale_paid_within(1, 1).await;
    let token = app.token("slow-payer");
    let order_id = app.buy(&sale, &token).await;

    assert_error(pay(&app, &order_id, &token).await, 409, "order_expired").await;
    let order_id: OrderId = order_id.parse().unwrap();
    assert_eq!(books.charge_of(&order_id).await.unwrap(), Charge::Refunded);
}
