//! The one consumer loop, used by every worker.
//!
//! At-least-once delivery, made effectively-once by idempotent handlers:
//! - an offset is stored only after the handler succeeded for the message, or after the message
//!   was routed to the dead-letter topic (`enable.auto.offset.store=false`); stored offsets are
//!   committed every second and once more, synchronously, on shutdown;
//! - a retryable failure (database down, provider timeout) backs off exponentially (capped) and
//!   retries the same batch without storing anything, so lag grows and nothing is skipped;
//! - a message that can never succeed (undecodable, or out of attempts when the worker sets a
//!   budget) goes to the dead-letter topic with the reason in its headers, then is stored;
//! - `select! { biased; shutdown … }` stops taking messages on shutdown, the in-flight batch
//!   finishes, the final commit happens, and `run` returns.
//!
//! Policy apart from mechanism, one file each:
//!
//! | module | concern |
//! | --- | --- |
//! | [`handler`] | the contract: [`Handler`], [`Delivery`], [`HandlerError`] |
//! | [`policy`] | the decision after each attempt (store, dead-letter, retry after d): a pure function |
//! | [`batch`] | one batch, performing those decisions until it is settled or shutdown interrupts |
//! | [`dead_letters`] | the dead-letter publisher |
//! | [`context`] | what librdkafka reports besides messages: lag, new assignments |
//! | [`starts`] | where a new partition starts: a loud warning when a group lost its offsets |
//! | this file | Kafka: subscribing, gathering batches, storing offsets, the final commit |
//!
//! A known limit, kept for readability: while a batch is being retried the loop does not poll,
//! so the lag gauge pauses and an outage longer than `max.poll.interval.ms` (5 min) makes the
//! instance leave its group and rejoin afterwards. Nothing is lost either way (no offset was
//! stored); vector's Kafka source shows the pause-partitions-and-keep-polling alternative.

pub mod batch;
pub mod context;
pub mod dead_letters;
pub mod handler;
pub mod policy;
pub mod starts;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use tokio_util::sync::CancellationToken;

use self::batch::{DeadLetterSink, Step, handle_batch, sleep_unless_shutdown};
use self::context::LoopContext;
use self::dead_letters::DeadLetters;
pub use self::handler::{Delivery, Handler, HandlerError};
pub use self::policy::RetryPolicy;
use crate::event::Consumed;
use crate::kafka::{EventBus, TRACEPARENT_HEADER, header};

/// Messages a group finished with, by outcome (`processed`, `dead_lettered`).
pub const CONSUMED_TOTAL: &str = "seckill_consumer_messages_total";
/// [`CONSUMED_TOTAL`]'s `outcome`: handled (or skipped as seen before) and committed.
pub const PROCESSED: &str = "processed";
/// [`CONSUMED_TOTAL`]'s `outcome`: given up on and sent to the dead-letter topic.
pub const DEAD_LETTERED: &str = "dead_lettered";
/// Failed handler attempts that will be retried.
pub const RETRIES_TOTAL: &str = "seckill_consumer_retries_total";
/// Time to handle one batch, retries included.
pub const BATCH_SECONDS: &str = "seckill_consumer_batch_seconds";
/// Messages between a group's committed offset and the partition's end.
pub const LAG_MESSAGES: &str = "seckill_consumer_lag_messages";
/// Partitions a group was assigned without a committed offset on a topic whose oldest events
/// were deleted: a new group on a long-lived topic, or a group whose offsets expired. See
/// [`starts`].
pub const PARTITIONS_STARTED_WITHOUT_OFFSET_TOTAL: &str =
    "seckill_consumer_partitions_started_without_offset_total";
/// Non-fatal consumer errors (broker unreachable, rebalance hiccups), waited out.
pub const CONSUMER_ERRORS_TOTAL: &str = "seckill_consumer_errors_total";

