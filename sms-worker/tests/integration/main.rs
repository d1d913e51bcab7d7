//! The SMS worker against real Redis and a Kafka-protocol broker, with a file provider and a
//! local HTTP provider whose answers the test scripts.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use shared::consumer::{DLQ_REASON_HEADER, Delivery, Handler, HandlerError};
use shared::error::StoreError;
use shared::event::{OrderEvent, ReservationEvent};
use shared::sms_records::{Claim, SmsId, SmsRecords};
use shared::testing::{RunningService, TestEnv, eventually, header};
use sms_worker::handler::{RecordLifetimes, SmsHandler};
use sms_worker::provider::{JsonLinesProvider, Sms, SmsError, SmsProvider};
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
    let env = TestEnv::on_services();
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
    assert_eq!(
        lines[0]["idempotency_key"],
        format!("{}:reserved", first.order_id)
    );
    assert_eq!(lines[0]["to"], "alice");
    assert_eq!(
        lines[1]["idempotency_key"],
        format!("{}:reserved", second.order_id)
    );
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
    let env = TestEnv::on_services();
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
        keys.iter()
            .all(|k| *k == format!("{}:reserved", event.order_id)),
        "idempotency key is the order id and the kind: {keys:?}"
    );
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn a_provider_that_recovers_gets_the_message_once() {
    let env = TestEnv::on_services();
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
    let env = TestEnv::on_services();
    let file = temp_file("sms-rate");
    let rate = NonZeroU32::new(5).unwrap();
    let handler = SmsHandler::new(
        JsonLinesProvider::new(Some(file.clone())),
        rate,
        env.backends().sms_records(),
        lifetimes(),
    );
    let sale = env.create_sale(20).await;
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let (event, _) = env.reserve(&sale, &format!("user-{i}")).await;
        deliveries.push(delivery(&event));
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

fn lifetimes() -> RecordLifetimes {
    RecordLifetimes {
        claim: Duration::from_secs(30),
        sent: Duration::from_mins(1),
    }
}

fn delivery(event: &ReservationEvent) -> Delivery<OrderEvent> {
    Delivery {
        event: OrderEvent::Reserved(event.clone()),
        traceparent: None,
    }
}

/// The real records, but writing "sent" fails right after the provider accepted the message.
struct SentRecordFails {
    records: Arc<dyn SmsRecords>,
    when: Failing,
    failed: AtomicBool,
}

enum Failing {
    /// A Redis blip.
    Once,
    /// The worker is killed before it writes.
    Always,
}

impl SentRecordFails {
    fn new(records: Arc<dyn SmsRecords>, when: Failing) -> Arc<Self> {
        Arc::new(Self {
            records,
            when,
            failed: AtomicBool::new(false),
        })
    }
}

#[async_trait::async_trait]
impl SmsRecords for SentRecordFails {
    async fn claim(
        &self,
        message: &SmsId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        self.records.claim(message, holder, ttl).await
    }

    async fn record_sent(&self, message: &SmsId, ttl: Duration) -> Result<(), StoreError> {
        let failed_before = self.failed.swap(true, Ordering::SeqCst);
        if !failed_before || matches!(self.when, Failing::Always) {
            return Err(StoreError::Timeout(Duration::from_millis(200)));
        }
        self.records.record_sent(message, ttl).await
    }

    async fn release(&self, message: &SmsId, holder: &str) -> Result<(), StoreError> {
        self.records.release(message, holder).await
    }
}

#[tokio::test]
async fn a_redis_blip_after_the_send_retries_the_record_not_the_sms() {
    let env = TestEnv::on_services();
    let file = temp_file("sms-blip");
    let records = SentRecordFails::new(env.backends().sms_records(), Failing::Once);
    let rate = NonZeroU32::new(100).unwrap();
    let handler = SmsHandler::new(
        JsonLinesProvider::new(Some(file.clone())),
        rate,
        records,
        lifetimes(),
    );
    let sale = env.create_sale(10).await;
    let (event, _) = env.reserve(&sale, "gina").await;

    let first = handler.handle(&[delivery(&event)]).await;
    assert!(
        matches!(first, Err(HandlerError::Unavailable(_))),
        "{first:?}"
    );
    handler
        .handle(&[delivery(&event)])
        .await
        .expect("the retry records the send");
    handler
        .handle(&[delivery(&event)])
        .await
        .expect("a redelivery skips");
    assert_eq!(sms_lines(&file).len(), 1, "exactly one SMS");
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn a_crash_between_send_and_record_sends_again_and_the_file_provider_delivers_once() {
    let env = TestEnv::on_services();
    let file = temp_file("sms-crash");
    let rate = NonZeroU32::new(100).unwrap();
    let short_claim = RecordLifetimes {
        claim: Duration::from_millis(300),
        ..lifetimes()
    };
    let sale = env.create_sale(10).await;
    let (event, _) = env.reserve(&sale, "ivy").await;

    let killed = SmsHandler::new(
        JsonLinesProvider::new(Some(file.clone())),
        rate,
        SentRecordFails::new(env.backends().sms_records(), Failing::Always),
        short_claim,
    );
    let first = killed.handle(&[delivery(&event)]).await;
    assert!(
        matches!(first, Err(HandlerError::Unavailable(_))),
        "{first:?}"
    );
    // The process dies: what it remembered about the send goes with it. Its claim expires.
    drop(killed);
    tokio::time::sleep(short_claim.claim + Duration::from_millis(100)).await;

    let restarted = SmsHandler::new(
        JsonLinesProvider::new(Some(file.clone())),
        rate,
        env.backends().sms_records(),
        short_claim,
    );
    restarted
        .handle(&[delivery(&event)])
        .await
        .expect("the redelivery is handled");
    let lines = sms_lines(&file);
    assert_eq!(lines.len(), 2, "the worker sent twice: {lines:?}");
    assert_eq!(lines[0].get("repeat"), None, "the first call delivered");
    assert_eq!(lines[1]["repeat"], true, "the second was known by its key");
    restarted
        .handle(&[delivery(&event)])
        .await
        .expect("a further redelivery skips");
    assert_eq!(sms_lines(&file).len(), 2, "the record stops the worker");
    let _ = std::fs::remove_file(file);
}

/// The file provider, slow: long enough for a second instance to try the same order.
struct SlowProvider(JsonLinesProvider);

impl SmsProvider for SlowProvider {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.send(sms).await
    }
}

#[tokio::test]
async fn two_instances_handed_one_order_at_once_send_one_sms() {
    let env = TestEnv::on_services();
    let file = temp_file("sms-overlap");
    let rate = NonZeroU32::new(100).unwrap();
    let instance = || {
        let provider = SlowProvider(JsonLinesProvider::new(Some(file.clone())));
        SmsHandler::new(provider, rate, env.backends().sms_records(), lifetimes())
    };
    let (first, second) = (instance(), instance());
    let sale = env.create_sale(10).await;
    let (event, _) = env.reserve(&sale, "hal").await;
    let batch = [delivery(&event)];

    // Two owners of the partition during a rebalance overlap.
    let (a, b) = tokio::join!(first.handle(&batch), second.handle(&batch));
    assert!(
        a.is_ok() != b.is_ok(),
        "one sends, the other waits: {a:?} {b:?}"
    );
    assert!(
        matches!(
            a.as_ref().err().or(b.as_ref().err()),
            Some(HandlerError::Unavailable(_))
        ),
        "the waiting one is told to retry, without spending its budget"
    );
    // The waiting one's retry finds the message sent.
    first.handle(&batch).await.unwrap();
    second.handle(&batch).await.unwrap();
    assert_eq!(sms_lines(&file).len(), 1, "exactly one SMS");
    let _ = std::fs::remove_file(file);
}
