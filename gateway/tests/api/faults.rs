//! What the gateway does when a dependency fails (`docs/architecture.md`, "When things fail").

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{assert_error, create_topics, spawn_app_with, test_config};
use crate::redis_proxy::RedisProxy;

/// A private redis-server on a free port, killed on drop.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services up installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn with_redis_stopped_a_purchase_answers_503_within_the_deadline() {
    let mut redis = PrivateRedis::start();
    let mut config = test_config();
    config.redis.redis_url = redis.url();
    let app = spawn_app_with(config).await;
    let sale = app.create_open_sale(10).await;
    let token = app.token("alice");
    assert_eq!(
        app.purchase(&sale, &token).await.status(),
        202,
        "works while Redis is up"
    );

    redis.kill();
    let started = Instant::now();
    let response = app.purchase(&sale, &app.token("bob")).await;
    let elapsed = started.elapsed();
    assert_error(response, 503, "unavailable").await;
    // The deadline of the contract: the request timeout, never a hang.
    assert!(
        elapsed < app.config.request_timeout(),
        "answered after {elapsed:?}"
    );

    let body = app.readiness(503).await;
    assert_eq!(body["redis"], false);
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn with_redis_unreachable_from_the_start_the_gateway_serves_503_not_errors() {
    let mut config = test_config();
    config.redis.redis_url = format!("redis://127.0.0.1:{}", free_port());
    let app = spawn_app_with(config).await;
    let token = app.token("alice");
    assert_error(app.purchase("some-sale", &token).await, 503, "unavailable").await;
    let body = app.readiness(503).await;
    assert_eq!(body["redis"], false);
}

#[tokio::test]
async fn with_kafka_down_locks_succeed_and_the_outbox_keeps_the_event() {
    let mut config = test_config();
    // Topics must exist for spawn_app, so create them first, then point the gateway nowhere.
    create_topics(&config).await;
    config.kafka.kafka_brokers = format!("127.0.0.1:{}", free_port());
    let mut app = crate::helpers::spawn_app_without_topics(config).await;
    let sale = app.create_open_sale(3).await;
    let response = app.purchase(&sale, &app.token("alice")).await;
    assert_eq!(response.status(), 202);
    let order: Value = response.json().await.unwrap();
    let order_id = order["order_id"].as_str().unwrap();

    let keys = app.sale_keys(&sale);
    let outbox: Option<String> = app.redis.hget(&keys.outbox, order_id).await.unwrap();
    assert!(outbox.is_some(), "the outbox holds the event");
    let score: Option<f64> = app.redis.zscore(&keys.unpublished, order_id).await.unwrap();
    assert!(
        score.is_some(),
        "the event waits for the reconciler as unpublished"
    );

    let body = app.readiness(503).await;
    assert_eq!(body["kafka"], false);
    assert_eq!(body["redis"], true);
}