/// Header naming why a message was dead-lettered.
pub const DLQ_REASON_HEADER: &str = "x-dlq-reason";
/// Header naming the consumer group that gave up on a message.
pub const DLQ_GROUP_HEADER: &str = "x-dlq-group";
/// Header naming the topic a dead-lettered message came from.
pub const DLQ_TOPIC_HEADER: &str = "x-dlq-topic";

/// Pause after a non-fatal consumer error before receiving again.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// How one worker drives the loop.
#[derive(Clone, Debug)]
pub struct LoopSettings {
    /// The consumer group (also the metrics label).
    pub group: String,
    /// Most messages handed to the handler at once.
    pub batch_size: NonZeroUsize,
    /// How long to wait for a batch to fill once its first message arrived.
    pub batch_wait: Duration,
    /// What a failed attempt leads to.
    pub retry: RetryPolicy,
}

impl LoopSettings {
    /// Settings for a worker whose only dependency is a store of its own: batches of up to
    /// 500 events gathered for at most 20 ms, retried for as long as the store is down
    /// (back-off from 100 ms doubling to 10 s; outages are `Unavailable`, so no budget).
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            batch_size: NonZeroUsize::new(500).expect("500 > 0"),
            batch_wait: Duration::from_millis(20),
            retry: RetryPolicy {
                max_attempts: None,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
            },
        }
    }
}

/// The loop's resources: the consumer, the dead-letter producer, the settings, the handler.
pub struct ConsumerLoop<H> {
    consumer: StreamConsumer<LoopContext>,
    bus: EventBus,
    dead_letters: DeadLetters,
    settings: LoopSettings,
    handler: H,
}

