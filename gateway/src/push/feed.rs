//! Every transition, from the order-event topic, to this gateway's [`OrderWatchers`].
//!
//! Why the topic and not Redis pub/sub: the transitions are on it already, written through the
//! outbox, so every one of them arrives, whichever process made it (an order worker, the
//! expiry sweep, another gateway's payment) and even after this gateway lost its connection
//! for a while; pub/sub would drop what it sent while a subscriber was away. The cost is the
//! relay's beat (a fraction of a second), which a person watching a page does not notice.
//!
//! Each gateway must see every transition, so the feed is not a consumer group member (a
//! group would split the partitions between the gateways): it assigns itself every partition,
//! starting at the end, and commits nothing. What happened before it started is not its
//! business: a stream reads the order's current status from the ledger when it opens.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::event::TransitionEvent;
use shared::kafka::EventBus;
use tokio_util::sync::CancellationToken;

use super::watchers::OrderWatchers;

/// How long one metadata request may take, and the pause after a failed one.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Reads the order-event topic into `watchers` until `stop`.
pub async fn run(bus: EventBus, watchers: Arc<OrderWatchers>, stop: CancellationToken) {
    let consumer = match reader(&bus) {
        Ok(consumer) => Arc::new(consumer),
        Err(error) => {
            tracing::error!(%error, "cannot create the order-event reader; streams fall back to their resync");
            return;
        }
    };
    let topic = bus.order_events_topic().to_owned();
    tokio::select! {
        () = stop.cancelled() => return,
        () = assign_every_partition(&consumer, &topic) => {}
    }
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => {
                match TransitionEvent::from_json(message.payload().unwrap_or_default()) {
                    Ok(event) => watchers.notify(&event.order_id, event.status),
                    Err(error) => {
                        tracing::debug!(%error, "skipping a message that is no transition");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading the order-event topic failed; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// A consumer that reads without a group: a `group.id` is set because librdkafka wants one,
/// but nothing joins, stores or commits under it.
fn reader(bus: &EventBus) -> rdkafka::error::KafkaResult<StreamConsumer> {
    bus.client_config()
        .set(
            "group.id",
            format!("gateway-push-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()
}

/// Assigns every partition of `topic` at its end, once the topic exists (the gateway may
/// start before it does).
async fn assign_every_partition(consumer: &Arc<StreamConsumer>, topic: &str) {
    loop {
        let partitions = {
            let (consumer, topic) = (Arc::clone(consumer), topic.to_owned());
            tokio::task::spawn_blocking(move || partition_count(&consumer, &topic)).await
        };
        match partitions {
            Ok(Ok(count)) if count > 0 => {
                let mut assignment = TopicPartitionList::new();
                for partition in 0..count {
                    assignment
                        .add_partition_offset(topic, partition, Offset::End)
                        .expect("a partition of a fresh list");
                }
                match consumer.assign(&assignment) {
                    Ok(()) => {
                        tracing::info!(
                            topic,
                            partitions = count,
                            "following every order transition"
                        );
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "assigning the order-event partitions failed");
                    }
                }
            }
            Ok(Ok(_)) => tracing::debug!(topic, "the order-event topic does not exist yet"),
            Ok(Err(error)) => tracing::warn!(%error, "no metadata for the order-event topic yet"),
            Err(error) => tracing::warn!(%error, "the metadata request panicked"),
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

fn partition_count(consumer: &StreamConsumer, topic: &str) -> rdkafka::error::KafkaResult<i32> {
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32))
}
