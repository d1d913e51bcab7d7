//! The dead-letter topic: where a message goes, as it was, when no attempt can handle it,
//! with headers naming why, which group gave up, and the topic it came from (one dead-letter
//! topic serves both event topics).

use std::time::Duration;

use metrics::counter;
use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::batch::{DeadLetterSink, Step, sleep_unless_shutdown};
use super::policy::RetryPolicy;
use super::{CONSUMED_TOTAL, DEAD_LETTERED, DLQ_GROUP_HEADER, DLQ_REASON_HEADER, DLQ_TOPIC_HEADER};
use crate::kafka::{EventBus, TRACEPARENT_HEADER, header, trace_id_of};

/// How long one dead-letter publish may take before it is tried again.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends messages to the bus's dead-letter topic on behalf of one consumer group.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    group: String,
    /// Paces the retries of a publish the broker did not take.
    retry: RetryPolicy,
}

impl DeadLetters {
    pub fn new(bus: &EventBus, group: &str, retry: RetryPolicy) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: bus.producer_config().create()?,
            topic: bus.dead_letter_topic().to_owned(),
            group: group.to_owned(),
            retry,
        })
    }
}

impl<'a> DeadLetterSink<&BorrowedMessage<'a>> for DeadLetters {
    /// Retries until the broker took the message (`Done`), or shutdown (`Interrupted`):
    /// storing the offset of a message that was not taken would lose it.
    async fn dead_letter(
        &self,
        message: &&BorrowedMessage<'a>,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> Step {
        let group = self.group.as_str();
        let traceparent = header(*message, TRACEPARENT_HEADER);
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: DLQ_REASON_HEADER,
                value: Some(reason),
            })
            .insert(Header {
                key: DLQ_GROUP_HEADER,
                value: Some(group),
            })
            .insert(Header {
                key: DLQ_TOPIC_HEADER,
                value: Some(message.topic()),
            });
        if let Some(traceparent) = &traceparent {
            headers = headers.insert(Header {
                key: TRACEPARENT_HEADER,
                value: Some(traceparent.as_str()),
            });
        }
        let mut failed = 0;
        loop {
            let mut record = FutureRecord::to(&self.topic).headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self.producer.send(record, SEND_TIMEOUT).await {
                Ok(_) => {
                    counter!(CONSUMED_TOTAL, "group" => group.to_owned(), "outcome" => DEAD_LETTERED)
                        .increment(1);
                    tracing::error!(
                        group,
                        reason,
                        partition = message.partition(),
                        offset = message.offset(),
                        trace_id = traceparent.as_deref().and_then(trace_id_of),
                        "message sent to the dead-letter topic"
                    );
                    return Step::Done;
                }
                Err((error, _)) => {
                    failed += 1;
                    tracing::warn!(group, %error, "dead-letter publish failed; retrying");
                    let delay = self.retry.backoff(failed);
                    if sleep_unless_shutdown(delay, shutdown).await == Step::Interrupted {
                        return Step::Interrupted;
                    }
                }
            }
        }
    }
}
