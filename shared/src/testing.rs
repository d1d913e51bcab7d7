//! Test support shared by every crate's integration tests (feature `testing`): a private
//! namespace per test, on the real services or on the embedded backends, and probes that look
//! at the stores and Kafka directly.
//!
//! Each [`TestEnv`] has its own key prefix and its own topics, so tests run in parallel
//! against one Redis and one broker without seeing each other; its keys are deleted on drop.
//! [`TestEnv::embedded`] is the same namespace on in-process stores, an embedded Kafka
//! cluster and a SQLite file, which is how the conformance suites run one test body against
//! both backends. Either way a test hands [`TestEnv::backends`] and [`TestEnv::bus`] to the
//! service it starts (its `build_on`), so the test and the service see the same state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::backends::Backends;
use crate::config::{KafkaArgs, RedisArgs};
use crate::event::{ReservationEvent, Stream, TransitionEvent};
use crate::ids::{OrderId, SaleId, UserId};
pub use crate::kafka::header;
use crate::kafka::{EventBus, MOCK_SCHEME};
use crate::keys::KeySpace;
use crate::payment::{PaymentArgs, PaymentProvider};
use crate::sale::Sale;
use crate::stock::{Reservation, StockLedger};
use crate::worker::WorkerConfig;

/// Runs each listed case — an `async fn(TestEnv)` in scope — once per backend: a module per
/// case with an `embedded` test ([`TestEnv::embedded`]), a `real` test on one Redis node
/// ([`TestEnv::on_services`]) and a `cluster` test on Redis Cluster ([`TestEnv::on_cluster`]),
/// so a failure names the case and the backend. This is how a
/// conformance suite holds both backends of a trait to the same assertions.
#[macro_export]
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn embedded() {
                    super::$case($crate::testing::TestEnv::embedded()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn real() {
                    super::$case($crate::testing::TestEnv::on_services()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn cluster() {
                    super::$case($crate::testing::TestEnv::on_cluster()).await;
                }
            }
        )+
    };
}

/// An event for one unit reserved now on this process's clock, with the default payment
/// window: for tests that need an event, not a lock.
pub fn reservation(order_id: OrderId, user_id: &UserId, price_cents: i64) -> ReservationEvent {
    let now = Utc::now();
    let window = chrono::Duration::seconds(i64::from(crate::sale::DEFAULT_PAYMENT_WINDOW_SECS));
    ReservationEvent::new(order_id, user_id, price_cents, now, now + window)
}

/// Partitions of every test topic: more than one, so ordering across partitions is exercised.
pub const TEST_PARTITIONS: u16 = 2;

/// A private namespace on the real services (`scripts/services env` provides the URLs), or
/// on the embedded backends.
pub struct TestEnv {
    /// The settings that name this namespace's stores (`memory:` when embedded).
    pub redis: RedisArgs,
    /// The settings that name this namespace's topics (`mock:` when embedded).
    pub kafka: KafkaArgs,
    pub database_url: String,
    /// The simulated payment provider's books of this namespace, removed on drop.
    pub payments: PaymentArgs,
    backends: Backends,
    bus: EventBus,
    /// The SQLite file of an embedded namespace, removed on drop.
    sqlite_file: Option<PathBuf>,
}

/// The settings of a fresh private namespace on the real services (`scripts/services env`
/// provides the URLs): its own key prefix, topics and payment books. Settings only, nothing
/// connects: a harness that starts a service of its own (the gateway's `TestApp`) takes these
/// and cleans them up with [`clean_up`], as [`TestEnv`] does.
pub struct Namespace {
    pub redis: RedisArgs,
    pub kafka: KafkaArgs,
    pub payments: PaymentArgs,
}

impl Namespace {
    /// A fresh namespace on the services `scripts/services env` names (or their defaults).
    pub fn on_services() -> Self {
        Self::on_redis(services_redis_url())
    }

    /// The same on the services' Redis Cluster (`REDIS_CLUSTER_URL`) instead of one node.
    pub fn on_cluster() -> Self {
        Self::on_redis(services_var(
            "REDIS_CLUSTER_URL",
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
        ))
    }

    fn on_redis(redis_url: String) -> Self {
        let (redis, kafka) = namespace(redis_url, services_var("KAFKA_BROKERS", "127.0.0.1:9092"));
        Self {
            redis,
            kafka,
            payments: payments_of_a_namespace(),
        }
    }
}

/// The services' Redis (`scripts/services env`'s `REDIS_URL`), for a test that looks at it
/// directly or puts something in front of it.
pub fn services_redis_url() -> String {
    services_var("REDIS_URL", "redis://127.0.0.1:6379")
}

