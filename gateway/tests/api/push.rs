//! The event streams: an order's transitions pushed to its owner (from a worker, or from
//! another gateway), resumed with `Last-Event-ID`, and closed to forged tokens (the
//! dashboard's stream is in `dashboard.rs`, the bounds on both in `stream_bounds.rs`). An order worker runs beside the gateways, so every
//! transition takes the real path: ledger, outbox, relay, order-event topic, each gateway's
//! feed.

use std::time::Duration;

use gateway::auth::stream::StreamTokens;
use order_worker::store::DatabaseSettings;
use serde_json::Value;
use shared::testing::{RunningService, TestEnv, spawn_service};

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_with};
use crate::sse::EventStream;

/// An order worker on the gateway's Redis, topics and the services' PostgreSQL: it creates the
/// orders and relays their transitions to the order-event topic.
async fn spawn_order_worker(app: &TestApp) -> RunningService {
    let env = TestEnv::on_services();
    let mut config: order_worker::Config = shared::config::defaults();
    config.database_url.clone_from(&env.database_url);
    config.worker.redis = app.config.redis.clone();
    config.worker.kafka = app.config.kafka.clone();
    config.worker.consumer_group = Some(format!("orders-{}", uuid::Uuid::new_v4().simple()));
    let orders = order_worker::store::open(&config.database_url, DatabaseSettings::default())
        .expect("DATABASE_URL parses");
    let backends = shared::backends::Backends::open(&config.worker.redis).expect("Redis URL");
    let bus = shared::kafka::EventBus::connect(&config.worker.kafka).expect("Kafka brokers");
    let worker = order_worker::build_on(
        &config,
        &backends,
        &bus,
        orders,
        app.config.payments.provider(),
    )
    .expect("the test configuration builds");
    spawn_service(|http, shutdown| order_worker::serve(worker, http, shutdown)).await
}

/// The next event's status.
async fn next_status(events: &mut EventStream) -> String {
    let received = events.next().await.expect("another event");
    assert_eq!(received.event, "status");
    assert_eq!(received.id.as_deref(), received.data["status"].as_str());
    received.data["status"]
        .as_str()
        .expect("a status")
        .to_owned()
}

/// Opens `order_id`'s stream as a browser does: a stream token asked for with the user's
/// token, then the stream with the stream token in the query string.
async fn open(
    app: &TestApp,
    order_id: &str,
    user_token: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let token = stream_token(app, order_id, user_token).await;
    open_with(app, order_id, &token, last_event_id).await
}

/// Opens `order_id`'s stream with `access_token` in the query string.
async fn open_with(
    app: &TestApp,
    order_id: &str,
    access_token: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order_id}/events")))
        .query(&[("access_token", access_token)]);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    request.send().await.expect("stream request")
}

async fn ask_stream_token(app: &TestApp, order_id: &str, user_token: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/api/v1/orders/{order_id}/stream-token")))
        .bearer_auth(user_token)
        .send()
        .await
        .expect("stream token request")
}

