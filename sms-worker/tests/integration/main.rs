//! The SMS worker against real Redis and a Kafka-protocol broker, with a file provider and a
//! local HTTP provider whose answers the test scripts.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use shared::consumer::{DLQ_REASON_HEADER, Delivery, Handler};
use shared::testing::{RunningService, TestEnv, eventually, header};
use sms_worker::handler::SmsHandler;
use sms_worker::provider::JsonLinesProvider;
use sms_worker::{Config, ProviderKind};

const WAIT: Duration = Duration::from_secs(30);

async fn start(env: &TestEnv, config: Config) -> RunningService {
    env.spawn_worker(&config).await
}

fn sms_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn temp_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{name}-{}.jsonl", uuid::Uuid::new_v4()))
}

#[tokio::test]
async fn a_redelivered_event_sends_one_sms() {
    let env = TestEnv::new();
    let file = temp_file("sms");
    let mut config: Config = shared::config::defaults();
    config.sms_file = Some(file.clone());
    let worker = start(&env, config).await;
    let sale = env.create_sale(10).await;
    let (first, payload) = env.reserve(&sale, "alice").await;
    let (second, second_payload) = env.reserve(&sale, "bob").await;
    // One key, so one partition in this order: the duplicate is handled before `second`.
    for bytes in [&payload, &payload, &second_payload] {
        env.publish_raw("k", bytes.as_bytes()).await;
    }
    eventually("two messages in the SMS file", WAIT, async || {
        (sms_lines(&file).len() >= 2).then_some(())
    })
    .await;
    worker.stop().await.expect("graceful shutdown returns Ok");
    let lines = sms_lines(&file);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["idempotency_key"], first.order_id.as_str());
    assert_eq!(lines[0]["to"], "alice");
    assert_eq!(lines[1]["idempotency_key"], second.order_id.as_str());
    let _ = std::fs::remove_file(file);
}

/// A stand-in SMS gateway that fails its first `failures` calls with 503, then accepts.
#[derive(Clone)]
struct ScriptedProvider {
    calls: Arc<AtomicUsize>,
    failures: usize,
    keys: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn scripted(State(provider): State<ScriptedProvider>, headers: HeaderMap) -> StatusCode {
    let call = provider.calls.fetch_add(1, Ordering::SeqCst);
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    provider.keys.lock().expect("lock").extend(key);
    if call < provider.failures {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::ACCEPTED
    }
}

async fn start_provider(failures: usize) -> (String, ScriptedProvider) {
    let provider = ScriptedProvider {
        calls: Arc::default(),
        failures,
        keys: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/sms", axum::routing::post(scripted))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/sms", listener.local_addr().expect("local addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, provider)
}

fn http_config(url: String) -> Config {
    let mut config: Config = shared::config::defaults();
    config.sms_provider = ProviderKind::Http;
    config.sms_http_url = url;
    config.sms_max_attempts = NonZeroU32::new(3).expect("3 > 0");
    config
}

#[tokio::test]
async fn a_failing_provider_is_retried_then_the_message_is_dead_lettered() {
    let env = TestEnv::new();
    let (url, provider) = start_provider(usize::MAX).await;
    let worker = start(&env, http_config(url)).await;
    let sale = env.create_sale(10).await;
    let (event, payload) = env.reserve(&sale, "carol").await;
    env.publish_raw("k", payload.as_bytes()).await;

    let dead = env.read_topic(&env.kafka.kafka_dlq_topic, 1, 1, WAIT).await;
    assert_eq!(dead.len(), 1, "the message was dead-lettered");
    let reason = header(&dead[0], DLQ_REASON_HEADER).expect("a reason");
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");
    assert_eq!(
        provider.calls.load(Ordering::SeqCst),
        3,
        "exactly the configured attempts"
    );
    let keys = provider.keys.lock().unwrap().clone();
    assert!(
        keys.iter().all(|k| k == event.order_id.as_str()),
        "idempotency key is the order id: {keys:?}"
    );
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn a_provider_that_recovers_gets_the_message_once() {
    let env = TestEnv::new();
    let (url, provider) = start_provider(2).await;
    let worker = start(&env, http_config(url)).await;
    let sale = env.create_sale(10).await;
    let (_, payload) = env.reserve(&sale, "dave").await;
    let (_, second_payload) = env.reserve(&sale, "erin").await;
    env.publish_raw("k", payload.as_bytes()).await;
    env.publish_raw("k", second_payload.as_bytes()).await;

    eventually("both messages accepted", WAIT, async || {
        (provider.calls.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    worker.stop().await.expect("graceful shutdown returns Ok");
    // Two failures, then one accepted call per message; nothing dead-lettered.
    assert_eq!(provider.calls.load(Ordering::SeqCst), 4);
    let dead = env
        .read_topic(&env.kafka.kafka_dlq_topic, 1, 1, Duration::from_secs(2))
        .await;
    assert!(dead.is_empty(), "nothing was dead-lettered");
}

#[tokio::test]
async fn sending_holds_the_configured_rate() {
    let env = TestEnv::new();
    let file = temp_file("sms-rate");
    let rate = NonZeroU32::new(5).unwrap();
    let handler = SmsHandler::new(
        JsonLinesProvider::new(Some(file.clone())),
        rate,
        env.backends().sms_records(),
        Duration::from_mins(1),
    );
    let sale = env.create_sale(20).await;
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let (event, _) = env.reserve(&sale, &format!("user-{i}")).await;
        deliveries.push(Delivery {
            event,
            traceparent: None,
        });
    }
    let started = Instant::now();
    handler.handle(&deliveries).await.expect("all sent");
    let elapsed = started.elapsed();
    // A burst of 5, then one every 200 ms: the last 5 need at least 4 × 200 ms more.
    assert!(
        elapsed >= Duration::from_millis(800),
        "10 messages at 5/s took only {elapsed:?}"
    );
    assert_eq!(sms_lines(&file).len(), 10);
    let _ = std::fs::remove_file(file);
}
