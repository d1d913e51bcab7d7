//! The event bus a service is built with: where the brokers are, which topics carry the
//! reservations and the dead letters, and the client settings every producer and consumer of
//! this deployment starts from.
//!
//! [`EventBus::embedded`] runs an embedded cluster instead of real brokers; it lives as long as
//! the bus or any clone of it, so services handed clones of one bus (the all-in-one runner,
//! tests) share one cluster. A service started on its own refuses `KAFKA_BROKERS=mock:`: its
//! events would reach no worker of another process.

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::embedded::EmbeddedCluster;
use crate::config::KafkaArgs;
use crate::event::Stream;

/// The scheme a `KAFKA_BROKERS` for an embedded cluster would have; refused by
/// [`EventBus::connect`].
pub const MOCK_SCHEME: &str = "mock:";

/// The dead-letter topic keeps its events this many times as long as the event topics.
const DEAD_LETTER_RETENTION_FACTOR: u32 = 4;

/// Why [`EventBus::connect`] gave no bus.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "KAFKA_BROKERS=mock: would keep the events inside this one process, where no worker of another process receives them; the embedded bus is for the all-in-one runner (cargo run -p seckill), which starts it itself. Give the brokers as host:port"
    )]
    InProcessOnly,
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Brokers and topics. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    bootstrap_servers: String,
    topic: String,
    order_events_topic: String,
    dead_letter_topic: String,
    partitions: NonZeroU16,
    /// How long the event topics keep their events, set when [`EventBus::ensure_topics`]
    /// creates them.
    retention: Duration,
    /// The producers' queue bound, in events and in kilobytes.
    producer_queue_messages: NonZeroU32,
    producer_queue_kbytes: NonZeroU32,
    /// The embedded cluster this bus runs on, if any; kept alive by every clone.
    embedded: Option<Arc<EmbeddedCluster>>,
}

impl EventBus {
    /// The bus of the brokers `args` names. Nothing is contacted yet: clients connect lazily.
    pub fn connect(args: &KafkaArgs) -> Result<Self, ConnectError> {
        if args.kafka_brokers.starts_with(MOCK_SCHEME) {
            return Err(ConnectError::InProcessOnly);
        }
        Ok(Self::with(args, args.kafka_brokers.clone(), None))
    }

    /// A fresh embedded cluster (librdkafka's mock cluster) carrying `args`' topics.
    pub fn embedded(args: &KafkaArgs) -> Result<Self, KafkaError> {
        let cluster = EmbeddedCluster::start()?;
        let bootstrap_servers = cluster.bootstrap_servers().to_owned();
        Ok(Self::with(args, bootstrap_servers, Some(Arc::new(cluster))))
    }

    fn with(
        args: &KafkaArgs,
        bootstrap_servers: String,
        embedded: Option<Arc<EmbeddedCluster>>,
    ) -> Self {
        Self {
            bootstrap_servers,
            topic: args.kafka_topic.clone(),
            order_events_topic: args.kafka_order_events_topic.clone(),
            dead_letter_topic: args.kafka_dlq_topic.clone(),
            partitions: args.kafka_topic_partitions,
            retention: args.topic_retention(),
            producer_queue_messages: args.kafka_producer_queue_messages,
            producer_queue_kbytes: args.kafka_producer_queue_kbytes,
            embedded,
        }
    }

    /// The topic of reservation events.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic of order transitions.
    pub fn order_events_topic(&self) -> &str {
        &self.order_events_topic
    }

    /// The topic that carries `stream`.
    pub fn topic_of(&self, stream: Stream) -> &str {
        match stream {
            Stream::Reservations => &self.topic,
            Stream::OrderEvents => &self.order_events_topic,
        }
    }

    /// What a message of `topic` carries, if it is one of the bus's event topics.
    pub fn stream_of(&self, topic: &str) -> Option<Stream> {
        [Stream::Reservations, Stream::OrderEvents]
            .into_iter()
            .find(|stream| self.topic_of(*stream) == topic)
    }

    /// The topic of messages no consumer could process.
    pub fn dead_letter_topic(&self) -> &str {
        &self.dead_letter_topic
    }

    /// Partitions of the reservation and order-event topics when a service creates it.
    pub fn partitions(&self) -> i32 {
        i32::from(self.partitions.get())
    }

