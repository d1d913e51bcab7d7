//! The purchase path under a stampede, and what an accepted purchase leaves behind.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app, spawn_app_with, test_config};

const STOCK: u32 = 100;
const USERS: usize = 1_000;
const ATTEMPTS_PER_USER: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stampede_sells_exactly_the_stock_once_per_buyer() {
    let mut config = test_config();
    // A debug build on two cores answers 4,000 simultaneous requests slowly; this test checks
    // counts, not speed, so give every request time to be decided.
    config.redis.redis_timeout_ms = NonZeroU64::new(10_000).unwrap();
    config.request_timeout_ms = NonZeroU64::new(72_000).unwrap();
    let mut app = spawn_app_with(config).await;
    let sale = app.create_open_sale(STOCK).await;
    let app_ref = Arc::new(AppRef::new(&app));

    // 4,000 attempts by 1,000 users, all launched at once; no rate limits are configured.
    let attempts = (0..USERS * ATTEMPTS_PER_USER).map(|i| {
        let app = Arc::clone(&app_ref);
        let sale = sale.clone();
        let user = format!("user-{}", i % USERS);
        tokio::spawn(async move {
            let response = app.purchase(&sale, &user).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("JSON body");
            (user, status, body)
        })
    });
    let answers: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.expect("attempt task"))
        .collect();

    let mut by_status: HashMap<u16, usize> = HashMap::new();
    let mut accepted_users = HashSet::new();
    let mut accepted_orders = HashSet::new();
    for (user, status, body) in &answers {
        *by_status.entry(*status).or_default() += 1;
        match status {
            202 => {
                assert_eq!(body["status"], "processing");
                assert!(
                    accepted_users.insert(user.clone()),
                    "{user} was accepted twice"
                );
                accepted_orders.insert(body["order_id"].as_str().expect("order id").to_owned());
            }
            409 => assert_eq!(body["error"], "already_purchased"),
            410 => assert_eq!(body["error"], "sold_out"),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(
        by_status[&202], STOCK as usize,
        "answers by status: {by_status:?}"
    );
    assert_eq!(accepted_orders.len(), STOCK as usize);

    // Redis: nothing left, one buyer per accepted order, the outbox holds exactly those orders.
    assert_eq!(app.remaining(&sale).await, 0);
    let keys = app.sale_keys(&sale);
    let buyers: HashMap<String, String> = app.redis.hgetall(&keys.buyers).await.unwrap();
    assert_eq!(
        buyers.keys().cloned().collect::<HashSet<_>>(),
        accepted_users
    );
    let outbox: HashMap<String, String> = app.redis.hgetall(&keys.outbox).await.unwrap();
    assert_eq!(
        outbox.keys().cloned().collect::<HashSet<_>>(),
        accepted_orders
    );

    // The topic: exactly one event per accepted order, keyed and traced.
    let count = app
        .wait_for_message_count(i64::from(STOCK), Duration::from_secs(30))
        .await;
    assert_eq!(count, i64::from(STOCK), "events on the topic");
    let events = app.read_events(STOCK as usize).await;
    let event_orders: HashSet<_> = events
        .iter()
        .map(|(event, _)| event.order_id.to_string())
        .collect();
    assert_eq!(event_orders, accepted_orders);
    for (event, traceparent) in &events {
        assert_eq!(event.sale_id.as_str(), sale);
        assert_eq!(buyers[event.user_id.as_str()], event.order_id.to_string());
        assert!(
            traceparent.as_deref().is_some_and(|t| t.starts_with("00-")),
            "{traceparent:?}"
        );
    }

    // The broker acknowledged every event, so none waits for the reconciler.
    let unacknowledged = app.wait_for_acknowledgements(&sale).await;
    assert_eq!(
        unacknowledged, 0,
        "acknowledged events leave the unpublished set"
    );
}

#[tokio::test]
async fn an_accepted_order_is_visible_to_its_owner_only() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("alice");
    let response = app.purchase(&sale, &token).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let order_id = body["order_id"].as_str().unwrap().to_owned();

    let own = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let order: Value = own.json().await.unwrap();
    assert_eq!(order["order_id"], order_id.as_str());
    assert_eq!(order["sale_id"], sale.as_str());
    assert_eq!(order["user_id"], "alice");
    assert_eq!(order["status"], "processing");

    let other = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order_id}")))
        .bearer_auth(app.token("bob"))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(other, 404, "not_found").await;

    let sale_view = app.sale_view(&sale).await;
    assert_eq!(sale_view["stock"], 5);
    assert_eq!(sale_view["remaining"], 4);
    assert_eq!(sale_view["state"], "open");
}

#[tokio::test]
async fn a_sale_reports_sold_out_once_its_stock_is_gone() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(1).await;
    assert_eq!(
        app.purchase(&sale, &app.token("only-buyer")).await.status(),
        202
    );
    let view = app.sale_view(&sale).await;
    assert_eq!(view["remaining"], 0);
    assert_eq!(view["state"], "sold_out");
}

/// The parts of a `TestApp` that purchase tasks share.
struct AppRef {
    http: reqwest::Client,
    base: String,
    tokens: HashMap<String, String>,
}

impl AppRef {
    fn new(app: &TestApp) -> Self {
        let tokens = (0..USERS)
            .map(|i| {
                let user = format!("user-{i}");
                let token = app.token(&user);
                (user, token)
            })
            .collect();
        Self {
            http: app.http.clone(),
            base: app.url(""),
            tokens,
        }
    }

    async fn purchase(&self, sale: &str, user: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/sales/{sale}/orders", self.base))
            .bearer_auth(&self.tokens[user])
            .send()
            .await
            .expect("purchase request")
    }
}

#[tokio::test]
async fn statistics_are_served_for_known_sales_only() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(3).await;
    let stats: Value = app
        .http
        .get(app.url(&format!("/api/v1/sales/{sale}/stats")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Nothing counted yet: the stats worker is not running in this test.
    assert_eq!(stats["sold"], 0);
    assert_eq!(stats["revenue_cents"], 0);
    assert_eq!(stats["buyers"], 0);
    assert_eq!(stats["timeline"], serde_json::json!([]));
    let unknown = app
        .http
        .get(app.url("/api/v1/sales/no-such-sale/stats"))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(unknown, 404, "unknown_sale").await;
}

#[tokio::test]
async fn a_callers_trace_is_carried_into_the_event() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(5).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = app
        .http
        .post(app.url(&format!("/api/v1/sales/{sale}/orders")))
        .bearer_auth(app.token("tracy"))
        .header("traceparent", incoming)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let events = app.read_events(1).await;
    let traceparent = events[0].1.clone().expect("a traceparent header");
    assert_eq!(
        shared::kafka::trace_id_of(&traceparent),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "the caller's trace id, so its logs and the workers' share it"
    );
    assert_ne!(traceparent, incoming, "the gateway's own span");
}

#[tokio::test]
async fn a_buyer_whose_answer_was_lost_finds_their_order_in_the_sale() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(10).await;
    let response = app.purchase(&sale, &app.token("olga")).await;
    let order_id = response.json::<Value>().await.unwrap()["order_id"].clone();
    let mine = |user: &str| {
        app.http
            .get(app.url(&format!("/api/v1/sales/{sale}/orders/mine")))
            .bearer_auth(app.token(user))
            .send()
    };
    let found: Value = mine("olga").await.unwrap().json().await.unwrap();
    assert_eq!(found["order_id"], order_id);
    assert_eq!(found["user_id"], "olga");
    crate::helpers::assert_error(mine("pete").await.unwrap(), 404, "not_found").await;
}
