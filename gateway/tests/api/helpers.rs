//! `spawn_app()`: a gateway on 127.0.0.1:0 with a fresh key prefix and topic, plus the probes
//! tests use to look at Redis and the topic directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use gateway::Config;
use gateway::auth::TokenKeys;
use rdkafka::Message;
use redis::AsyncCommands;
use serde_json::{Value, json};
use shared::backends::Backends;
use shared::config::Secret;
use shared::event::ReservationEvent;
use shared::kafka::EventBus;
use shared::keys::{KeySpace, SaleKeys};
use shared::payment::PaymentProvider;
use shared::poll;
use shared::sale::DEFAULT_PAYMENT_WINDOW_SECS;
use shared::testing::{
    Namespace, clean_up, eventually, header, read_topic, services_redis_url, topic_message_count,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const JWT_SECRET: &str = "test-jwt-secret-of-the-gateway-tests!";
pub const ADMIN_TOKEN: &str = "test-admin-token-test-admin-token!!";
pub const PARTITIONS: u16 = 4;

pub struct TestApp {
    pub address: SocketAddr,
    /// Where the gateway serves `/metrics`, apart from the API.
    pub metrics_address: SocketAddr,
    pub http: reqwest::Client,
    pub config: Config,
    pub keys: KeySpace,
    pub redis: redis::aio::MultiplexedConnection,
    tokens: TokenKeys,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A configuration for tests: the real services of `scripts/services env`, a namespace of its
/// own (key prefix, topics, payment books; cleaned up when the gateway's `TestApp` is
/// dropped), no rate limits unless a test sets them.
pub fn test_config() -> Config {
    let Namespace {
        redis,
        kafka,
        payments,
    } = Namespace::on_services();
    let mut config: Config = shared::config::defaults();
    config.jwt_secret = Secret::new(JWT_SECRET);
    config.admin_token = Secret::new(ADMIN_TOKEN);
    config.redis = redis;
    config.kafka = kafka;
    config.payments = payments;
    config.kafka.kafka_topic_partitions = PARTITIONS.try_into().expect("PARTITIONS > 0");
    config.rate_limit_global_per_sec = 0;
    config.rate_limit_user_per_sec = 0;
    config.rate_limit_ip_per_sec = 0;
    // The services' generous Redis deadline (slow debug builds), and a request that outlasts it.
    config.request_timeout_ms = std::num::NonZeroU64::new(16_000).expect("16 s > 0");
    // Readiness follows a fault within a tenth of a second.
    config.readiness_check_ms = std::num::NonZeroU64::new(100).expect("100 ms > 0");
    config
}

/// Logs of the services under test, shown for failing tests (`RUST_LOG` filters them).
fn init_test_logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .init();
    });
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    init_test_logs();
    create_topics(&config).await;
    spawn_app_without_topics(config).await
}

/// Creates the topics `config` names on the services' broker.
pub async fn create_topics(config: &Config) {
    shared::kafka::EventBus::connect(&config.kafka)
        .expect("KAFKA_BROKERS names a bus")
        .ensure_topics()
        .await
        .expect("Kafka is reachable (run scripts/services up)");
}

/// Starts the gateway without first creating its topics (for a broker that is down).
pub async fn spawn_app_without_topics(config: Config) -> TestApp {
    let payments = config.payments.provider();
    start(config, payments).await
}

/// Starts the gateway charging through `payments` (a provider that misbehaves on purpose)
/// instead of the books `config` names.
pub async fn spawn_app_paying_through(
    config: Config,
    payments: Arc<dyn PaymentProvider>,
) -> TestApp {
    init_test_logs();
    create_topics(&config).await;
    start(config, payments).await
}