impl<H: Handler> ConsumerLoop<H> {
    /// Subscribes `settings.group` to the topics of the handler's events. Connects lazily.
    pub fn new(bus: &EventBus, settings: LoopSettings, handler: H) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer<LoopContext> = bus
            .client_config()
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            // A group without committed offsets starts at the beginning of the topic: a
            // worker's first start must see what was published before it. (A new group added
            // later therefore reads the whole retained history once, and so does a group
            // whose offsets expired: the dedupe records absorb it, and `starts` says so.)
            .set("auto.offset.reset", "earliest")
            // A killed instance's partitions move to the others after 10 s, not librdkafka's 45.
            .set("session.timeout.ms", "10000")
            // A subscription that found no topic (subscribed before anyone created it) looks
            // again within 5 s, not librdkafka's 5 minutes (found by `scripts/chaos`).
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("statistics.interval.ms", "5000")
            .create_with_context(LoopContext::new(&settings.group))?;
        let topics: Vec<&str> = H::Event::STREAMS
            .iter()
            .map(|stream| bus.topic_of(*stream))
            .collect();
        consumer.subscribe(&topics)?;
        // From zero, so the first burst shows in `rate()` (see the gateway's purchase counters).
        for outcome in [PROCESSED, DEAD_LETTERED] {
            counter!(CONSUMED_TOTAL, "group" => settings.group.clone(), "outcome" => outcome)
                .absolute(0);
        }
        counter!(PARTITIONS_STARTED_WITHOUT_OFFSET_TOTAL, "group" => settings.group.clone())
            .absolute(0);
        Ok(Self {
            consumer,
            bus: bus.clone(),
            dead_letters: DeadLetters::new(bus, &settings.group, settings.retry.clone())?,
            settings,
            handler,
        })
    }

    /// Consumes until `shutdown` is cancelled, then finishes the batch in hand and commits.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KafkaError> {
        let group = self.settings.group.as_str();
        tracing::info!(group, "consumer started");
        while let Some(batch) = self.next_batch(&shutdown).await? {
            let started = Instant::now();
            let step = self.settle(&batch, &shutdown).await;
            histogram!(BATCH_SECONDS, "group" => group.to_owned()).record(started.elapsed());
            match step {
                Step::Done => self.store_offsets(&batch),
                // Nothing stored: the batch is delivered again, here or to another instance.
                Step::Interrupted => break,
            }
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(group, %error, "final commit failed; the group resumes from its last commit");
            }
        }
        tracing::info!(group, "consumer stopped");
        Ok(())
    }

    /// Waits for one message, then gathers more for up to `batch_wait`. `None` on shutdown.
    /// Consumer errors (a broker restarting, a topic not there yet) are logged and waited
    /// out; only a fatal one ends the loop.
    async fn next_batch(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<BorrowedMessage<'_>>>, KafkaError> {
        let first = loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(None),
                received = self.consumer.recv() => received,
            };
            match received {
                Ok(message) => break message,
                Err(error) => {
                    self.survive(error)?;
                    if sleep_unless_shutdown(CONSUMER_ERROR_PAUSE, shutdown).await
                        == Step::Interrupted
                    {
                        return Ok(None);
                    }
                }
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.settings.batch_wait;
        while batch.len() < self.settings.batch_size.get() {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message),
                Ok(Err(error)) => {
                    self.survive(error)?;
                    break; // handle what was gathered
                }
                Err(_) => break,
            }
        }
        Ok(Some(batch))
    }

    /// Logs a consumer error; returns it only if the consumer cannot go on.
    fn survive(&self, error: KafkaError) -> Result<(), KafkaError> {
        if matches!(error, KafkaError::MessageConsumptionFatal(_)) {
            return Err(error);
        }
        counter!(CONSUMER_ERRORS_TOTAL, "group" => self.settings.group.clone()).increment(1);
        tracing::warn!(group = self.settings.group, %error, "consumer error; carrying on");
        Ok(())
    }

    /// Dead-letters what cannot be decoded, then hands the rest to the handler until every
    /// message is settled (or shutdown interrupts).
    async fn settle(&self, batch: &[BorrowedMessage<'_>], shutdown: &CancellationToken) -> Step {
        let mut decoded = Vec::with_capacity(batch.len());
        for message in batch {
            match decode(&self.bus, message) {
                Ok(delivery) => decoded.push((delivery, message)),
                Err(reason) => {
                    let step = self
                        .dead_letters
                        .dead_letter(&message, &reason, shutdown)
                        .await;
                    if step == Step::Interrupted {
                        return step;
                    }
                }
            }
        }
        handle_batch(
            &self.handler,
            decoded,
            &self.settings.retry,
            &self.settings.group,
            &self.dead_letters,
            shutdown,
        )
        .await
    }

    /// Stores, per partition, the offset of the batch's last message.
    fn store_offsets(&self, batch: &[BorrowedMessage<'_>]) {
        let mut last: HashMap<(&str, i32), i64> = HashMap::new();
        for message in batch {
            let offset = last
                .entry((message.topic(), message.partition()))
                .or_insert(-1);
            *offset = (*offset).max(message.offset());
        }
        for ((topic, partition), offset) in last {
            // The message's own offset, not the next one: `store_offset` is librdkafka's
            // `rd_kafka_offset_store`, which records `offset + 1` itself, the next message to
            // read, and that is what Kafka commits. Passing `offset + 1` here would skip one
            // message per partition at every restart.
            // Fails only if the partition was revoked meanwhile; its new owner redelivers.
            if let Err(error) = self.consumer.store_offset(topic, partition, offset) {
                tracing::info!(%error, partition, "offset not stored (partition revoked?)");
            }
        }
    }
}

fn decode<E: Consumed>(
    bus: &EventBus,
    message: &BorrowedMessage<'_>,
) -> Result<Delivery<E>, String> {
    let payload = message.payload().ok_or("the message has no payload")?;
    let stream = bus
        .stream_of(message.topic())
        .ok_or_else(|| format!("topic {} carries no events of this bus", message.topic()))?;
    let event = E::decode(stream, payload).map_err(|error| error.to_string())?;
    Ok(Delivery {
        event,
        traceparent: header(message, TRACEPARENT_HEADER),
    })
}