#[tokio::test]
async fn a_full_producer_queue_refuses_events_at_once_and_the_outbox_keeps_them() {
    let mut config = test_config();
    create_topics(&config).await;
    config.kafka.kafka_brokers = format!("127.0.0.1:{}", free_port());
    config.kafka.kafka_producer_queue_messages = 2.try_into().expect("2 > 0");
    let mut app = crate::helpers::spawn_app_without_topics(config).await;
    let sale = app.create_open_sale(10).await;
    let mut orders = Vec::new();
    for user in ["ann", "ben", "cat", "dov", "eli"] {
        orders.push(app.buy(&sale, &app.token(user)).await);
    }

    let keys = app.sale_keys(&sale);
    for order_id in &orders {
        let waiting: Option<f64> = app.redis.zscore(&keys.unpublished, order_id).await.unwrap();
        assert!(
            waiting.is_some(),
            "{order_id}: answered 202, and waiting in the outbox for the reconciler"
        );
    }
    let metrics = app.metrics().await;
    let refused: f64 = metrics
        .lines()
        .find(|line| line.starts_with("seckill_publish_failures_total{stage=\"enqueue\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse().ok())
        .expect("the enqueue failures are counted");
    assert!(refused >= 3.0, "a queue of 2 refused the rest: {refused}");
}

#[tokio::test]
async fn a_lock_whose_answer_was_lost_is_answered_202_with_its_order_and_published() {
    let proxy = RedisProxy::start().await;
    let mut config = test_config();
    config.redis.redis_url = proxy.url();
    config.redis.redis_timeout_ms = std::num::NonZeroU64::new(200).unwrap();
    config.redis.redis_replica_wait_ms = std::num::NonZeroU64::new(50).unwrap();
    // No blacklist poll or readiness check while the reply is held, so the held reply is the
    // stock lock's.
    config.blacklist_sync_ms = std::num::NonZeroU64::new(3_600_000).unwrap();
    config.readiness_check_ms = std::num::NonZeroU64::new(3_600_000).unwrap();
    let mut app = spawn_app_with(config).await;
    let sale = app.create_open_sale(10).await;
    // A first purchase loads the script, and its acknowledgement is recorded, before the stall.
    assert_eq!(app.purchase(&sale, &app.token("early")).await.status(), 202);
    assert_eq!(app.wait_for_acknowledgements(&sale).await, 0);

    // Longer than the 200 ms deadline of one Redis call, shorter than a request's.
    proxy.stall_next_reply(Duration::from_millis(500));
    let response = app.purchase(&sale, &app.token("stalled")).await;
    assert_eq!(
        response.status(),
        202,
        "the lock ran: the buyer holds a unit"
    );
    let body: Value = response.json().await.unwrap();
    let order_id = body["order_id"].as_str().unwrap().to_owned();

    assert_eq!(app.remaining(&sale).await, 8, "two units locked, each once");
    let events = app.read_events(2).await;
    assert!(
        events
            .iter()
            .any(|(event, _)| event.order_id.as_str() == order_id),
        "the recovered order is published"
    );
}

#[tokio::test]
async fn a_lock_queued_behind_a_paused_redis_past_its_deadline_locks_nothing() {
    let redis = PrivateRedis::start();
    let mut config = test_config();
    config.redis.redis_url = redis.url();
    config.redis.redis_timeout_ms = std::num::NonZeroU64::new(200).unwrap();
    config.redis.redis_replica_wait_ms = std::num::NonZeroU64::new(50).unwrap();
    config.request_timeout_ms = std::num::NonZeroU64::new(2_500).unwrap();
    let app = spawn_app_with(config).await;
    let sale = app.create_open_sale(10).await;
    assert_eq!(app.purchase(&sale, &app.token("early")).await.status(), 202);

    // Redis stops serving every client for longer than a request may take; the stock lock
    // and every question after it queue up, and run once the pause ends.
    let mut operator = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pause = app.config.request_timeout() + Duration::from_millis(500);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("ALL")
        .query_async(&mut operator)
        .await
        .unwrap();
    let token = app.token("paused");
    let response = app.purchase(&sale, &token).await;
    assert_error(response, 503, "unavailable").await;

    tokio::time::sleep(pause).await; // the queued lock has run now
    let view = app.sale_view(&sale).await;
    assert_eq!(
        view["remaining"], 9,
        "the buyer told 503 holds no unit: {view}"
    );
    let mine = app
        .http
        .get(app.url(&format!("/api/v1/sales/{sale}/orders/mine")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_error(mine, 404, "not_found").await;
    assert_eq!(
        app.purchase(&sale, &token).await.status(),
        202,
        "and may buy again"
    );
}

#[tokio::test]
async fn a_blacklist_copy_that_stopped_syncing_makes_the_gateway_not_ready() {
    let mut redis = PrivateRedis::start();
    let mut config = test_config();
    config.redis.redis_url = redis.url();
    config.blacklist_sync_ms = std::num::NonZeroU64::new(100).unwrap();
    let app = spawn_app_with(config).await;
    let body = app.readiness(200).await;
    assert_eq!(body["blacklist"], true, "{body}");

    redis.kill();
    tokio::time::sleep(Duration::from_millis(600)).await; // more than three sync intervals
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["blacklist"], false, "{body}");
}

#[tokio::test]
async fn a_crowd_of_readiness_probes_is_answered_from_one_background_check() {
    let mut config = test_config();
    // One check in the whole test: every probe after it must answer with that check.
    config.readiness_check_ms = std::num::NonZeroU64::new(600_000).unwrap();
    let app = spawn_app_with(config).await;
    let first = app.readiness(200).await;
    let probes = (0..200).map(|_| async {
        let response = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    });
    for body in futures::future::join_all(probes).await {
        assert_eq!(body["checked_at"], first["checked_at"], "{body}");
    }
}