async fn start(config: Config, payments: Arc<dyn PaymentProvider>) -> TestApp {
    // The listen queue a deployment has, so a test's crowd of connects queues as a crowd's does.
    let free = "127.0.0.1:0".parse().expect("an address");
    let listener = config.front_door.listen(free).expect("bind");
    let address = listener.local_addr().expect("local addr");
    let metrics = config.front_door.listen(free).expect("bind");
    let metrics_address = metrics.local_addr().expect("local addr");
    let backends = Backends::open(&config.redis).expect("REDIS_URL parses");
    let bus = EventBus::connect(&config.kafka).expect("KAFKA_BROKERS names a bus");
    let gateway = gateway::build_on(&config, &backends, &bus, payments)
        .expect("the test configuration builds");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(gateway::serve(gateway, listener, metrics, shutdown.clone()));
    // The probe always looks at the services' Redis, even when the gateway is pointed elsewhere.
    let redis = redis::Client::open(services_redis_url())
        .expect("REDIS_URL parses")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is reachable (run scripts/services up)");
    TestApp {
        address,
        metrics_address,
        http: reqwest::Client::new(),
        keys: KeySpace::new(&config.redis.redis_key_prefix),
        tokens: TokenKeys::new(JWT_SECRET, Duration::from_mins(10), config.token_rules()),
        config,
        redis,
        shutdown,
        server: Some(server),
    }
}

