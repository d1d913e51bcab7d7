//! Kafka plumbing every service shares: the [`EventBus`] (brokers, topics, client settings),
//! the embedded cluster of the all-in-one runner, and trace headers.
//!
//! The producer is idempotent (`enable.idempotence=true` implies `acks=all` and ordered,
//! de-duplicated retries per partition), so a broker hiccup never duplicates or reorders a
//! partition's events. Duplicates can still arise from the reconciler's re-publish; consumers
//! handle those by deduplicating on `event_id`.

mod bus;
mod embedded;
pub mod trace;

use rdkafka::Message;
use rdkafka::message::Headers;

pub use self::bus::{ConnectError, EventBus, MOCK_SCHEME};
pub use self::trace::{TRACEPARENT_HEADER, new_traceparent, trace_id_of, traceparent_for};

/// The value of header `name` of a message, as text.
pub fn header<M: Message>(message: &M, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