/// A setting of `scripts/services env`, or its default.
fn services_var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// Deletes what a namespace left behind: its keys in the services' Redis (none for the
/// embedded stores) and its payment books. Its topics are left to the throwaway broker.
pub fn clean_up(redis: &RedisArgs, payments: &PaymentArgs) {
    let _ = std::fs::remove_file(&payments.payments_file);
    if !redis.redis_url.starts_with(crate::backends::MEMORY_SCHEME) {
        delete_keys(&redis.redis_url, &redis.redis_key_prefix);
    }
}

impl TestEnv {
    /// A namespace on the real services.
    pub fn on_services() -> Self {
        Self::in_namespace(Namespace::on_services())
    }

    /// A namespace on the real services, with Redis Cluster in place of one Redis node.
    pub fn on_cluster() -> Self {
        Self::in_namespace(Namespace::on_cluster())
    }

    fn in_namespace(namespace: Namespace) -> Self {
        let Namespace {
            redis,
            kafka,
            payments,
        } = namespace;
        Self {
            backends: Backends::open(&redis).expect("REDIS_URL names Redis"),
            bus: EventBus::connect(&kafka).expect("KAFKA_BROKERS names brokers"),
            redis,
            kafka,
            database_url: services_var(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/seckill",
            ),
            payments,
            sqlite_file: None,
        }
    }

