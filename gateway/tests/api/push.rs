//! The event streams: an order's transitions pushed to its owner (from a worker, or from
//! another gateway), resumed with `Last-Event-ID`, bounded, and closed to forged tokens; and a
//! sale's live view for the dashboard. An order worker runs beside the gateways, so every
//! transition takes the real path: ledger, outbox, relay, order-event topic, each gateway's
//! feed.

use std::time::Duration;

use order_worker::store::DatabaseSettings;
use serde_json::Value;
use shared::testing::{RunningService, TestEnv, spawn_service};

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_with, test_config};

const WAIT: Duration = Duration::from_secs(30);

/// An order worker on the gateway's Redis, topics and the services' PostgreSQL: it creates the
/// orders and relays their transitions to the order-event topic.
async fn spawn_order_worker(app: &TestApp) -> RunningService {
    let env = TestEnv::new();
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

/// A Server-Sent Events stream as a client reads it.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

/// One event: its name, id and JSON data.
#[derive(Debug)]
struct Received {
    event: String,
    id: Option<String>,
    data: Value,
}

impl EventStream {
    /// The next event within [`WAIT`], skipping heartbeats; `None` when the stream ended.
    async fn next(&mut self) -> Option<Received> {
        // One deadline for the event, not per chunk: heartbeats alone must not keep it waiting.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(received) = parse(&block) {
                    return Some(received);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within the wait")
                .expect("the stream reads")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next event's status.
    async fn next_status(&mut self) -> String {
        let received = self.next().await.expect("another event");
        assert_eq!(received.event, "status");
        assert_eq!(received.id.as_deref(), received.data["status"].as_str());
        received.data["status"]
            .as_str()
            .expect("a status")
            .to_owned()
    }
}

fn parse(block: &str) -> Option<Received> {
    let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            value.trim().clone_into(&mut event);
        } else if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim());
        }
    }
    (!data.is_empty()).then(|| Received {
        event,
        id,
        data: serde_json::from_str(&data).expect("JSON data"),
    })
}

/// Opens `order_id`'s stream with the token in the query string, as `EventSource` does.
async fn open(
    app: &TestApp,
    order_id: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order_id}/events")))
        .query(&[("access_token", token)]);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    request.send().await.expect("stream request")
}

async fn stream(app: &TestApp, order_id: &str, token: &str, last: Option<&str>) -> EventStream {
    let response = open(app, order_id, token, last).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "an event stream"
    );
    EventStream {
        response,
        buffer: String::new(),
    }
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
    let first = events.next_status().await;
    let first = if first == "processing" {
        events.next_status().await
    } else {
        first
    };
    assert_eq!(first, "created", "the worker's transition is pushed");

    pay(&app, &order_id, &token).await;
    assert_eq!(events.next_status().await, "paid");
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
    let seen = first.next_status().await;
    drop(first);

    // While it is away the order moves on; the resumed stream starts where the client was.
    let mut created = stream(&app, &order_id, &token, Some(&seen)).await;
    if seen == "processing" {
        assert_eq!(created.next_status().await, "created");
    }
    drop(created);
    pay(&app, &order_id, &token).await;
    let mut resumed = stream(&app, &order_id, &token, Some("created")).await;
    assert_eq!(
        resumed.next_status().await,
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
    assert_eq!(on_b.next_status().await, "created");
    pay(&a, &order_id, &token).await;
    assert_eq!(on_b.next_status().await, "paid", "gateway B learned it");
    worker.stop().await.expect("the worker stops cleanly");
}

#[tokio::test]
async fn streams_beyond_the_bound_are_refused_with_503_until_one_closes() {
    let mut config = test_config();
    config.max_streams = 1.try_into().expect("1 > 0");
    let app = spawn_app_with(config).await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("dan");
    let order_id = app.buy(&sale, &token).await;

    let mut held = stream(&app, &order_id, &token, None).await;
    assert_eq!(held.next_status().await, "processing");
    assert_error(
        open(&app, &order_id, &token, None).await,
        503,
        "unavailable",
    )
    .await;

    drop(held);
    shared::testing::eventually("the closed stream's place", WAIT, async || {
        let response = open(&app, &order_id, &token, None).await;
        (response.status() == 200).then_some(())
    })
    .await;
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

    assert_error(
        open(&app, &order_id, &forged, None).await,
        401,
        "unauthenticated",
    )
    .await;
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
    let strangers = open(&app, &order_id, &app.token("mallory"), None).await;
    assert_error(strangers, 404, "not_found").await;
}

#[tokio::test]
async fn the_live_view_pushes_the_sales_stock_and_this_gateways_purchases() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(1).await;
    let response = app
        .http
        .get(app.url(&format!("/api/v1/sales/{sale}/live")))
        .send()
        .await
        .expect("live request");
    assert_eq!(response.status(), 200);
    let mut live = EventStream {
        response,
        buffer: String::new(),
    };
    let first = live.next().await.expect("a first snapshot");
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["sale"]["remaining"], 1);

    app.buy(&sale, &app.token("fay")).await;
    assert_eq!(app.purchase(&sale, &app.token("gus")).await.status(), 410);
    let snapshot = loop {
        let snapshot = live.next().await.expect("another snapshot").data;
        if snapshot["purchases"]["sold_out"] == 1 {
            break snapshot;
        }
    };
    assert_eq!(snapshot["sale"]["remaining"], 0);
    assert_eq!(snapshot["sale"]["state"], "sold_out");
    assert_eq!(snapshot["purchases"]["accepted"], 1);
    assert!(snapshot["consumers"].is_array(), "{snapshot}");

    let unknown = app
        .http
        .get(app.url("/api/v1/sales/no-such-sale/live"))
        .send()
        .await
        .expect("live request");
    assert_error(unknown, 404, "unknown_sale").await;
}
