//! Statistics in Redis: `stats_apply.lua` records the event id in the same atomic step that
//! counts it. The distinct-buyer set and the event-id set are bounded by the sale's stock.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{SaleCounts, SaleStats, StatsStore, TimelinePoint};
use crate::error::StoreError;
use crate::event::{ReservationEvent, TransitionEvent};
use crate::ids::SaleId;
use crate::keys::SaleKeys;
use crate::redis_client::{Redis, grouped};
use crate::scripts;

#[derive(Clone)]
pub struct RedisStatsStore {
    redis: Redis,
}

impl RedisStatsStore {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

impl RedisStatsStore {
    /// Runs every invocation of the script whose source is `source`, one pipeline per sale
    /// (its keys' hash tag) with the script loaded at its head (so a restarted Redis, or a
    /// master that never saw it, is no problem), and sums what each counted (1 for an event
    /// seen for the first time, 0 for a repeat).
    async fn count_once<'a>(
        &self,
        source: &str,
        invocations: impl IntoIterator<Item = (SaleId, redis::ScriptInvocation<'a>)>,
    ) -> Result<u64, StoreError> {
        let pipes: Vec<_> = grouped(invocations, |(sale_id, _)| sale_id.clone())
            .into_values()
            .map(|invocations| {
                let mut pipe = redis::pipe();
                pipe.cmd("SCRIPT").arg("LOAD").arg(source).ignore();
                for (_, invocation) in &invocations {
                    pipe.invoke_script(invocation);
                }
                pipe
            })
            .collect();
        let counted: Vec<Vec<u64>> = self.redis.pipelines(&pipes).await?;
        Ok(counted.iter().flatten().sum())
    }
}

#[async_trait]
impl StatsStore for RedisStatsStore {
    /// One round trip per sale of the batch ([`RedisStatsStore::count_once`]).
    async fn apply(&self, events: &[&ReservationEvent]) -> Result<u64, StoreError> {
        let invocations = events.iter().map(|event| {
            let keys = self.redis.keys().sale(&event.sale_id);
            let mut invocation = scripts::STATS_APPLY.key(keys.stats_events);
            invocation
                .key(keys.stats)
                .key(keys.stats_buyers)
                .key(keys.stats_timeline)
                .key(keys.info)
                .arg(event.event_id.to_string())
                .arg(event.user_id.as_str())
                .arg(event.quantity)
                .arg(event.price_cents.saturating_mul(i64::from(event.quantity)))
                .arg(event.reserved_at.timestamp());
            (event.sale_id.clone(), invocation)
        });
        self.count_once(scripts::STATS_APPLY_SOURCE, invocations)
            .await
    }

    /// One round trip per sale of the batch, as [`RedisStatsStore::apply`].
    async fn apply_transitions(&self, events: &[&TransitionEvent]) -> Result<u64, StoreError> {
        let invocations = events.iter().map(|event| {
            let keys = self.redis.keys().sale(&event.sale_id);
            let mut invocation = scripts::STATS_TRANSITION.key(keys.stats_events);
            invocation
                .key(keys.stats)
                .key(keys.info)
                .arg(&event.event_id)
                .arg(event.status.as_str())
                .arg(event.price_cents);
            (event.sale_id.clone(), invocation)
        });
        self.count_once(scripts::STATS_TRANSITION_SOURCE, invocations)
            .await
    }

    /// One round trip: the counts' pipeline with the timeline's `HGETALL` added.
    async fn read(&self, sale_id: &SaleId) -> Result<SaleStats, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let (totals, buyers, timeline): (Totals, u64, BTreeMap<i64, u64>) = self
            .redis
            .call(async |c| {
                counts_pipeline(&keys)
                    .hgetall(&keys.stats_timeline)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(SaleStats {
            counts: counts_of(&totals, buyers),
            timeline: timeline
                .into_iter()
                .map(|(second, sold)| TimelinePoint { second, sold })
                .collect(),
        })
    }

    /// One round trip of two commands whose replies are as small as the counts.
    async fn counts(&self, sale_id: &SaleId) -> Result<SaleCounts, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let (totals, buyers): (Totals, u64) = self
            .redis
            .call(async |c| counts_pipeline(&keys).query_async(c).await)
            .await?;
        Ok(counts_of(&totals, buyers))
    }
}

/// The `stats` hash: each count by name.
type Totals = BTreeMap<String, i64>;

/// `HGETALL` of the counts and `SCARD` of the distinct buyers.
fn counts_pipeline(keys: &SaleKeys) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.hgetall(&keys.stats).scard(&keys.stats_buyers);
    pipe
}

fn counts_of(totals: &Totals, buyers: u64) -> SaleCounts {
    let count = |field: &str| totals.get(field).copied().unwrap_or(0).max(0) as u64;
    let money = |field: &str| totals.get(field).copied().unwrap_or(0);
    SaleCounts {
        sold: count("sold"),
        revenue_cents: money("revenue_cents"),
        buyers,
        created: count("created"),
        paid: count("paid"),
        paid_revenue_cents: money("paid_revenue_cents"),
        expired: count("expired"),
        failed: count("failed"),
    }
}
