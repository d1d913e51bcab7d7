//! The local Redis Cluster a proof strikes (`scripts/services` starts it): the master that
//! holds a sale's keys found, killed and started again, paused, or the sale's slot moved to
//! another master while buyers buy. Nodes are named to `scripts/services` as `cluster-<port>`.

use std::time::Duration;

use anyhow::Context;
use shared::redis_client::{ClusterNode, cluster_nodes, parse_cluster_nodes};

use crate::proof::services;

/// The cluster behind a `redis+cluster://` URL, reached node by node.
pub struct Cluster {
    seeds: Vec<String>,
}

impl Cluster {
    /// The cluster `url` names, or `None` for a single node's URL.
    pub fn of(url: &str) -> Option<Self> {
        cluster_nodes(url).map(|seeds| Self { seeds })
    }

    /// The URL of every node, masters and replicas.
    pub async fn node_urls(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.nodes().await?.iter().map(url).collect())
    }

    /// The master serving `key`'s slot now.
    pub async fn master_of(&self, key: &str) -> anyhow::Result<ClusterNode> {
        let slot = self.slot_of(key).await?;
        self.nodes()
            .await?
            .into_iter()
            .find(|node| node.is_master && !node.is_failing && node.serves(slot))
            .with_context(|| format!("no master serves slot {slot}"))
    }

    /// SIGKILLs the master of `key`'s slot; returns it, to be started again.
    pub async fn kill_master_of(&self, key: &str) -> anyhow::Result<ClusterNode> {
        let master = self.master_of(key).await?;
        services::crash(&service_name(&master)).await?;
        Ok(master)
    }

    /// Starts every node that is down again (`scripts/services start` leaves a running one
    /// alone) and waits until the cluster is whole: a killed master rejoins as the replica of
    /// the one promoted in its place.
    pub async fn start_all_again(&self) -> anyhow::Result<()> {
        for node in self.nodes().await? {
            services::start(&service_name(&node)).await?;
        }
        self.whole().await
    }

    /// Pauses every client of the master of `key`'s slot for `pause` (the cluster bus goes on,
    /// so no failover).
    pub async fn pause_master_of(&self, key: &str, pause: Duration) -> anyhow::Result<()> {
        let master = self.master_of(key).await?;
        services::pause_redis(&url(&master), pause).await
    }

    /// Moves `key`'s slot, keys and all, to another master, the way a resharding does it:
    /// importing and migrating marks, the keys migrated in batches, then every master told
    /// the new owner. Returns the old and the new owner's addresses.
    pub async fn move_slot_of(&self, key: &str) -> anyhow::Result<(String, String)> {
        let slot = self.slot_of(key).await?;
        let nodes = self.nodes().await?;
        let masters: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|node| node.is_master && !node.is_failing)
            .collect();
        let from = masters
            .iter()
            .find(|node| node.serves(slot))
            .with_context(|| format!("no master serves slot {slot}"))?;
        let to = masters
            .iter()
            .find(|node| node.id != from.id)
            .context("no other master to move the slot to")?;
        let (mut source, mut target) = (connect(from).await?, connect(to).await?);
        let setslot = |state: &str, id: &str| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
            cmd
        };
        setslot("IMPORTING", &from.id)
            .query_async::<()>(&mut target)
            .await?;
        setslot("MIGRATING", &to.id)
            .query_async::<()>(&mut source)
            .await?;
        let (host, port) = to
            .address
            .rsplit_once(':')
            .context("a node address is host:port")?;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut source)
                .await?;
            if keys.is_empty() {
                break;
            }
            redis::cmd("MIGRATE")
                .arg(host)
                .arg(port)
                .arg("")
                .arg(0)
                .arg(5_000)
                .arg("KEYS")
                .arg(&keys)
                .query_async::<()>(&mut source)
                .await?;
        }
        // The new owner first, then the old one, then the rest: the order redis-cli uses.
        setslot("NODE", &to.id)
            .query_async::<()>(&mut target)
            .await?;
        setslot("NODE", &to.id)
            .query_async::<()>(&mut source)
            .await?;
        for other in masters.iter().filter(|m| m.id != from.id && m.id != to.id) {
            setslot("NODE", &to.id)
                .query_async::<()>(&mut connect(other).await?)
                .await?;
        }
        Ok((from.address.clone(), to.address.clone()))
    }

    /// Waits (up to a minute) until the cluster is whole again; fails naming what was not.
    pub async fn whole(&self) -> anyhow::Result<()> {
        let whole = shared::poll::until(
            Duration::from_mins(1),
            Duration::from_millis(200),
            async || self.is_whole().await.ok().filter(|whole| *whole),
        )
        .await;
        whole
            .map(drop)
            .context("the cluster did not become whole within a minute")
    }

    async fn is_whole(&self) -> anyhow::Result<bool> {
        let nodes = self.nodes().await?;
        let replicated = |master: &ClusterNode| {
            nodes
                .iter()
                .any(|node| node.master_id.as_deref() == Some(master.id.as_str()))
        };
        let mut whole = nodes.iter().all(|node| !node.is_failing)
            && nodes
                .iter()
                .filter(|node| node.is_master && !node.slots.is_empty())
                .all(replicated);
        for node in &nodes {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut connect(node).await?)
                .await?;
            whole &= info.contains("cluster_state:ok");
        }
        Ok(whole)
    }

    /// `CLUSTER NODES`.
    async fn nodes(&self) -> anyhow::Result<Vec<ClusterNode>> {
        let reply: String = self.ask_any(redis::cmd("CLUSTER").arg("NODES")).await?;
        Ok(parse_cluster_nodes(&reply))
    }

    async fn slot_of(&self, key: &str) -> anyhow::Result<u16> {
        self.ask_any(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .await
    }

    /// `cmd`'s answer from the first seed that gives one (one of them may be the node a fault
    /// has just killed).
    async fn ask_any<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        let mut last_error = anyhow::anyhow!("the cluster URL names no node");
        for seed in &self.seeds {
            match ask(seed, cmd).await {
                Ok(answer) => return Ok(answer),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }
}

/// A node's name to `scripts/services`.
fn service_name(node: &ClusterNode) -> String {
    let port = node.address.rsplit(':').next().unwrap_or_default();
    format!("cluster-{port}")
}

fn url(node: &ClusterNode) -> String {
    format!("redis://{}", node.address)
}

async fn connect(node: &ClusterNode) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url(node))?;
    Ok(client.get_multiplexed_async_connection().await?)
}

async fn ask<T: redis::FromRedisValue>(node_url: &str, cmd: &redis::Cmd) -> anyhow::Result<T> {
    let client = redis::Client::open(node_url)?;
    let mut connection = tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("no answer within a second")??;
    Ok(cmd.query_async(&mut connection).await?)
}