    /// A namespace on the embedded backends: in-process stores, a mock Kafka cluster and a
    /// SQLite file of its own.
    pub fn embedded() -> Self {
        let (redis, kafka) = namespace(
            crate::backends::MEMORY_SCHEME.to_owned(),
            MOCK_SCHEME.to_owned(),
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        let file = std::env::temp_dir().join(format!("seckill-test-{id}.db"));
        Self {
            backends: Backends::in_memory(),
            bus: EventBus::embedded(&kafka).expect("an embedded Kafka cluster starts"),
            redis,
            kafka,
            database_url: format!("sqlite:{}", file.display()),
            payments: payments_of_a_namespace(),
            sqlite_file: Some(file),
        }
    }

    /// Creates this test's topic and dead-letter topic.
    pub async fn create_topics(&self) {
        self.bus
            .ensure_topics()
            .await
            .expect("Kafka is reachable (run scripts/services up)");
    }

    pub fn keys(&self) -> KeySpace {
        KeySpace::new(&self.redis.redis_key_prefix)
    }

    /// This test's stores: hand a clone to the service under test.
    pub fn backends(&self) -> Backends {
        self.backends.clone()
    }

    /// This test's event bus: hand a clone to the service under test.
    pub fn bus(&self) -> EventBus {
        self.bus.clone()
    }

    pub fn ledger(&self) -> Arc<dyn StockLedger> {
        self.backends.ledger()
    }

    /// A plain connection to this namespace's Redis, for a test that looks at (or breaks) the
    /// keys behind the stores. Real services only.
    pub async fn redis_connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.redis_url.as_str())
            .expect("REDIS_URL parses")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis is reachable (run scripts/services up)")
    }

    /// A payment provider on this namespace's books: hand one to each service under test.
    pub fn payment_provider(&self) -> Arc<dyn PaymentProvider> {
        self.payments.provider()
    }

    /// Creates an open sale with `stock` units; returns it.
    pub async fn create_sale(&self, stock: u32) -> Sale {
        self.create_sale_paid_within(stock, crate::sale::DEFAULT_PAYMENT_WINDOW_SECS)
            .await
    }

    /// Creates an open sale with `stock` units whose buyers have `payment_window_secs` to pay;
    /// returns it.
    pub async fn create_sale_paid_within(&self, stock: u32, payment_window_secs: u32) -> Sale {
        let now = Utc::now();
        let id = format!("sale-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let sale = Sale {
            id: id.parse().expect("a valid sale id"),
            name: "Test sale".into(),
            price_cents: 1250,
            stock,
            starts_at: now - chrono::Duration::minutes(1),
            ends_at: now + chrono::Duration::hours(1),
            payment_window_secs,
        };
        assert!(
            self.ledger()
                .create_sale(&sale)
                .await
                .expect("the stock ledger is reachable")
        );
        sale
    }

    /// Locks one unit for `user_id` exactly as the gateway does, without publishing; returns
    /// the event and the payload the outbox holds.
    pub async fn reserve(&self, sale: &Sale, user_id: &str) -> (ReservationEvent, String) {
        let user_id: UserId = user_id.parse().expect("a valid user id");
        let ledger = self.ledger();
        let reserved_at = ledger
            .now(&sale.id)
            .await
            .expect("the stock ledger is reachable");
        let event = ReservationEvent::new(
            OrderId::generate(&sale.id),
            &user_id,
            sale.price_cents,
            reserved_at,
            sale.pay_by(reserved_at),
        );
        let payload = event.to_json();
        let outcome = ledger.reserve(&event, &payload).await.expect("reserve");
        assert!(
            matches!(outcome, Reservation::Reserved { .. }),
            "{outcome:?}"
        );
        (event, payload)
    }

    /// Publishes raw bytes to this test's topic, as any producer could.
    pub async fn publish_raw(&self, key: &str, payload: &[u8]) {
        self.publish_raw_to(Stream::Reservations, key, payload)
            .await;
    }

    /// Publishes `payload` as is to `stream`'s topic under message key `key`.
    pub async fn publish_raw_to(&self, stream: Stream, key: &str, payload: &[u8]) {
        let producer: FutureProducer = self.bus.producer_config().create().expect("producer");
        producer
            .send(
                FutureRecord::to(self.bus.topic_of(stream))
                    .key(key)
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("the broker takes the message");
    }

    /// Takes the sale's transition events out of its outbox as the relay would (they are not
    /// handed out again for a minute), with their JSON.
    pub async fn claim_transitions(&self, sale_id: &SaleId) -> Vec<(TransitionEvent, String)> {
        self.ledger()
            .due_transitions(sale_id, 10_000, Duration::from_mins(1))
            .await
            .expect("the stock ledger is reachable")
            .into_iter()
            .map(|due| {
                let event =
                    TransitionEvent::from_json(due.payload.as_bytes()).expect("a valid event");
                (event, due.payload)
            })
            .collect()
    }

    /// Up to `expected` messages of `topic`, read from the start of every partition, waiting
    /// at most `timeout`.
    pub async fn read_topic(
        &self,
        topic: &str,
        partitions: i32,
        expected: usize,
        timeout: Duration,
    ) -> Vec<OwnedMessage> {
        read_topic(
            self.bus.bootstrap_servers(),
            topic,
            partitions,
            expected,
            timeout,
        )
        .await
    }

    /// Messages on `topic` (the sum of its partitions' high watermarks).
    pub fn topic_message_count(&self, topic: &str, partitions: i32) -> i64 {
        topic_message_count(self.bus.bootstrap_servers(), topic, partitions)
    }

    /// Starts the worker `config` describes on this namespace's stores and topics (created
    /// first), in a consumer group of this namespace's own, serving health and metrics on a
    /// fresh loopback port.
    pub async fn spawn_worker<C: WorkerConfig>(&self, config: &C) -> RunningService {
        self.create_topics().await;
        config.validate().expect("the test configuration is valid");
        let group = self.group(&config.group());
        // First: a handler may register its metrics' series at zero.
        let prometheus = crate::telemetry::install_metrics();
        let handler = config.handler(&self.backends).expect("the handler builds");
        let worker = crate::worker::Worker::new(
            &self.bus,
            config.loop_settings(&group),
            handler,
            prometheus,
        )
        .expect("the worker builds");
        spawn_service(|http, shutdown| crate::worker::serve(worker, http, shutdown)).await
    }

    /// A consumer group of this namespace's own, named after `name`.
    pub fn group(&self, name: &str) -> String {
        format!("{}-{name}", self.kafka.kafka_topic)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        clean_up(&self.redis, &self.payments);
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// The payment books of a fresh namespace: a file of its own.
fn payments_of_a_namespace() -> PaymentArgs {
    let id = uuid::Uuid::new_v4().simple().to_string();
    PaymentArgs {
        payments_file: std::env::temp_dir().join(format!("seckill-test-payments-{id}.jsonl")),
        payments_simulated_latency_ms: 0,
    }
}

/// The settings of a fresh namespace: its own key prefix and topics.
fn namespace(redis_url: String, kafka_brokers: String) -> (RedisArgs, KafkaArgs) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let redis = RedisArgs {
        redis_url,
        redis_key_prefix: format!("test-{id}"),
        redis_timeout_ms: std::num::NonZeroU64::new(2000).expect("2000 > 0"),
        // A replica of the test cluster may lag behind a busy machine's tests: a case asserts
        // what a lock does, not how fast a replica confirms it.
        redis_replica_wait_ms: std::num::NonZeroU64::new(1000).expect("1000 > 0"),
    };
    let kafka = KafkaArgs {
        kafka_brokers,
        kafka_topic: format!("test-{id}"),
        kafka_order_events_topic: format!("test-{id}.order-events"),
        kafka_dlq_topic: format!("test-{id}.dlq"),
        kafka_topic_partitions: std::num::NonZeroU16::new(TEST_PARTITIONS).expect("2 > 0"),
        ..crate::config::defaults()
    };
    (redis, kafka)
}

/// Up to `expected` messages of `topic`, read from the start of every partition without a
/// consumer group, waiting at most `timeout`. Polls on a blocking thread, so the services
/// under test keep running on the test's runtime meanwhile.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        read_topic_blocking(&brokers, &topic, partitions, expected, timeout)
    })
    .await
    .expect("the probe thread did not panic")
}

