//! Publishing events from an outbox, and learning which ones the broker acknowledged.
//!
//! `publish` only enqueues: librdkafka batches, sends and retries on its own thread, so the
//! purchase path never waits for the broker. When the broker acknowledges a message, what
//! names it in the outbox comes back on a channel and [`record_acknowledgements`] writes it
//! to the ledger in batches: a reservation's order id leaves the sale's `unpublished` set, a
//! transition event leaves the transition outbox. Whatever is never acknowledged (the broker
//! was down, the process died) stays in the ledger, where the reconciler (reservations) or
//! the relay (transitions) finds and publishes it again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::event::{ReservationEvent, Stream, TransitionEvent};
use crate::ids::OrderId;
use crate::kafka::{EventBus, TRACEPARENT_HEADER};
use crate::stock::{Outbox, TransitionId};

/// Events the broker acknowledged.
pub const EVENTS_ACKNOWLEDGED_TOTAL: &str = "seckill_events_acknowledged_total";
/// Events the producer could not hand to the broker (enqueue or delivery failed); their
/// outbox entries wait for the reconciler.
pub const PUBLISH_FAILURES_TOTAL: &str = "seckill_publish_failures_total";

/// Most acknowledgements written to Redis in one round trip.
const ACK_BATCH: usize = 1024;

/// What names a published event in its outbox, and how the broker's acknowledgement of it
/// is recorded in the ledger.
pub trait Acknowledgement: std::fmt::Display + Send + Sync + 'static + Sized {
    /// Records that the broker acknowledged these events.
    fn record(
        ledger: &dyn Outbox,
        batch: &[Self],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A reservation is named by its order id: it moves from `unpublished` to `acknowledged`.
impl Acknowledgement for OrderId {
    async fn record(ledger: &dyn Outbox, batch: &[Self]) -> Result<(), StoreError> {
        ledger.mark_published(batch).await
    }
}

/// A transition is named by its order and status: it leaves the transition outbox.
impl Acknowledgement for TransitionId {
    async fn record(ledger: &dyn Outbox, batch: &[Self]) -> Result<(), StoreError> {
        ledger.mark_transitions_published(batch).await
    }
}

impl std::fmt::Display for TransitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.event_id())
    }
}

/// Routes each delivery report to the acknowledgement channel.
struct AckContext<K> {
    acknowledged: mpsc::UnboundedSender<K>,
}

impl<K: Acknowledgement> ClientContext for AckContext<K> {}

impl<K: Acknowledgement> ProducerContext for AckContext<K> {
    type DeliveryOpaque = Box<K>;

    fn delivery(&self, result: &DeliveryResult<'_>, acknowledged: Box<K>) {
        match result {
            Ok(_) => {
                // The receiver lives as long as the process; if it is gone we are shutting down
                // and the entry stays in the outbox for the next publish.
                let _ = self.acknowledged.send(*acknowledged);
            }
            Err((error, message)) => {
                counter!(PUBLISH_FAILURES_TOTAL, "stage" => "delivery").increment(1);
                tracing::warn!(%error, event = %acknowledged, topic = message.topic(),
                    "broker did not take the event; it stays in the outbox and is published again");
            }
        }
    }
}

/// An idempotent Kafka producer of one topic's events, taken from an outbox whose entries are
/// named by `K`.
pub struct Publisher<K: Acknowledgement = OrderId> {
    producer: Arc<ThreadedProducer<AckContext<K>>>,
    topic: Arc<str>,
}

impl<K: Acknowledgement> Clone for Publisher<K> {
    fn clone(&self) -> Self {
        Self {
            producer: Arc::clone(&self.producer),
            topic: Arc::clone(&self.topic),
        }
    }
}

impl<K: Acknowledgement> Publisher<K> {
    /// The producer of `stream`'s topic, and the channel on which acknowledged entries arrive
    /// (hand it to [`record_acknowledgements`]). Connects lazily; creation succeeds while
    /// Kafka is down.
    pub fn new(
        bus: &EventBus,
        stream: Stream,
    ) -> Result<(Self, mpsc::UnboundedReceiver<K>), KafkaError> {
        let (acknowledged, receiver) = mpsc::unbounded_channel();
        let producer = bus
            .producer_config()
            .create_with_context(AckContext { acknowledged })?;
        let publisher = Self {
            producer: Arc::new(producer),
            topic: bus.topic_of(stream).into(),
        };
        Ok((publisher, receiver))
    }

    /// Enqueues `payload` under the message key `key`, with the trace context if there is
    /// one. Never blocks. An error means the event was not enqueued; it stays in its outbox.
    fn send(
        &self,
        key: &str,
        entry: K,
        payload: &str,
        traceparent: Option<&str>,
    ) -> Result<(), KafkaError> {
        let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new(entry))
            .key(key)
            .payload(payload);
        if let Some(traceparent) = traceparent {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: TRACEPARENT_HEADER,
                value: Some(traceparent),
            }));
        }
        self.producer.send(record).map_err(|(error, _)| {
            counter!(PUBLISH_FAILURES_TOTAL, "stage" => "enqueue").increment(1);
            error
        })
    }

    /// Waits up to `timeout` for every queued event to be delivered (or to fail).
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "some events were not delivered before shutdown; the reconciler will re-publish them");
        }
    }

    /// Whether a broker answers a metadata request for the topic within `timeout`.
    pub async fn is_reachable(&self, timeout: Duration) -> bool {
        let producer = Arc::clone(&self.producer);
        let topic = Arc::clone(&self.topic);
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

impl Publisher<OrderId> {
    /// Enqueues `payload` (the JSON of `event`, as the outbox holds it) keyed by user id.
    pub fn publish(
        &self,
        event: &ReservationEvent,
        payload: &str,
        traceparent: &str,
    ) -> Result<(), KafkaError> {
        let entry = event.order_id.clone();
        self.send(event.user_id.as_str(), entry, payload, Some(traceparent))
    }
}

impl Publisher<TransitionId> {
    /// Enqueues `payload` (the JSON of `event`, as the transition outbox holds it) keyed by
    /// order id, so one order's transitions from one publisher stay in order.
    pub fn publish(&self, event: &TransitionEvent, payload: &str) -> Result<(), KafkaError> {
        let entry = TransitionId {
            order_id: event.order_id.clone(),
            status: event.status,
        };
        self.send(event.order_id.as_str(), entry, payload, None)
    }
}

/// Drains acknowledgements into the ledger until the channel closes (every producer clone is
/// dropped). Batches whatever has arrived, so a stampede costs few Redis round trips.
pub async fn record_acknowledgements<K: Acknowledgement>(
    mut acknowledged: mpsc::UnboundedReceiver<K>,
    ledger: Arc<dyn Outbox>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    while acknowledged.recv_many(&mut batch, ACK_BATCH).await > 0 {
        match K::record(ledger.as_ref(), &batch).await {
            Ok(()) => {
                counter!(EVENTS_ACKNOWLEDGED_TOTAL).increment(batch.len() as u64);
            }
            Err(error) => tracing::warn!(%error, count = batch.len(),
                "could not record acknowledgements; these events may be published again (consumers deduplicate)"),
        }
        batch.clear();
    }
}
