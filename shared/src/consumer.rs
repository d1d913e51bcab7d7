//! The one consumer loop, used by all three workers.
//!
//! At-least-once delivery, made effectively-once by idempotent handlers:
//! - an offset is stored only after the handler succeeded for the message, or after the message
//!   was routed to the dead-letter topic (`enable.auto.offset.store=false`); stored offsets are
//!   committed every second and once more, synchronously, on shutdown;
//! - a retryable failure (database down, provider timeout) backs off exponentially (capped) and
//!   retries the same batch without storing anything, so lag grows and nothing is skipped;
//! - a message that can never succeed (undecodable, or out of attempts when the worker sets a
//!   budget) goes to the dead-letter topic with the reason in its headers, then is stored;
//! - `select! { biased; shutdown … }` stops taking messages on SIGTERM, the in-flight batch
//!   finishes, the final commit happens, and `run` returns.
//!
//! Consumer lag per group and partition comes from librdkafka's statistics callback.
//!
//! A known limit, kept for readability: while a batch is being retried the loop does not poll,
//! so the lag gauge pauses and an outage longer than `max.poll.interval.ms` (5 min) makes the
//! instance leave its group and rejoin afterwards. Nothing is lost either way (no offset was
//! stored); vector's Kafka source shows the pause-partitions-and-keep-polling alternative.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaArgs;
use crate::event::ReservationEvent;
use crate::kafka::{TRACEPARENT_HEADER, client_config, header, producer_config, trace_id_of};

/// Messages a group finished with, by outcome (`processed`, `dead_lettered`).
pub const CONSUMED_TOTAL: &str = "seckill_consumer_messages_total";
/// Failed handler attempts that will be retried.
pub const RETRIES_TOTAL: &str = "seckill_consumer_retries_total";
/// Time to handle one batch, retries included.
pub const BATCH_SECONDS: &str = "seckill_consumer_batch_seconds";
/// Messages between a group's committed offset and the partition's end.
pub const LAG_MESSAGES: &str = "seckill_consumer_lag_messages";
/// Non-fatal consumer errors (broker unreachable, rebalance hiccups), waited out.
pub const CONSUMER_ERRORS_TOTAL: &str = "seckill_consumer_errors_total";

/// Pause after a non-fatal consumer error before receiving again.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Header naming why a message was dead-lettered.
pub const DLQ_REASON_HEADER: &str = "x-dlq-reason";
/// Header naming the consumer group that gave up on a message.
pub const DLQ_GROUP_HEADER: &str = "x-dlq-group";

/// A decoded event and the trace context it travelled with.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub event: ReservationEvent,
    pub traceparent: Option<String>,
}

/// How a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Infrastructure the worker owns is down (PostgreSQL, Redis): back off and retry the batch
    /// for as long as it takes. Never counts against the attempt budget, so an outage can
    /// only delay events, never dead-letter them.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// This attempt failed and may succeed later (an SMS provider's 503): back off and retry;
    /// counts against the worker's attempt budget.
    #[error("retryable: {0}")]
    Retryable(String),
    /// These events can never succeed: dead-letter them and carry on with the others.
    #[error("permanent failure of {} event(s): {reason}", .event_ids.len())]
    Permanent {
        event_ids: Vec<uuid::Uuid>,
        reason: String,
    },
}

