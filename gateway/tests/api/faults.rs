//! What the gateway does when a dependency fails (`docs/architecture.md`, "When things fail").

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{assert_error, create_topics, spawn_app_with, test_config};

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

    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
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
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
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

    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["kafka"], false);
    assert_eq!(body["redis"], true);
}