/// The claims of a user token the test gateway's rules accept (issuer, audience, issue time),
/// for `sub`, issued at `iat` and expiring at `exp` (seconds since the epoch): tests change
/// or remove one to see it refused.
pub fn claims(sub: &str, iat: u64, exp: u64) -> Value {
    let config = test_config();
    json!({"sub": sub, "iat": iat, "exp": exp, "iss": config.jwt_issuer, "aud": config.jwt_audience})
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The body of `/readyz` once it answers `status` from a background check (the first
    /// check may not have run yet when the test begins); fails after ten seconds.
    pub async fn readiness(&self, status: u16) -> Value {
        eventually(
            &format!("/readyz to answer {status}"),
            Duration::from_secs(10),
            async || {
                let response = self.http.get(self.url("/readyz")).send().await.ok()?;
                let answered = response.status().as_u16();
                let body: Value = response.json().await.ok()?;
                (answered == status && body["checked_at"].is_string()).then_some(body)
            },
        )
        .await
    }

    /// The gateway's Prometheus text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_address);
        let response = self.http.get(url).send().await.expect("metrics answer");
        response.text().await.expect("metrics are text")
    }

    /// A token for `user_id`, signed as the login service would.
    pub fn token(&self, user_id: &str) -> String {
        let user_id = user_id.parse().expect("a valid user id");
        self.tokens.mint(&user_id).expect("minting a token")
    }

    pub fn admin_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(ADMIN_TOKEN)
    }

    /// Creates a sale open from a minute ago to an hour from now; returns its id.
    pub async fn create_open_sale(&self, stock: u32) -> String {
        self.create_open_sale_paid_within(stock, DEFAULT_PAYMENT_WINDOW_SECS)
            .await
    }

    /// Creates an open sale whose buyers have `window_secs` to pay; returns its id.
    pub async fn create_open_sale_paid_within(&self, stock: u32, window_secs: u32) -> String {
        let now = Utc::now();
        let window = (
            now - ChronoDuration::minutes(1),
            now + ChronoDuration::hours(1),
        );
        self.post_sale(stock, window, window_secs).await
    }

    pub async fn create_sale(
        &self,
        stock: u32,
        starts_at: chrono::DateTime<Utc>,
        ends_at: chrono::DateTime<Utc>,
    ) -> String {
        self.post_sale(stock, (starts_at, ends_at), DEFAULT_PAYMENT_WINDOW_SECS)
            .await
    }

    /// `POST /api/v1/admin/sales` for a sale of `stock` units open during `window`; returns its id.
    async fn post_sale(
        &self,
        stock: u32,
        (starts_at, ends_at): (chrono::DateTime<Utc>, chrono::DateTime<Utc>),
        window_secs: u32,
    ) -> String {
        let id = format!("sale-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let response = self
            .admin_post("/api/v1/admin/sales")
            .json(&json!({
                "id": id, "name": "Test phone", "price_cents": 4999, "stock": stock,
                "starts_at": starts_at, "ends_at": ends_at, "payment_window_secs": window_secs,
            }))
            .send()
            .await
            .expect("create sale");
        assert_eq!(
            response.status(),
            201,
            "{}",
            response.text().await.unwrap_or_default()
        );
        id
    }

    pub async fn purchase(&self, sale_id: &str, token: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v1/sales/{sale_id}/orders")))
            .bearer_auth(token)
            .send()
            .await
            .expect("purchase request")
    }

    /// A purchase that must be accepted; returns its order id.
    pub async fn buy(&self, sale_id: &str, token: &str) -> String {
        let response = self.purchase(sale_id, token).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("a JSON answer");
        body["order_id"].as_str().expect("an order id").to_owned()
    }

    /// `GET /api/v1/sales/{id}` as JSON.
    pub async fn sale_view(&self, sale_id: &str) -> Value {
        self.http
            .get(self.url(&format!("/api/v1/sales/{sale_id}")))
            .send()
            .await
            .expect("sale request")
            .json()
            .await
            .expect("a JSON sale")
    }

    pub fn sale_keys(&self, sale_id: &str) -> SaleKeys {
        self.keys.sale(&sale_id.parse().expect("a valid sale id"))
    }

    pub async fn remaining(&mut self, sale_id: &str) -> i64 {
        let key = self.sale_keys(sale_id).stock;
        self.redis.get(key).await.expect("GET stock")
    }

    /// Waits until the broker has acknowledged every event of `sale` (its unpublished set is
    /// empty); returns how many are still unacknowledged when the wait ends.
    pub async fn wait_for_acknowledgements(&mut self, sale_id: &str) -> usize {
        let key = self.sale_keys(sale_id).unpublished;
        let redis = &mut self.redis;
        let acknowledged = poll::until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            async || {
                let pending: usize = redis.zcard(&key).await.expect("ZCARD");
                (pending == 0).then_some(())
            },
        )
        .await;
        match acknowledged {
            Some(()) => 0,
            None => redis.zcard(&key).await.expect("ZCARD"),
        }
    }

    /// Every key under this test's prefix with its serialized value: equal fingerprints mean
    /// nothing was written.
    pub async fn redis_fingerprint(&mut self) -> BTreeMap<String, Vec<u8>> {
        let pattern = format!("{}:*", self.config.redis.redis_key_prefix);
        let mut keys = Vec::new();
        let mut scan = self
            .redis
            .scan_match::<_, String>(pattern)
            .await
            .expect("SCAN");
        while let Some(key) = scan.next_item().await {
            keys.push(key.expect("a key name"));
        }
        drop(scan);
        let mut fingerprint = BTreeMap::new();
        for key in keys {
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut self.redis)
                .await
                .expect("DUMP");
            fingerprint.insert(key, dump);
        }
        fingerprint
    }

    /// Messages on the topic (sum of the partitions' high watermarks).
    pub fn topic_message_count(&self) -> i64 {
        let kafka = &self.config.kafka;
        topic_message_count(&kafka.kafka_brokers, &kafka.kafka_topic, PARTITIONS.into())
    }

    /// Waits until the topic holds `expected` messages (or `timeout` passes) and returns the
    /// count, so a test can tell "exactly N" from "at least N".
    pub async fn wait_for_message_count(&self, expected: i64, timeout: Duration) -> i64 {
        poll::until(timeout, Duration::from_millis(100), async || {
            (self.topic_message_count() >= expected).then_some(())
        })
        .await;
        // A little longer, to catch messages beyond the expected count.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.topic_message_count()
    }

    /// Every event on the topic with its `traceparent`, read from the start.
    pub async fn read_events(&self, expected: usize) -> Vec<(ReservationEvent, Option<String>)> {
        let kafka = &self.config.kafka;
        read_topic(
            &kafka.kafka_brokers,
            &kafka.kafka_topic,
            PARTITIONS.into(),
            expected,
            Duration::from_secs(30),
        )
        .await
        .iter()
        .map(|message| {
            let payload = message.payload().expect("payload");
            let event =
                ReservationEvent::from_json(payload).expect("every message is a reservation event");
            (event, header(message, shared::kafka::TRACEPARENT_HEADER))
        })
        .collect()
    }
}

/// The JSON body of a response, asserting its status and `error` code.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected {status} {code}");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "the error explains itself: {body}"
    );
    body
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        // The probe's Redis, even when the gateway was pointed elsewhere (a proxy, a fake).
        let mut namespace = self.config.redis.clone();
        namespace.redis_url = services_redis_url();
        clean_up(&namespace, &self.config.payments);
    }
}
