//! The embedded event bus: librdkafka's mock cluster, named by `KAFKA_BROKERS=mock:` (or
//! `mock:<name>`).
//!
//! The mock cluster speaks the real Kafka protocol on a local port, inside this process:
//! producers, consumer groups, committed offsets and the idempotent producer all run the very
//! code path they run against a broker, so the embedded run proves the same consumer loop.
//! Its limits: the data lives in memory and is gone when the process exits, a consumer group's
//! first join waits about 3 s (the cluster's initial rebalance delay), and topics are created
//! through the mock API because it does not answer the admin client's CreateTopics.
//!
//! The cluster handle is not `Send`, so each cluster lives on a thread of its own for the rest
//! of the process; the services get its bootstrap address and ask that thread for topics.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{LazyLock, Mutex};

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaErrorCode;

/// The scheme of the embedded bus in `KAFKA_BROKERS`.
pub const MOCK_SCHEME: &str = "mock:";

/// Whether `brokers` names an embedded cluster rather than real brokers.
pub fn is_mock(brokers: &str) -> bool {
    brokers.starts_with(MOCK_SCHEME)
}

struct TopicRequest {
    name: String,
    partitions: i32,
    created: mpsc::Sender<KafkaResult<()>>,
}

/// A running mock cluster: where it listens, and the way to its thread.
struct RunningCluster {
    bootstrap_servers: String,
    topic_requests: mpsc::Sender<TopicRequest>,
}

static CLUSTERS: LazyLock<Mutex<HashMap<String, RunningCluster>>> = LazyLock::new(Mutex::default);

/// The bootstrap address of the cluster `brokers` names, started on first use.
pub fn bootstrap_servers(brokers: &str) -> KafkaResult<String> {
    with_cluster(brokers, |cluster| Ok(cluster.bootstrap_servers.clone()))
}

/// Creates a topic on the cluster `brokers` names; an existing topic is left as it is.
pub fn create_topic(brokers: &str, name: &str, partitions: i32) -> KafkaResult<()> {
    let (created, outcome) = mpsc::channel();
    with_cluster(brokers, |cluster| {
        cluster
            .topic_requests
            .send(TopicRequest {
                name: name.to_owned(),
                partitions,
                created,
            })
            .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))
    })?;
    match outcome.recv() {
        Ok(Err(KafkaError::MockCluster(RDKafkaErrorCode::TopicAlreadyExists))) => Ok(()),
        Ok(result) => result,
        Err(_) => Err(KafkaError::MockCluster(RDKafkaErrorCode::Fail)),
    }
}

fn with_cluster<T>(
    brokers: &str,
    use_cluster: impl FnOnce(&RunningCluster) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let mut clusters = CLUSTERS
        .lock()
        .expect("mock cluster registry lock poisoned");
    if !clusters.contains_key(brokers) {
        clusters.insert(brokers.to_owned(), start_cluster(brokers)?);
    }
    use_cluster(&clusters[brokers])
}

/// Starts a one-broker cluster on a thread that keeps it, and serves topic requests, for the
/// rest of the process.
fn start_cluster(name: &str) -> KafkaResult<RunningCluster> {
    let (started, bootstrap) = mpsc::channel();
    let (topic_requests, requests) = mpsc::channel::<TopicRequest>();
    std::thread::Builder::new()
        .name(format!("kafka-{name}"))
        .spawn(move || {
            let cluster = match MockCluster::new(1) {
                Ok(cluster) => cluster,
                Err(error) => {
                    let _ = started.send(Err(error));
                    return;
                }
            };
            let _ = started.send(Ok(cluster.bootstrap_servers()));
            for request in requests {
                let result = cluster.create_topic(&request.name, request.partitions, 1);
                let _ = request.created.send(result);
            }
        })
        .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
    let bootstrap_servers = bootstrap
        .recv()
        .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))??;
    tracing::info!(name, %bootstrap_servers, "embedded Kafka (librdkafka mock cluster) started");
    Ok(RunningCluster {
        bootstrap_servers,
        topic_requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_is_one_cluster_and_another_name_another() {
        let first = bootstrap_servers("mock:unit-a").unwrap();
        assert_eq!(bootstrap_servers("mock:unit-a").unwrap(), first);
        assert_ne!(bootstrap_servers("mock:unit-b").unwrap(), first);
    }

    #[test]
    fn creating_a_topic_twice_is_fine() {
        create_topic("mock:unit-c", "t", 3).unwrap();
        create_topic("mock:unit-c", "t", 3).unwrap();
    }
}