/// A stream token for the owner's order.
async fn stream_token(app: &TestApp, order_id: &str, user_token: &str) -> String {
    let response = ask_stream_token(app, order_id, user_token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(body["expires_in"], 60, "{body}");
    body["token"].as_str().expect("a token").to_owned()
}

async fn stream(app: &TestApp, order_id: &str, token: &str, last: Option<&str>) -> EventStream {
    EventStream::of(open(app, order_id, token, last).await)
}

async fn pay(app: &TestApp, order_id: &str, token: &str) {
    let response = app
        .http
        .post(app.url(&format!("/api/v1/orders/{order_id}/payment")))
        .bearer_auth(token)
        .send()
        .await
        .expect("payment request");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_owner_sees_processing_then_each_transition_pushed_until_the_final_one() {
    let app = spawn_app().await;
    let worker = spawn_order_worker(&app).await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("ada");
    let order_id = app.buy(&sale, &token).await;

    let mut events = stream(&app, &order_id, &token, None).await;
    let first = next_status(&mut events).await;
    let first = if first == "processing" {
        next_status(&mut events).await
    } else {
        first
    };
    assert_eq!(first, "created", "the worker's transition is pushed");

    pay(&app, &order_id, &token).await;
    assert_eq!(next_status(&mut events).await, "paid");
    assert!(
        events.next().await.is_none(),
        "a final status ends the stream"
    );
    worker.stop().await.expect("the worker stops cleanly");
}

#[tokio::test]
async fn a_resumed_stream_sends_what_came_after_its_last_event_id_and_nothing_seen() {
    let app = spawn_app().await;
    let worker = spawn_order_worker(&app).await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("bea");
    let order_id = app.buy(&sale, &token).await;

    // The first connection sees `processing` (or already `created`), then drops.
    let mut first = stream(&app, &order_id, &token, None).await;
    let seen = next_status(&mut first).await;
    drop(first);

    // While it is away the order moves on; the resumed stream starts where the client was.
    let mut created = stream(&app, &order_id, &token, Some(&seen)).await;
    if seen == "processing" {
        assert_eq!(next_status(&mut created).await, "created");
    }
    drop(created);
    pay(&app, &order_id, &token).await;
    let mut resumed = stream(&app, &order_id, &token, Some("created")).await;
    assert_eq!(
        next_status(&mut resumed).await,
        "paid",
        "nothing lost while away, nothing seen sent again"
    );
    assert!(resumed.next().await.is_none());

    let after_the_end = open(&app, &order_id, &token, Some("paid")).await;
    assert_eq!(
        after_the_end.status(),
        204,
        "a client that saw the final status is told to stop reconnecting"
    );
    worker.stop().await.expect("the worker stops cleanly");
}

#[tokio::test]
async fn a_payment_made_through_one_gateway_reaches_a_stream_open_on_another() {
    let a = spawn_app().await;
    let b = spawn_app_with(a.config.clone()).await;
    let worker = spawn_order_worker(&a).await;
    let sale = a.create_open_sale(5).await;
    let token = a.token("cai");
    let order_id = a.buy(&sale, &token).await;

    let mut on_b = stream(&b, &order_id, &token, Some("processing")).await;
    assert_eq!(next_status(&mut on_b).await, "created");
    pay(&a, &order_id, &token).await;
    assert_eq!(next_status(&mut on_b).await, "paid", "gateway B learned it");
    worker.stop().await.expect("the worker stops cleanly");
}

#[tokio::test]
async fn a_forged_or_missing_token_is_refused_401_before_any_stream_opens() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("eve");
    let order_id = app.buy(&sale, &token).await;
    let forged = gateway::auth::TokenKeys::new(
        "not-the-gateway-secret-not-the-secret",
        Duration::from_mins(5),
        app.config.token_rules(),
    )
    .mint(&"eve".parse().expect("a user id"))
    .expect("minted");
    let forged_stream_token = StreamTokens::new(
        "not-the-gateway-secret-not-the-secret",
        &app.config.token_rules(),
    )
    .mint(
        &order_id.parse().expect("an order id"),
        &"eve".parse().expect("a user id"),
    )
    .expect("minted");

    for access_token in [&forged, &forged_stream_token] {
        let refused = open_with(&app, &order_id, access_token, None).await;
        assert_error(refused, 401, "unauthenticated").await;
    }
    let in_header = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order_id}/events")))
        .bearer_auth(&forged)
        .send()
        .await
        .expect("stream request");
    assert_error(in_header, 401, "unauthenticated").await;
    let without = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order_id}/events")))
        .send()
        .await
        .expect("stream request");
    assert_error(without, 401, "unauthenticated").await;
    assert_error(
        ask_stream_token(&app, &order_id, &forged).await,
        401,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn only_the_owner_gets_a_stream_token_and_it_opens_that_orders_stream_alone() {
    let app = spawn_app().await;
    let (sale, other_sale) = (app.create_open_sale(5).await, app.create_open_sale(5).await);
    let token = app.token("flo");
    let order_id = app.buy(&sale, &token).await;
    let other_order = app.buy(&other_sale, &token).await;

    let strangers = ask_stream_token(&app, &order_id, &app.token("mallory")).await;
    assert_error(strangers, 404, "not_found").await;

    let stream_token = stream_token(&app, &order_id, &token).await;
    let mut events = EventStream::of(open_with(&app, &order_id, &stream_token, None).await);
    assert_eq!(next_status(&mut events).await, "processing");
    let elsewhere = open_with(&app, &other_order, &stream_token, None).await;
    assert_error(elsewhere, 401, "unauthenticated").await;
}

#[tokio::test]
async fn a_stream_token_is_refused_by_every_route_but_its_stream() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("gil");
    let order_id = app.buy(&sale, &token).await;
    let stream_token = stream_token(&app, &order_id, &token).await;

    let attempts = [
        app.http.get(app.url(&format!("/api/v1/orders/{order_id}"))),
        app.http
            .post(app.url(&format!("/api/v1/orders/{order_id}/payment"))),
        app.http
            .post(app.url(&format!("/api/v1/orders/{order_id}/stream-token"))),
        app.http
            .get(app.url(&format!("/api/v1/sales/{sale}/orders/mine"))),
        app.http
            .post(app.url(&format!("/api/v1/sales/{sale}/orders"))),
        app.http
            .get(app.url(&format!("/api/v1/orders/{order_id}/events"))),
        app.http
            .post(app.url("/api/v1/admin/tokens"))
            .json(&serde_json::json!({"user_id": "gil"})),
    ];
    for attempt in attempts {
        let response = attempt
            .bearer_auth(&stream_token)
            .send()
            .await
            .expect("a request");
        let url = response.url().clone();
        assert_eq!(response.status(), 401, "{url}");
    }
}

#[tokio::test]
async fn a_user_token_in_the_url_is_refused_401_saying_to_ask_for_a_stream_token() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("hal");
    let order_id = app.buy(&sale, &token).await;

    let refused = open_with(&app, &order_id, &token, None).await;
    let body = assert_error(refused, 401, "unauthenticated").await;
    let message = body["message"].as_str().expect("a message");
    assert!(message.contains("stream-token"), "{message}");

    let in_header = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order_id}/events")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream request");
    let mut events = EventStream::of(in_header);
    assert_eq!(
        next_status(&mut events).await,
        "processing",
        "the header still takes the user token"
    );
}
