//! How far each worker's consumer group trails the topics: the dashboard's view of the queue.
//!
//! A group's lag is what it has yet to read: the sum, over the partitions of the topics it
//! consumes, of the newest offset minus the group's committed one. The workers publish the
//! same figure as a metric from their own statistics; the gateway asks the broker instead, so
//! one stream of the gateway shows every group without the page polling each worker.
//!
//! Asking the broker is a few blocking round trips, so a reading is shared by every dashboard
//! for [`FRESH_FOR`] and taken on the blocking pool; the clients it asks with are made when the
//! first dashboard opens, not when the gateway starts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use shared::kafka::EventBus;
use utoipa::ToSchema;

/// How long one reading serves every dashboard.
const FRESH_FOR: Duration = Duration::from_millis(900);
/// How long each broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// One consumer group and what it has yet to read.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GroupLag {
    pub group: String,
    /// Messages not yet processed; absent when the broker did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}

/// Each group's name and the client that reads its committed offsets.
type Clients = Arc<[(String, BaseConsumer)]>;

/// The groups the dashboard shows, and the last reading.
#[derive(Clone)]
pub struct GroupLags(Arc<Probe>);

struct Probe {
    /// The client settings of the deployment, for the clients made on the first reading.
    client_config: ClientConfig,
    topics: Vec<String>,
    group_names: Vec<String>,
    /// One client per group (a committed offset is read in the name of its group), made when
    /// a dashboard first asks: a gateway nobody watches keeps no idle connections.
    groups: Mutex<Option<Clients>>,
    last: Mutex<Option<(Instant, Vec<GroupLag>)>>,
}

impl GroupLags {
    /// A probe of `groups` on `bus`'s event topics; nothing is made or asked until
    /// [`Self::read`].
    pub fn new(bus: &EventBus, groups: &[String]) -> Self {
        Self(Arc::new(Probe {
            client_config: bus.client_config(),
            topics: vec![bus.topic().to_owned(), bus.order_events_topic().to_owned()],
            group_names: groups.to_vec(),
            groups: Mutex::new(None),
            last: Mutex::new(None),
        }))
    }

    /// Each group's lag, at most [`FRESH_FOR`] old.
    pub async fn read(&self) -> Vec<GroupLag> {
        if let Some((at, lags)) = &*self.0.last()
            && at.elapsed() < FRESH_FOR
        {
            return lags.clone();
        }
        let probe = Arc::clone(&self.0);
        let lags = tokio::task::spawn_blocking(move || probe.measure())
            .await
            .unwrap_or_default();
        *self.0.last() = Some((Instant::now(), lags.clone()));
        lags
    }
}

impl Probe {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Vec<GroupLag>)>> {
        self.last.lock().expect("lag lock poisoned")
    }

    /// The groups' clients, made on first use (again after a failure).
    fn clients(&self) -> KafkaResult<Clients> {
        let mut groups = self.groups.lock().expect("lag clients lock poisoned");
        if let Some(clients) = &*groups {
            return Ok(Arc::clone(clients));
        }
        let clients: Clients = self
            .group_names
            .iter()
            .map(|group| {
                let consumer: BaseConsumer = self
                    .client_config
                    .clone()
                    .set("group.id", group)
                    .set("enable.auto.commit", "false")
                    .create()?;
                Ok((group.clone(), consumer))
            })
            .collect::<KafkaResult<_>>()?;
        *groups = Some(Arc::clone(&clients));
        Ok(clients)
    }

    fn measure(&self) -> Vec<GroupLag> {
        let unknown = |group: &String| GroupLag {
            group: group.clone(),
            lag: None,
        };
        let clients = match self.clients() {
            Ok(clients) => clients,
            Err(error) => {
                tracing::warn!(%error, "cannot make the clients that read the groups' offsets");
                return self.group_names.iter().map(unknown).collect();
            }
        };
        let ends = clients.first().map(|(_, client)| self.ends(client));
        clients
            .iter()
            .map(|(group, client)| GroupLag {
                group: group.clone(),
                lag: match &ends {
                    Some(Ok(ends)) => Self::lag(client, ends).ok(),
                    _ => None,
                },
            })
            .collect()
    }

    /// Every partition of the topics, with its oldest and next offset.
    fn ends(&self, client: &BaseConsumer) -> KafkaResult<Vec<PartitionEnds>> {
        let metadata = client.fetch_metadata(None, REQUEST_TIMEOUT)?;
        let mut ends = Vec::new();
        for topic in metadata.topics() {
            if !self.topics.iter().any(|name| name == topic.name()) {
                continue;
            }
            for partition in topic.partitions() {
                let (low, high) =
                    client.fetch_watermarks(topic.name(), partition.id(), REQUEST_TIMEOUT)?;
                ends.push(PartitionEnds {
                    topic: topic.name().to_owned(),
                    partition: partition.id(),
                    low,
                    high,
                });
            }
        }
        Ok(ends)
    }

    /// The group's lag over the topics it has committed on: a topic where it committed
    /// nothing is one it does not read. A partition of a read topic without a commit yet
    /// counts from its oldest message.
    fn lag(client: &BaseConsumer, ends: &[PartitionEnds]) -> KafkaResult<i64> {
        let mut asked = TopicPartitionList::new();
        for end in ends {
            asked.add_partition(&end.topic, end.partition);
        }
        let committed = client.committed_offsets(asked, REQUEST_TIMEOUT)?;
        let offset_of = |end: &PartitionEnds| match committed
            .find_partition(&end.topic, end.partition)
            .map(|p| p.offset())
        {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        };
        let read_topics: Vec<&str> = ends
            .iter()
            .filter(|end| offset_of(end).is_some())
            .map(|end| end.topic.as_str())
            .collect();
        Ok(ends
            .iter()
            .filter(|end| read_topics.contains(&end.topic.as_str()))
            .map(|end| (end.high - offset_of(end).unwrap_or(end.low)).max(0))
            .sum())
    }
}

struct PartitionEnds {
    topic: String,
    partition: i32,
    low: i64,
    high: i64,
}