/// A worker's business logic. Must be idempotent on `event_id`: after a crash or a rebalance
/// the same event arrives again.
pub trait Handler: Send + Sync {
    fn handle(&self, batch: &[Delivery]) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// How one worker drives the loop.
#[derive(Clone, Debug)]
pub struct LoopSettings {
    /// The consumer group (also the metrics label).
    pub group: String,
    /// Most messages handed to the handler at once.
    pub batch_size: usize,
    /// How long to wait for a batch to fill once its first message arrived.
    pub batch_wait: Duration,
    /// `Retryable` failures after which a batch is dead-lettered; `None` retries forever.
    /// (`Unavailable` failures never count.)
    pub max_attempts: Option<u32>,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Publishes consumer lag from librdkafka's periodic statistics.
struct LagReporter {
    group: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                // Skip librdkafka's pseudo-partition -1. A partition this instance no longer
                // owns (after a rebalance) reports 0, so the group's sum counts each lag once;
                // -1 means "not known yet".
                if *partition >= 0 {
                    let lag = if stats.desired {
                        stats.consumer_lag.max(0)
                    } else {
                        0
                    };
                    gauge!(LAG_MESSAGES, "group" => self.group.clone(), "partition" => partition.to_string())
                        .set(lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

/// The loop's resources: the consumer, the dead-letter producer, the settings.
pub struct ConsumerLoop<H> {
    consumer: StreamConsumer<LagReporter>,
    dead_letters: FutureProducer,
    dlq_topic: String,
    settings: LoopSettings,
    handler: H,
}

impl<H: Handler> ConsumerLoop<H> {
    /// Subscribes `settings.group` to the reservation topic. Connects lazily.
    pub fn new(kafka: &KafkaArgs, settings: LoopSettings, handler: H) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer<LagReporter> = client_config(kafka)?
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A killed instance's partitions move to the others after 10 s, not librdkafka's 45.
            .set("session.timeout.ms", "10000")
            .set("statistics.interval.ms", "5000")
            .create_with_context(LagReporter {
                group: settings.group.clone(),
            })?;
        consumer.subscribe(&[&kafka.kafka_topic])?;
        // From zero, so the first burst shows in `rate()` (see the gateway's purchase counters).
        for outcome in ["processed", "dead_lettered"] {
            counter!(CONSUMED_TOTAL, "group" => settings.group.clone(), "outcome" => outcome)
                .absolute(0);
        }
        Ok(Self {
            consumer,
            dead_letters: producer_config(kafka)?.create()?,
            dlq_topic: kafka.kafka_dlq_topic.clone(),
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
            let finished = self.process(&batch, &shutdown).await;
            histogram!(BATCH_SECONDS, "group" => group.to_owned()).record(started.elapsed());
            if finished {
                self.store_offsets(&batch);
            } else {
                break; // shut down while retrying: nothing stored, the batch is redelivered
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
                    if !sleep_unless_shutdown(CONSUMER_ERROR_PAUSE, shutdown).await {
                        return Ok(None);
                    }
                }
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.settings.batch_wait;
        while batch.len() < self.settings.batch_size {
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

    /// Handles a batch until it succeeded or was dead-lettered (`true`), or until shutdown
    /// interrupts a retry (`false`).
    async fn process(&self, batch: &[BorrowedMessage<'_>], shutdown: &CancellationToken) -> bool {
        let group = self.settings.group.as_str();
        let mut pending = Vec::with_capacity(batch.len());
        for message in batch {
            match decode(message) {
                Ok(delivery) => pending.push((delivery, message)),
                Err(reason) => {
                    if !self.dead_letter(message, &reason, shutdown).await {
                        return false;
                    }
                }
            }
        }
        // `attempt` paces the back-off; `failed_attempts` spends the retry budget.
        let (mut attempt, mut failed_attempts) = (0u32, 0u32);
        while !pending.is_empty() {
            let deliveries: Vec<Delivery> = pending.iter().map(|(d, _)| d.clone()).collect();
            match self.handler.handle(&deliveries).await {
                Ok(()) => {
                    counter!(CONSUMED_TOTAL, "group" => group.to_owned(), "outcome" => "processed")
                        .increment(pending.len() as u64);
                    for (delivery, _) in &pending {
                        let trace_id = delivery.traceparent.as_deref().and_then(trace_id_of);
                        tracing::debug!(group, trace_id, order_id = %delivery.event.order_id, "processed");
                    }
                    return true;
                }
                Err(HandlerError::Permanent { event_ids, reason })
                    if pending
                        .iter()
                        .any(|(d, _)| event_ids.contains(&d.event.event_id)) =>
                {
                    let (poison, rest): (Vec<_>, Vec<_>) = pending
                        .into_iter()
                        .partition(|(d, _)| event_ids.contains(&d.event.event_id));
                    for (_, message) in &poison {
                        if !self.dead_letter(message, &reason, shutdown).await {
                            return false;
                        }
                    }
                    pending = rest;
                }
                Err(error) => {
                    // Unavailable, Retryable, or a Permanent naming none of these events (a
                    // handler bug): back off rather than spin.
                    let reason = error.to_string();
                    attempt += 1;
                    failed_attempts += u32::from(matches!(error, HandlerError::Retryable(_)));
                    if self
                        .settings
                        .max_attempts
                        .is_some_and(|max| failed_attempts >= max)
                    {
                        let reason = format!("gave up after {failed_attempts} attempts: {reason}");
                        for (_, message) in &pending {
                            if !self.dead_letter(message, &reason, shutdown).await {
                                return false;
                            }
                        }
                        return true;
                    }
                    counter!(RETRIES_TOTAL, "group" => group.to_owned()).increment(1);
                    let delay = self.backoff(attempt);
                    tracing::warn!(group, attempt, ?delay, reason, "batch failed; retrying");
                    if !sleep_unless_shutdown(delay, shutdown).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.settings
            .initial_backoff
            .saturating_mul(factor)
            .min(self.settings.max_backoff)
    }

    /// Sends the message, as it was, to the dead-letter topic; retries until the broker took
    /// it (`true`) or shutdown (`false`), since storing the offset first would lose it.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let group = self.settings.group.as_str();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: DLQ_REASON_HEADER,
                value: Some(reason),
            })
            .insert(Header {
                key: DLQ_GROUP_HEADER,
                value: Some(group),
            });
        if let Some(traceparent) = header(message, TRACEPARENT_HEADER) {
            headers = headers.insert(Header {
                key: TRACEPARENT_HEADER,
                value: Some(traceparent.as_str()),
            });
        }
        let mut attempt = 0;
        loop {
            let mut record = FutureRecord::to(&self.dlq_topic).headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self
                .dead_letters
                .send(record, Duration::from_secs(10))
                .await
            {
                Ok(_) => {
                    counter!(CONSUMED_TOTAL, "group" => group.to_owned(), "outcome" => "dead_lettered")
                        .increment(1);
                    let traceparent = header(message, TRACEPARENT_HEADER);
                    tracing::error!(
                        group,
                        reason,
                        partition = message.partition(),
                        offset = message.offset(),
                        trace_id = traceparent.as_deref().and_then(trace_id_of),
                        "message sent to the dead-letter topic"
                    );
                    return true;
                }
                Err((error, _)) => {
                    attempt += 1;
                    tracing::warn!(group, %error, "dead-letter publish failed; retrying");
                    if !sleep_unless_shutdown(self.backoff(attempt), shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Stores, per partition, the offset after the batch's last message.
    fn store_offsets(&self, batch: &[BorrowedMessage<'_>]) {
        let mut last: HashMap<(&str, i32), i64> = HashMap::new();
        for message in batch {
            let offset = last
                .entry((message.topic(), message.partition()))
                .or_insert(-1);
            *offset = (*offset).max(message.offset());
        }
        for ((topic, partition), offset) in last {
            // Fails only if the partition was revoked meanwhile; its new owner redelivers.
            if let Err(error) = self.consumer.store_offset(topic, partition, offset) {
                tracing::info!(%error, partition, "offset not stored (partition revoked?)");
            }
        }
    }
}

fn decode(message: &BorrowedMessage<'_>) -> Result<Delivery, String> {
    let payload = message.payload().ok_or("the message has no payload")?;
    let event = ReservationEvent::from_json(payload).map_err(|error| error.to_string())?;
    Ok(Delivery {
        event,
        traceparent: header(message, TRACEPARENT_HEADER),
    })
}

/// Sleeps for `delay`; `false` if shutdown came first.
async fn sleep_unless_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}
