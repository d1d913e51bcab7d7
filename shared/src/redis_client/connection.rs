//! One connection type for a single Redis node and for Redis Cluster, chosen by the URL's form,
//! so every store is written once (docs/architecture.md, "Redis Cluster").
//!
//! `redis://host:port` is one node behind a [`ConnectionManager`]. `redis+cluster://h1:p1,h2:p2`
//! names a cluster by some of its nodes (the client learns the rest and follows MOVED/ASK).
//! Both multiplex every task's requests over their sockets and reconnect by themselves, and
//! neither needs Redis up to be created, so a service starts (and says it is not ready) while
//! Redis is down: the node's connects on first use, the cluster's starts connecting in the
//! background at once (so it must be created inside a Tokio runtime).
//!
//! What differs is routing. A command goes to the master of its keys' slot; a pipeline must stay
//! within one slot (the stores group their batches by sale); a keyless command is routed
//! explicitly here (readiness asks any master, not every one).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// The URL scheme of a cluster: `redis+cluster://host:port,host:port` (`rediss+cluster` for
/// TLS), optionally with `user:password@` before the first node, which every node shares.
const CLUSTER_SCHEME: &str = "redis+cluster://";
const TLS_CLUSTER_SCHEME: &str = "rediss+cluster://";

/// A connection to one Redis node or to a cluster; cheap to clone (clones share the sockets).
#[derive(Clone)]
pub enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// A connection that needs no Redis up yet, with `deadline` as the time to connect and to
    /// answer. Fails only on a malformed URL.
    pub fn lazy(url: &str, deadline: Duration) -> RedisResult<Self> {
        let Some(nodes) = cluster_nodes(url) else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(deadline))
                .set_response_timeout(Some(deadline))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            return Ok(Self::Node(ConnectionManager::new_lazy_with_config(
                Client::open(url)?,
                config,
            )?));
        };
        // Each call is bounded by the deadline as a whole, not per node and try: a per-try
        // response timeout would make the client resend a command that may have run (the
        // stock lock is idempotent, but no call should count on it).
        let client = ClusterClient::builder(nodes)
            .connection_timeout(deadline)
            .overall_response_timeout(Some(deadline))
            .retries(2)
            .build()?;
        Ok(Self::Cluster(
            client.get_pending_async_connection_with_config(ClusterConfig::new()),
        ))
    }

    /// PING: on a cluster, answered when any master answers, so one unreachable master does
    /// not make every process that uses the cluster unready.
    pub async fn ping(&mut self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Self::Node(node) => ping.query_async(node).await,
            Self::Cluster(cluster) => {
                let any_master = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::OneSucceeded),
                ));
                cluster.route_command(ping, any_master).await.map(drop)
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(node) => node.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(node) => node.req_packed_commands(pipeline, offset, count),
            Self::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(node) => node.get_db(),
            Self::Cluster(cluster) => cluster.get_db(),
        }
    }
}

/// The node URLs of a cluster URL (`redis+cluster://a:1,b:2` → `redis://a:1`, `redis://b:2`),
/// or `None` for a single node's URL.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
        ("redis://", rest)
    } else {
        ("rediss://", url.strip_prefix(TLS_CLUSTER_SCHEME)?)
    };
    let (credentials, nodes) = match rest.rsplit_once('@') {
        Some((credentials, nodes)) => (format!("{credentials}@"), nodes),
        None => (String::new(), rest),
    };
    Some(
        nodes
            .trim_end_matches('/')
            .split(',')
            .map(|node| format!("{scheme}{credentials}{}", node.trim()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_names_each_node_with_the_shared_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://:secret@10.0.0.1:7000,10.0.0.2:7001/"),
            Some(vec![
                "redis://:secret@10.0.0.1:7000".to_owned(),
                "redis://:secret@10.0.0.2:7001".to_owned(),
            ])
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://a:1"),
            Some(vec!["rediss://a:1".to_owned()])
        );
    }

    #[test]
    fn a_single_node_url_is_not_a_cluster() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379/0"), None);
        assert_eq!(cluster_nodes("redis+unix:///tmp/redis.sock"), None);
    }

    #[tokio::test]
    async fn a_malformed_cluster_url_is_refused_before_connecting() {
        let error = Connection::lazy("redis+cluster://", Duration::from_millis(10)).err();
        assert!(error.is_some(), "an empty node list must be refused");
    }
}
