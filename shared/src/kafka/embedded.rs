//! The embedded event bus: librdkafka's mock cluster, behind `KAFKA_BROKERS=mock:`.
//!
//! The mock cluster speaks the real Kafka protocol on a local port, inside this process:
//! producers, consumer groups, committed offsets and the idempotent producer all run the very
//! code path they run against a broker, so the embedded run proves the same consumer loop.
//! Its limits: the data lives in memory and is gone with the cluster, a consumer group's
//! first join waits about 3 s (the cluster's initial rebalance delay), and topics are created
//! through the mock API because it does not answer the admin client's CreateTopics.
//!
//! The cluster handle is not `Send`, so each cluster lives on a thread of its own, which ends
//! when its [`EmbeddedCluster`] is dropped; the services get its bootstrap address and ask
//! that thread for topics.

use std::sync::mpsc;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::oneshot;

struct TopicRequest {
    name: String,
    partitions: i32,
    created: oneshot::Sender<KafkaResult<()>>,
}

/// A running one-broker mock cluster: where it listens, and the way to its thread.
pub struct EmbeddedCluster {
    bootstrap_servers: String,
    topic_requests: mpsc::Sender<TopicRequest>,
}

impl EmbeddedCluster {
    /// Starts a cluster on a thread that keeps it, and serves topic requests, until this
    /// handle is dropped.
    pub fn start() -> KafkaResult<Self> {
        let (started, bootstrap) = mpsc::channel();
        let (topic_requests, requests) = mpsc::channel::<TopicRequest>();
        std::thread::Builder::new()
            .name("embedded-kafka".into())
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
        tracing::info!(%bootstrap_servers, "embedded Kafka (librdkafka mock cluster) started");
        Ok(Self {
            bootstrap_servers,
            topic_requests,
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Creates a topic; an existing topic is left as it is.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> KafkaResult<()> {
        let (created, outcome) = oneshot::channel();
        self.topic_requests
            .send(TopicRequest {
                name: name.to_owned(),
                partitions,
                created,
            })
            .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
        match outcome.await {
            Ok(Err(KafkaError::MockCluster(RDKafkaErrorCode::TopicAlreadyExists))) => Ok(()),
            Ok(result) => result,
            Err(_) => Err(KafkaError::MockCluster(RDKafkaErrorCode::Fail)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cluster_listens_on_its_own_address() {
        let first = EmbeddedCluster::start().unwrap();
        let second = EmbeddedCluster::start().unwrap();
        assert_ne!(first.bootstrap_servers(), second.bootstrap_servers());
    }

    #[tokio::test]
    async fn creating_a_topic_twice_is_fine() {
        let cluster = EmbeddedCluster::start().unwrap();
        cluster.create_topic("t", 3).await.unwrap();
        cluster.create_topic("t", 3).await.unwrap();
    }
}
