//! Publishing reservation events, and learning which ones the broker acknowledged.
//!
//! `publish` only enqueues: librdkafka batches, sends and retries on its own thread, so the
//! purchase path never waits for the broker. When the broker acknowledges a message, its
//! order id comes back on a channel and [`record_acknowledgements`] removes it from the
//! sale's `unpublished` set in batches. Whatever is never acknowledged (the broker was down,
//! the gateway died) stays in that set, where the reconciler finds and re-publishes it.

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use tokio::sync::mpsc;

use crate::event::ReservationEvent;
use crate::ids::OrderId;
use crate::kafka::{EventBus, TRACEPARENT_HEADER};
use crate::stock::StockLedger;

/// Events the broker acknowledged.
pub const EVENTS_ACKNOWLEDGED_TOTAL: &str = "seckill_events_acknowledged_total";
/// Events the producer could not hand to the broker (enqueue or delivery failed); their
/// outbox entries wait for the reconciler.
pub const PUBLISH_FAILURES_TOTAL: &str = "seckill_publish_failures_total";

/// Most acknowledgements written to Redis in one round trip.
const ACK_BATCH: usize = 1024;

/// Routes each delivery report to the acknowledgement channel.
struct AckContext {
    acknowledged: mpsc::UnboundedSender<OrderId>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<OrderId>;

    fn delivery(&self, result: &DeliveryResult<'_>, order_id: Box<OrderId>) {
        match result {
            Ok(_) => {
                // The receiver lives as long as the process; if it is gone we are shutting down
                // and the reconciler will cover the entry.
                let _ = self.acknowledged.send(*order_id);
            }
            Err((error, message)) => {
                counter!(PUBLISH_FAILURES_TOTAL, "stage" => "delivery").increment(1);
                tracing::warn!(%error, order_id = %order_id, topic = message.topic(),
                    "broker did not take the event; the reconciler will re-publish it");
            }
        }
    }
}

/// An idempotent Kafka producer of reservation events.
#[derive(Clone)]
pub struct Publisher {
    producer: Arc<ThreadedProducer<AckContext>>,
    topic: Arc<str>,
}

impl Publisher {
    /// The producer, and the channel on which acknowledged order ids arrive (hand it to
    /// [`record_acknowledgements`]). Connects lazily; creation succeeds while Kafka is down.
    pub fn new(bus: &EventBus) -> Result<(Self, mpsc::UnboundedReceiver<OrderId>), KafkaError> {
        let (acknowledged, receiver) = mpsc::unbounded_channel();
        let producer = bus
            .producer_config()
            .create_with_context(AckContext { acknowledged })?;
        let publisher = Self {
            producer: Arc::new(producer),
            topic: bus.topic().into(),
        };
        Ok((publisher, receiver))
    }

    /// Enqueues `payload` (the JSON of `event`) keyed by user id. Never blocks. An error means
    /// the event was not enqueued; its outbox entry stays for the reconciler.
    pub fn publish(
        &self,
        event: &ReservationEvent,
        payload: &str,
        traceparent: &str,
    ) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new().insert(Header {
            key: TRACEPARENT_HEADER,
            value: Some(traceparent),
        });
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(event.order_id.clone()))
            .key(event.user_id.as_str())
            .payload(payload)
            .headers(headers);
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

/// Drains acknowledgements into the ledger until the channel closes (every producer clone is
/// dropped). Batches whatever has arrived, so a stampede costs few Redis round trips.
pub async fn record_acknowledgements(
    mut acknowledged: mpsc::UnboundedReceiver<OrderId>,
    ledger: Arc<dyn StockLedger>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    while acknowledged.recv_many(&mut batch, ACK_BATCH).await > 0 {
        match ledger.mark_published(&batch).await {
            Ok(()) => {
                counter!(EVENTS_ACKNOWLEDGED_TOTAL).increment(batch.len() as u64);
            }
            Err(error) => tracing::warn!(%error, count = batch.len(),
                "could not record acknowledgements; the reconciler may re-publish these events (consumers deduplicate)"),
        }
        batch.clear();
    }
}
