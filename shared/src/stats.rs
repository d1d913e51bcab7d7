//! Per-sale statistics in Redis: written exactly once per event by the stats worker, read by
//! the gateway's `GET /api/v1/sales/{id}/stats`.
//!
//! Exactly-once comes from the script: it records the event id in the same atomic step that
//! counts it, so a redelivered or re-published event changes nothing. The distinct-buyer set
//! and the event-id set are bounded by the sale's stock.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::Script;
use serde::Serialize;

use crate::event::ReservationEvent;
use crate::keys::KeySpace;
use crate::redis_client::{Redis, RedisCallError};

static APPLY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/stats_apply.lua")));

/// What the statistics say about one sale.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SaleStats {
    pub sold: u64,
    pub revenue_cents: i64,
    pub buyers: u64,
    /// Units sold per second, in time order.
    pub timeline: Vec<TimelinePoint>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelinePoint {
    /// Unix time, seconds.
    pub second: i64,
    pub sold: u64,
}

#[derive(Clone)]
pub struct StatsStore {
    redis: Redis,
    keys: KeySpace,
}

impl StatsStore {
    pub fn new(redis: Redis, keys: KeySpace) -> Self {
        Self { redis, keys }
    }

    /// Counts each event once; returns how many were new. One round trip for the batch (the
    /// script is loaded at the head of the same pipeline, so a restarted Redis is no problem).
    pub async fn apply(&self, events: &[&ReservationEvent]) -> Result<u64, RedisCallError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT")
            .arg("LOAD")
            .arg(include_str!("scripts/stats_apply.lua"))
            .ignore();
        let invocations: Vec<_> = events
            .iter()
            .map(|event| {
                let keys = self.keys.sale(&event.sale_id);
                let mut invocation = APPLY.key(keys.stats_events);
                invocation
                    .key(keys.stats)
                    .key(keys.stats_buyers)
                    .key(keys.stats_timeline)
                    .arg(event.event_id.to_string())
                    .arg(&event.user_id)
                    .arg(event.quantity)
                    .arg(event.price_cents.saturating_mul(i64::from(event.quantity)))
                    .arg(event.reserved_at.timestamp());
                invocation
            })
            .collect();
        for invocation in &invocations {
            pipe.invoke_script(invocation);
        }
        let counted: Vec<u64> = self.redis.call(async |c| pipe.query_async(c).await).await?;
        Ok(counted.iter().sum())
    }

    pub async fn read(&self, sale_id: &str) -> Result<SaleStats, RedisCallError> {
        let keys = self.keys.sale(sale_id);
        let (totals, buyers, timeline): (BTreeMap<String, i64>, u64, BTreeMap<i64, u64>) = self
            .redis
            .call(async |c| {
                redis::pipe()
                    .hgetall(&keys.stats)
                    .scard(&keys.stats_buyers)
                    .hgetall(&keys.stats_timeline)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(SaleStats {
            sold: totals.get("sold").copied().unwrap_or(0).max(0) as u64,
            revenue_cents: totals.get("revenue_cents").copied().unwrap_or(0),
            buyers,
            timeline: timeline
                .into_iter()
                .map(|(second, sold)| TimelinePoint { second, sold })
                .collect(),
        })
    }
}
