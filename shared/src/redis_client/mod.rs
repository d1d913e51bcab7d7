//! One Redis connection per process, shared by every task, with a deadline on every call, and
//! the deployment's key layout beside it.
//!
//! The connection ([`Connection`]) is a single node or a cluster, chosen by `REDIS_URL`'s form;
//! the stores never ask which. Every call goes through [`Redis::call`], which bounds it by the
//! configured deadline: a slow Redis must turn into a fast 503, never into a queue of hanging
//! requests.

mod connection;
mod replication;
mod topology;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use redis::{FromRedisValue, Pipeline, RedisResult};

pub use self::connection::{Connection, cluster_nodes};
use self::replication::ReplicaConfirmations;
pub use self::topology::{ClusterNode, parse_cluster_nodes};
use crate::config::RedisArgs;
use crate::error::StoreError;
use crate::keys::KeySpace;

/// A cheaply cloneable handle on the process's Redis connection and the deployment's keys.
#[derive(Clone)]
pub struct Redis {
    connection: Connection,
    deadline: Duration,
    replica_wait: Duration,
    confirmations: Arc<ReplicaConfirmations>,
    keys: KeySpace,
}

impl Redis {
    /// A handle that needs no Redis up yet ([`Connection::lazy`]). Fails only on a malformed
    /// URL.
    pub fn connect_lazily(args: &RedisArgs) -> RedisResult<Self> {
        let deadline = args.timeout();
        Ok(Self {
            connection: Connection::lazy(&args.redis_url, deadline)?,
            deadline,
            replica_wait: args.replica_wait(),
            confirmations: Arc::default(),
            keys: KeySpace::new(&args.redis_key_prefix),
        })
    }

    /// The same connection, with another deadline for every call (a background job that reads
    /// more than a purchase does wants a longer one).
    #[must_use]
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Self {
            deadline,
            ..self.clone()
        }
    }

    /// The keys of this deployment (`REDIS_KEY_PREFIX`).
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// Runs `op` on the shared connection, bounded by the deadline.
    pub async fn call<T>(
        &self,
        op: impl AsyncFnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(self.deadline, op(&mut connection))
            .await
            .map_err(|_| StoreError::Timeout(self.deadline))?
            .map_err(|error| {
                if error.is_timeout() {
                    StoreError::Timeout(self.deadline)
                } else {
                    StoreError::Failed(Box::new(error))
                }
            })
    }

    /// Runs the pipelines concurrently, each bounded by the deadline; their replies in order.
    /// Each must stay within one hash tag (a cluster routes a pipeline by its first key and
    /// refuses one that spans slots): a batch over several sales is one pipeline per sale
    /// ([`grouped`]).
    pub async fn pipelines<T: FromRedisValue>(
        &self,
        pipes: &[Pipeline],
    ) -> Result<Vec<T>, StoreError> {
        futures::future::try_join_all(
            pipes
                .iter()
                .map(|pipe| self.call(async |c| pipe.query_async(c).await)),
        )
        .await
    }

    /// The deadline of every call made through this handle.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Whether writes wait for a replica's confirmation: on a cluster (one node's durability is
    /// its own fsynced append-only file).
    pub fn replica_wait_applies(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
    }

    /// How long a write waits for a replica's confirmation (`REDIS_REPLICA_WAIT_MS`).
    pub fn replica_wait(&self) -> Duration {
        self.replica_wait
    }

    /// On a cluster, how many replicas (0 or 1) hold every write to `key`'s slot answered
    /// before this call, after waiting at most `REDIS_REPLICA_WAIT_MS` for one (concurrent
    /// callers share one `WAIT`, [`ReplicaConfirmations`]). `None` on a single node, whose
    /// durability is its own fsynced append-only file.
    pub async fn confirm_replicated(&self, key: &str) -> Option<Result<u32, StoreError>> {
        let Connection::Cluster(cluster) = &self.connection else {
            return None;
        };
        let wait = self.replica_wait;
        Some(
            self.call(async |_| self.confirmations.confirm(cluster, key, wait).await)
                .await,
        )
    }

    /// PING, within the deadline (on a cluster: any master answering is enough).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(async |c| c.ping().await).await
    }
}

/// `items` grouped by `group` (e.g. by sale, whose keys share one hash tag), each group in the
/// items' order.
pub fn grouped<T, G: Eq + Hash>(
    items: impl IntoIterator<Item = T>,
    group: impl Fn(&T) -> G,
) -> HashMap<G, Vec<T>> {
    let mut groups: HashMap<G, Vec<T>> = HashMap::new();
    for item in items {
        groups.entry(group(&item)).or_default().push(item);
    }
    groups
}