fn read_topic_blocking(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer = probe_consumer(brokers);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    while messages.len() < expected && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            messages.push(message.expect("consume").detach());
        }
    }
    messages
}

/// A consumer that reads without joining or committing to any group.
fn probe_consumer(bootstrap_servers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", format!("probe-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a probe consumer")
}

/// Messages on `topic` (the sum of its partitions' high watermarks).
pub fn topic_message_count(brokers: &str, topic: &str, partitions: i32) -> i64 {
    TopicCounter::new(brokers, topic, partitions).count()
}

/// Counts a topic's messages again and again on one connection (a test that counts before
/// and after every request would otherwise connect a new client each time).
pub struct TopicCounter {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl TopicCounter {
    pub fn new(brokers: &str, topic: &str, partitions: i32) -> Self {
        Self {
            consumer: probe_consumer(brokers),
            topic: topic.to_owned(),
            partitions,
        }
    }

    /// The sum of the partitions' high watermarks.
    pub fn count(&self) -> i64 {
        (0..self.partitions)
            .map(|partition| {
                self.consumer
                    .fetch_watermarks(&self.topic, partition, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .sum()
    }
}

/// Deletes every key under `prefix` (from a plain thread, so it also works inside `Drop`), on
/// one node or on every master of a cluster. Found with `SCAN`, which walks the keyspace in
/// steps, never `KEYS`, which blocks Redis for the whole walk: the other tests share this Redis.
fn delete_keys(redis_url: &str, prefix: &str) {
    let (url, pattern) = (redis_url.to_owned(), format!("{prefix}:*"));
    let _ = std::thread::spawn(move || -> redis::RedisResult<()> {
        match crate::redis_client::cluster_nodes(&url) {
            None => delete_matching(&url, &pattern),
            Some(seeds) => {
                for master in cluster_masters(&seeds)? {
                    delete_matching(&master, &pattern)?;
                }
                Ok(())
            }
        }
    })
    .join();
}

/// The keys of one node that match `pattern`, deleted one by one (on a cluster node, keys of
/// different slots cannot share a command).
fn delete_matching(node_url: &str, pattern: &str) -> redis::RedisResult<()> {
    let mut connection = redis::Client::open(node_url)?.get_connection()?;
    let keys: Vec<String> = redis::Commands::scan_match::<_, String>(&mut connection, pattern)?
        .collect::<redis::RedisResult<_>>()?;
    for batch in keys.chunks(1_000) {
        let mut pipe = redis::pipe();
        for key in batch {
            pipe.cmd("UNLINK").arg(key).ignore();
        }
        pipe.exec(&mut connection)?;
    }
    Ok(())
}

/// The URLs of a cluster's masters (`CLUSTER NODES`, asked of the first seed that answers).
fn cluster_masters(seeds: &[String]) -> redis::RedisResult<Vec<String>> {
    let mut last_error = None;
    for seed in seeds {
        let nodes = redis::Client::open(seed.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c));
        match nodes {
            Ok(nodes) => {
                let scheme = seed.split("://").next().unwrap_or("redis");
                return Ok(crate::redis_client::parse_cluster_nodes(&nodes)
                    .into_iter()
                    .filter(|node| node.is_master && !node.is_failing)
                    .map(|node| format!("{scheme}://{}", node.address))
                    .collect());
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| redis::RedisError::from(std::io::Error::other("no seeds"))))
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F: AsyncFnMut() -> Option<T>>(
    what: &str,
    timeout: Duration,
    check: F,
) -> T {
    crate::poll::until(timeout, Duration::from_millis(50), check)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// A service started in-process by a test, stopped gracefully by [`RunningService::stop`].
pub struct RunningService {
    pub http_addr: std::net::SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts a service's `run` on a fresh loopback port with its own shutdown token.
pub async fn spawn_service<F, Fut>(start: F) -> RunningService
where
    F: FnOnce(tokio::net::TcpListener, tokio_util::sync::CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http_addr = listener.local_addr().expect("local addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(start(listener, shutdown.clone()));
    RunningService {
        http_addr,
        shutdown,
        task,
    }
}

impl RunningService {
    /// Signals shutdown and returns what the service's `run` returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.expect("the service task did not panic")
    }
}
