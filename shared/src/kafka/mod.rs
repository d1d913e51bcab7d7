//! Kafka plumbing every service shares: client settings, topic creation, trace headers.
//! `KAFKA_BROKERS=mock:` selects the embedded bus of [`mock`] instead of real brokers.
//!
//! The producer is idempotent (`enable.idempotence=true` implies `acks=all` and ordered,
//! de-duplicated retries per partition), so a broker hiccup never duplicates or reorders a
//! partition's events. Duplicates can still arise from the reconciler's re-publish; consumers
//! handle those by deduplicating on `event_id`.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message};
use uuid::Uuid;

use crate::config::KafkaArgs;

/// W3C trace-context header carried by every event: the gateway logs the trace id with the
/// purchase, and the consumer loop logs it with each processed event, so one purchase can be
/// followed across processes.
pub const TRACEPARENT_HEADER: &str = "traceparent";

pub mod mock;

/// Settings every client of this deployment starts from.
pub fn client_config(args: &KafkaArgs) -> Result<ClientConfig, KafkaError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers(&args.kafka_brokers)?);
    Ok(config)
}

/// The `bootstrap.servers` of `KAFKA_BROKERS`: the brokers themselves, or the address of the
/// embedded cluster a `mock:` value names (started on first use).
pub fn bootstrap_servers(brokers: &str) -> Result<String, KafkaError> {
    if mock::is_mock(brokers) {
        mock::bootstrap_servers(brokers)
    } else {
        Ok(brokers.to_owned())
    }
}

/// Settings of the idempotent producer used by the gateway, the reconciler and dead-lettering.
pub fn producer_config(args: &KafkaArgs) -> Result<ClientConfig, KafkaError> {
    let mut config = client_config(args)?;
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        // A few milliseconds of batching turns a stampede into few large requests.
        .set("linger.ms", "5")
        // Give up on a message after 8 s, before the reconciler's default minimum age (10 s):
        // the reconciler then re-publishes only what this producer has given up on, and never
        // piles a second copy into this queue.
        .set("message.timeout.ms", "8000");
    Ok(config)
}

/// Creates the reservation topic and its dead-letter topic unless they exist.
pub async fn ensure_topics(args: &KafkaArgs) -> Result<(), KafkaError> {
    if mock::is_mock(&args.kafka_brokers) {
        // The mock cluster answers on its own thread; wait for it off the runtime's threads.
        let args = args.clone();
        return tokio::task::spawn_blocking(move || {
            mock::create_topic(
                &args.kafka_brokers,
                &args.kafka_topic,
                args.kafka_topic_partitions,
            )?;
            mock::create_topic(&args.kafka_brokers, &args.kafka_dlq_topic, 1)
        })
        .await
        .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
    }
    let admin: AdminClient<DefaultClientContext> = client_config(args)?.create()?;
    let topics = [
        NewTopic::new(
            &args.kafka_topic,
            args.kafka_topic_partitions,
            TopicReplication::Fixed(1),
        ),
        NewTopic::new(&args.kafka_dlq_topic, 1, TopicReplication::Fixed(1)),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(topic, %code, "could not create topic");
                });
            }
        }
    }
    Ok(())
}

/// The value of header `name` of a message, as text.
pub fn header<M: Message>(message: &M, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A fresh W3C `traceparent` value (version 00, sampled) and its trace id.
pub fn new_traceparent() -> (String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    (child_of(&trace_id), trace_id)
}

/// The `traceparent` an event is sent with, and its trace id: a new span in the caller's
/// trace when the request carried a well-formed W3C `traceparent` (the header OpenTelemetry
/// propagates), else a new trace. Either way one purchase keeps one trace id from the
/// client through the gateway into every worker's logs.
pub fn traceparent_for(incoming: Option<&str>) -> (String, String) {
    match incoming.and_then(trace_id_of) {
        Some(trace_id) => (child_of(trace_id), trace_id.to_owned()),
        None => new_traceparent(),
    }
}

fn child_of(trace_id: &str) -> String {
    let span_id = &Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace_id}-{span_id}-01")
}

/// The trace id inside a `traceparent` value, if it is well formed (version 00, 32 lowercase
/// hex digits, not all zero).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    match (parts.next(), parts.next()) {
        (Some("00"), Some(trace_id))
            if trace_id.len() == 32
                && trace_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && trace_id.bytes().any(|b| b != b'0') =>
        {
            Some(trace_id)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_traceparent_carries_its_trace_id() {
        let (header, trace_id) = new_traceparent();
        assert_eq!(header.len(), 55);
        assert_eq!(trace_id_of(&header), Some(trace_id.as_str()));
    }

    #[test]
    fn a_malformed_traceparent_has_no_trace_id() {
        assert_eq!(trace_id_of("01-abc"), None);
        assert_eq!(trace_id_of(""), None);
        let zeros = format!("00-{}-{}-01", "0".repeat(32), "1".repeat(16));
        assert_eq!(trace_id_of(&zeros), None);
        let not_hex = format!("00-{}-{}-01", "z".repeat(32), "1".repeat(16));
        assert_eq!(trace_id_of(&not_hex), None);
    }

    #[test]
    fn an_incoming_trace_is_continued_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (outgoing, trace_id) = traceparent_for(Some(incoming));
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace_id_of(&outgoing), Some(trace_id.as_str()));
        assert_ne!(outgoing, incoming, "a span of its own");
    }

    #[test]
    fn without_a_valid_incoming_trace_a_new_one_starts() {
        for incoming in [None, Some("garbage")] {
            let (outgoing, trace_id) = traceparent_for(incoming);
            assert_eq!(trace_id_of(&outgoing), Some(trace_id.as_str()));
        }
    }
}