    /// How long the reservation and order-event topics keep their events (`retention.ms`).
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// How long the dead-letter topic keeps its events: four times the event topics (12 days
    /// by default), so a poison message an operator has to look at survives a long weekend
    /// and the investigation after it, in proportion to how long this deployment keeps events.
    pub fn dead_letter_retention(&self) -> Duration {
        self.retention * DEAD_LETTER_RETENTION_FACTOR
    }

    /// What `bootstrap.servers` is set to: the brokers, or the embedded cluster's address.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Settings every client of this deployment starts from.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config
    }

    /// Settings of the idempotent producer used by the gateway, the reconciler and
    /// dead-lettering.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            // A few milliseconds of batching turns a stampede into few large requests.
            .set("linger.ms", "5")
            // Give up on a message after 8 s, before the reconciler's default minimum age
            // (10 s): the reconciler then re-publishes only what this producer has given up
            // on, and never piles a second copy into this queue.
            .set("message.timeout.ms", "8000")
            // A bounded queue (librdkafka's default holds up to 1 GB): what does not fit is
            // refused at once and stays in the outbox, exactly like a publish that failed.
            .set(
                "queue.buffering.max.messages",
                self.producer_queue_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                self.producer_queue_kbytes.to_string(),
            );
        config
    }

    /// Creates the reservation, order-event and dead-letter topics unless they exist, and returns
    /// once the broker lists them with partitions. (A topic a producer's metadata request
    /// created first keeps the broker's default partition count and retention; that is
    /// accepted. An existing topic's retention is left as its operator set it.)
    ///
    /// Each topic's retention is set explicitly ([`Self::retention`],
    /// [`Self::dead_letter_retention`], and a segment of half of it) rather than left to the
    /// broker's defaults, because the dedupe records of the workers are sized against it.
    ///
    /// The wait matters to a consumer started beside the process that creates the topics: a
    /// broker may answer "already exists" while the creation is still under way, and a consumer
    /// that subscribes then finds no such topic and looks again only at its next metadata
    /// refresh, minutes later (found by `scripts/chaos`: an SMS worker idle for a whole run).
    pub async fn ensure_topics(&self) -> Result<(), KafkaError> {
        let events = TopicRetention::of(self.retention);
        let dead_letters = TopicRetention::of(self.dead_letter_retention());
        let topics = [
            (self.topic.as_str(), self.partitions(), &events),
            (self.order_events_topic.as_str(), self.partitions(), &events),
            (self.dead_letter_topic.as_str(), 1, &dead_letters),
        ];
        if let Some(cluster) = &self.embedded {
            // The embedded cluster does not answer CreateTopics; its own API creates them
            // (without a retention: it lives as long as its process).
            for (topic, partitions, _) in topics {
                cluster.create_topic(topic, partitions).await?;
            }
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(topic, partitions, retention)| {
                NewTopic::new(topic, *partitions, TopicReplication::Fixed(1))
                    .set("retention.ms", &retention.retention_ms)
                    .set("segment.ms", &retention.segment_ms)
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    tracing::error!(topic, %code, "could not create topic");
                    return Err(KafkaError::AdminOp(code));
                }
            }
        }
        for (topic, _, _) in topics {
            wait_until_listed(&admin, topic).await?;
        }
        Ok(())
    }
}

/// A topic's `retention.ms` and `segment.ms`, as the broker takes them (milliseconds, text).
///
/// The broker deletes whole segments, and only once a segment was rolled, so an event stays up
/// to `retention.ms + segment.ms`; Kafka's default `segment.ms` (7 days) would more than
/// double a 3-day retention. Half the retention bounds an event's stay at one and a half times
/// it, which is what the dedupe lifetimes are checked against
/// ([`crate::config::KafkaArgs::require_outlives_topics`]).
struct TopicRetention {
    retention_ms: String,
    segment_ms: String,
}

impl TopicRetention {
    fn of(retention: Duration) -> Self {
        Self {
            retention_ms: retention.as_millis().to_string(),
            segment_ms: (retention / 2).as_millis().to_string(),
        }
    }
}

/// Polls the broker's metadata until it lists `topic` with partitions (10 s at most; a
/// blocking call, made once at start).
async fn wait_until_listed(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<(), KafkaError> {
    let give_up_at = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let listed = metadata
            .topics()
            .iter()
            .any(|t| t.error().is_none() && !t.partitions().is_empty());
        if listed {
            return Ok(());
        }
        if tokio::time::Instant::now() > give_up_at {
            return Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
