//! The stock ledger in Redis, shared by every gateway and worker process.
//!
//! Each operation that must be atomic is one Lua script (loaded once, run with EVALSHA; the
//! redis crate reloads it on NOSCRIPT) or one MULTI, and each touches only keys of one sale
//! (one hash tag), so the same code runs on one node and on Redis Cluster; a batch over several
//! sales is one pipeline per sale. Replies become typed outcomes here; callers never see the
//! script's strings.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::clock::RedisClock;
use super::{
    DuePayment, DueTransition, OrderLifecycle, OrderStatus, Outbox, OutboxEntry, OutboxSizes,
    Payment, PaymentIntent, Payments, Publication, Purchases, Reservation, ReserveReply, Sales,
    TransitionId,
};
use crate::error::StoreError;
use crate::event::ReservationEvent;
use crate::ids::{OrderId, SaleId, UserId};
use crate::redis_client::{Redis, grouped};
use crate::sale::Sale;
use crate::scripts;

/// Stock, buyers, outbox and order status of every sale, in Redis.
#[derive(Clone)]
pub struct RedisStockLedger {
    redis: Redis,
    clock: Arc<RedisClock>,
}

impl RedisStockLedger {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            clock: Arc::new(RedisClock::default()),
        }
    }
}

#[async_trait]
impl Sales for RedisStockLedger {
    async fn create_sale(&self, sale: &Sale) -> Result<bool, StoreError> {
        let keys = self.redis.keys().sale(&sale.id);
        let json = serde_json::to_string(sale).expect("a Sale always serialises");
        // A taken id is refused before the index is touched: the id of a settled sale must
        // not come back into the reconciler's sweep. (Should a concurrent create win between
        // this check and the script, the index names its sale, rightly.)
        let taken: u32 = self
            .redis
            .call(async |c| c.exists(&[&keys.taken, &keys.info]).await)
            .await?;
        if taken > 0 {
            return Ok(false);
        }
        // Index first: if the script then fails, a stray id in the index is harmless, while a
        // sale missing from it would escape the reconciler.
        let index = self.redis.keys().sales_index();
        self.redis
            .call(async |c| c.sadd::<_, _, ()>(&index, sale.id.as_str()).await)
            .await?;
        let created: bool = self
            .redis
            .call(async |c| {
                scripts::CREATE_SALE
                    .key(&keys.taken)
                    .key(&keys.info)
                    .key(&keys.stock)
                    .arg(&json)
                    .arg(sale.stock)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(created)
    }

    async fn sale(&self, sale_id: &SaleId) -> Result<Option<Sale>, StoreError> {
        let key = self.redis.keys().sale(sale_id).info;
        let json: Option<String> = self.redis.call(async |c| c.get(&key).await).await?;
        Ok(json.and_then(|json| match serde_json::from_str(&json) {
            Ok(sale) => Some(sale),
            Err(error) => {
                tracing::error!(%error, %sale_id, "stored sale is not valid JSON; treating it as absent");
                None
            }
        }))
    }

    async fn remaining(&self, sale_id: &SaleId) -> Result<Option<u32>, StoreError> {
        let key = self.redis.keys().sale(sale_id).stock;
        self.redis.call(async |c| c.get(&key).await).await
    }

    /// The sale's master's clock as [`RedisClock`] estimates it: no round trip most of the
    /// time.
    async fn now_ms(&self, sale_id: &SaleId) -> Result<i64, StoreError> {
        let key = self.redis.keys().sale(sale_id).stock;
        self.clock.now_ms(&self.redis, &key).await
    }

    async fn active_sale_ids(&self) -> Result<Vec<SaleId>, StoreError> {
        let key = self.redis.keys().sales_index();
        let ids: Vec<String> = self.redis.call(async |c| c.smembers(&key).await).await?;
        Ok(parse_all(ids, "sales index"))
    }

    /// `settle_sale.lua` on the sale's keys, then the index (another slot) in a second step:
    /// should that step fail, the next sweep settles the sale again, harmlessly.
    async fn settle_sale(
        &self,
        sale_id: &SaleId,
        ended: bool,
        retention: Duration,
    ) -> Result<bool, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let settled: bool = self
            .redis
            .call(async |c| {
                let mut invocation = scripts::SETTLE_SALE.key(&keys.outbox);
                invocation
                    .key(&keys.stock)
                    .key(&keys.deadlines)
                    .key(&keys.transitions)
                    .key(&keys.payments);
                for key in keys.all() {
                    invocation.key(key);
                }
                invocation
                    .arg(u8::from(ended))
                    .arg(retention.as_millis() as u64)
                    .invoke_async(c)
                    .await
            })
            .await?;
        if settled {
            let index = self.redis.keys().sales_index();
            self.redis
                .call(async |c| c.srem::<_, _, ()>(&index, sale_id.as_str()).await)
                .await?;
        }
        Ok(settled)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}

#[async_trait]
impl Purchases for RedisStockLedger {
    /// One round trip: `reserve.lua`, which refuses to run after this call's deadline (see
    /// [`RedisClock`]); such a late lock answers as a timeout, with nothing written. On Redis
    /// Cluster a lock then waits for a replica to hold it ([`Self::confirmed_by_replica`]).
    async fn reserve(
        &self,
        event: &ReservationEvent,
        payload: &str,
    ) -> Result<Reservation, StoreError> {
        let keys = self.redis.keys().sale(&event.sale_id);
        let deadline = self.redis.deadline();
        let deadline_ms = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX);
        let run_by_ms = self
            .clock
            .now_ms(&self.redis, &keys.stock)
            .await?
            .saturating_add(deadline_ms);
        let reply: ReserveReply = self
            .redis
            .call(async |c| {
                scripts::RESERVE
                    .key(&keys.reserve()[..])
                    .arg(event.user_id.as_str())
                    .arg(event.order_id.as_str())
                    .arg(payload)
                    .arg(run_by_ms)
                    .arg(event.pay_by.timestamp_millis())
                    .invoke_async(c)
                    .await
            })
            .await
            .inspect_err(|_| {
                // The sale may have moved to another master (a failover, a resharding),
                // whose clock this reading is not.
                self.clock.forget(&keys.stock);
            })?;
        match reply {
            ReserveReply::Decided(reservation) => {
                if matches!(reservation, Reservation::Reserved { .. }) {
                    self.confirmed_by_replica(&keys.stock, "lock").await?;
                }
                Ok(reservation)
            }
            ReserveReply::Late => {
                // The script ran past its run-by time and did nothing.
                self.clock.forget(&keys.stock);
                Err(StoreError::Timeout(deadline))
            }
        }
    }

    async fn pay_by(&self, order_id: &OrderId) -> Result<Option<i64>, StoreError> {
        let key = self.redis.keys().sale(&order_id.sale_id()).deadlines;
        let score: Option<f64> = self
            .redis
            .call(async |c| c.zscore(&key, order_id.as_str()).await)
            .await?;
        Ok(score.map(|ms| ms as i64))
    }

    async fn buyers_order(
        &self,
        sale_id: &SaleId,
        user_id: &UserId,
    ) -> Result<Option<OrderId>, StoreError> {
        let buyers = self.redis.keys().sale(sale_id).buyers;
        let order: Option<String> = self
            .redis
            .call(async |c| c.hget(&buyers, user_id.as_str()).await)
            .await?;
        Ok(parse_all(order.into_iter().collect(), "buyers").pop())
    }

    async fn order_status(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
    ) -> Result<Option<OrderStatus>, StoreError> {
        let keys = self.redis.keys().sale(&order_id.sale_id());
        let (owned_order, status): (Option<String>, Option<String>) = self
            .redis
            .call(async |c| {
                redis::pipe()
                    .hget(&keys.buyers, user_id.as_str())
                    .hget(&keys.status, order_id.as_str())
                    .query_async(c)
                    .await
            })
            .await?;
        if owned_order.as_deref() != Some(order_id.as_str()) {
            return Ok(None);
        }
        Ok(Some(OrderStatus::from_stored(status.as_deref())))
    }

    /// On Redis Cluster, a fence written under the sale's tag (it expires by itself), then a
    /// replica's confirmation of it.
    async fn confirm_written(&self, sale_id: &SaleId) -> Result<(), StoreError> {
        if self.redis.replica_wait_applies() {
            let fence = self.redis.keys().sale(sale_id).fence;
            self.redis
                .call(async |c| {
                    redis::cmd("SET")
                        .arg(&fence)
                        .arg(1)
                        .arg("PX")
                        .arg(60_000)
                        .query_async::<()>(c)
                        .await
                })
                .await?;
            self.confirmed_by_replica(&fence, "fence").await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Payments for RedisStockLedger {
    /// One round trip: `begin_payment.lua`; on Redis Cluster a recorded intent then waits for a
    /// replica ([`Self::confirmed_by_replica`]).
    async fn begin_payment(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
        amount_cents: i64,
    ) -> Result<PaymentIntent, StoreError> {
        let keys = self.redis.keys().sale(&order_id.sale_id());
        let intent = self
            .redis
            .call(async |c| {
                scripts::BEGIN_PAYMENT
                    .key(&keys.buyers)
                    .key(&keys.status)
                    .key(&keys.deadlines)
                    .key(&keys.payments)
                    .key(&keys.payments_due)
                    .arg(user_id.as_str())
                    .arg(order_id.as_str())
                    .arg(amount_cents)
                    .invoke_async(c)
                    .await
            })
            .await?;
        // The intent must outlive a failover before anyone is charged: the resolver finds a
        // charge through it.
        if intent == PaymentIntent::Recorded {
            self.confirmed_by_replica(&keys.payments, "payment").await?;
        }
        Ok(intent)
    }

    /// One round trip: `pay.lua`.
    async fn pay(&self, order_id: &OrderId, user_id: &UserId) -> Result<Payment, StoreError> {
        let keys = self.redis.keys().sale(&order_id.sale_id());
        self.redis
            .call(async |c| {
                scripts::PAY
                    .key(&keys.buyers)
                    .key(&keys.status)
                    .key(&keys.deadlines)
                    .key(&keys.transition_outbox()[..])
                    .key(&keys.payments)
                    .key(&keys.payments_due)
                    .arg(user_id.as_str())
                    .arg(order_id.as_str())
                    .invoke_async(c)
                    .await
            })
            .await
    }

    /// One round trip: `claim_payments.lua`.
    async fn claim_payments(
        &self,
        sale_id: &SaleId,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<DuePayment>, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let flat: Vec<String> = self
            .redis
            .call(async |c| {
                scripts::CLAIM_PAYMENTS
                    .key(&keys.payments_due)
                    .key(&keys.owners)
                    .key(&keys.status)
                    .arg(before_ms)
                    .arg(limit)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(flat
            .chunks_exact(3)
            .filter_map(|due| {
                let parsed = (due[0].parse(), due[1].parse(), OrderStatus::named(&due[2]));
                let (Ok(order_id), Ok(user_id), Some(status)) = parsed else {
                    tracing::error!(
                        order_id = due[0],
                        user_id = due[1],
                        status = due[2],
                        "malformed payment intent in Redis; skipped"
                    );
                    return None;
                };
                Some(DuePayment {
                    order_id,
                    user_id,
                    status,
                })
            })
            .collect())
    }

    async fn open_payments(&self, sale_id: &SaleId) -> Result<u64, StoreError> {
        let key = self.redis.keys().sale(sale_id).payments_due;
        self.redis.call(async |c| c.zcard(&key).await).await
    }

    async fn settle_payment(&self, order_id: &OrderId) -> Result<(), StoreError> {
        let keys = self.redis.keys().sale(&order_id.sale_id());
        self.redis
            .call(async |c| {
                redis::pipe()
                    .atomic()
                    .hdel(&keys.payments, order_id.as_str())
                    .ignore()
                    .zrem(&keys.payments_due, order_id.as_str())
                    .ignore()
                    .query_async::<()>(c)
                    .await
            })
            .await
    }
}

#[async_trait]
impl Outbox for RedisStockLedger {
    /// `acknowledge.lua` once per sale, each sale's pipelined round trip run concurrently.
    async fn mark_published(&self, orders: &[OrderId]) -> Result<(), StoreError> {
        let pipes: Vec<_> = grouped(orders, |order| order.sale_id())
            .iter()
            .map(|(sale_id, orders)| {
                let keys = self.redis.keys().sale(sale_id);
                let mut invocation = scripts::ACKNOWLEDGE.key(keys.unpublished);
                invocation.key(keys.acknowledged);
                for order in orders {
                    invocation.arg(order.as_str());
                }
                let mut pipe = redis::pipe();
                // Loaded in the same round trip: the sale's master may never have seen it.
                pipe.cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(scripts::ACKNOWLEDGE_SOURCE)
                    .ignore()
                    .invoke_script(&invocation)
                    .ignore();
                pipe
            })
            .collect();
        self.redis.pipelines::<()>(&pipes).await.map(drop)
    }

    /// One round trip: `claim_transitions.lua`.
    async fn due_transitions(
        &self,
        sale_id: &SaleId,
        limit: usize,
        redeliver_after: Duration,
    ) -> Result<Vec<DueTransition>, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let pairs: Vec<(String, String)> = self
            .redis
            .call(async |c| {
                scripts::CLAIM_TRANSITIONS
                    .key(&keys.transitions)
                    .key(&keys.transitions_due)
                    .arg(limit)
                    .arg(redeliver_after.as_millis() as u64)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(pairs
            .into_iter()
            .map(|(event_id, payload)| DueTransition { event_id, payload })
            .collect())
    }

    /// One pipelined round trip, as [`Self::mark_transitions_published`].
    async fn discard_transition(&self, sale_id: &SaleId, event_id: &str) -> Result<(), StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        self.redis
            .call(async |c| {
                redis::pipe()
                    .hdel(&keys.transitions, event_id)
                    .ignore()
                    .zrem(&keys.transitions_due, event_id)
                    .ignore()
                    .query_async::<()>(c)
                    .await
            })
            .await
    }

    /// One pipelined round trip per sale, run concurrently: HDEL from the outbox, then ZREM
    /// from the due set (should the second fail, the next claim finds the event gone and drops
    /// it).
    async fn mark_transitions_published(&self, events: &[TransitionId]) -> Result<(), StoreError> {
        let pipes: Vec<_> = grouped(events, |event| event.order_id.sale_id())
            .iter()
            .map(|(sale_id, events)| {
                let keys = self.redis.keys().sale(sale_id);
                let mut pipe = redis::pipe();
                for event in events {
                    let event_id = event.event_id();
                    pipe.hdel(&keys.transitions, &event_id)
                        .ignore()
                        .zrem(&keys.transitions_due, &event_id)
                        .ignore();
                }
                pipe
            })
            .collect();
        self.redis.pipelines::<()>(&pipes).await.map(drop)
    }

    /// Two round trips (ZRANGEBYSCORE, then HMGET); an entry completed in between comes back
    /// without its payload, which the reconciler skips.
    async fn stale_entries(
        &self,
        sale_id: &SaleId,
        publication: Publication,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let set = match publication {
            Publication::Unacknowledged => &keys.unpublished,
            Publication::Acknowledged => &keys.acknowledged,
        };
        let orders: Vec<String> = self
            .redis
            .call(async |c| {
                c.zrangebyscore_limit(set, "-inf", before_ms, 0, limit as isize)
                    .await
            })
            .await?;
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let payloads: Vec<Option<String>> = self
            .redis
            .call(async |c| {
                redis::cmd("HMGET")
                    .arg(&keys.outbox)
                    .arg(&orders)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(orders
            .into_iter()
            .zip(payloads)
            .filter_map(|(order_id, payload)| {
                let order_id = parse_all(vec![order_id], "outbox sets").pop()?;
                Some(OutboxEntry { order_id, payload })
            })
            .collect())
    }

    /// `ZADD XX` on both sets: whichever holds an order is updated, neither gains one. One
    /// pipelined round trip per sale, run concurrently.
    async fn defer(&self, orders: &[OrderId], at_ms: i64) -> Result<(), StoreError> {
        let pipes: Vec<_> = grouped(orders, |order| order.sale_id())
            .iter()
            .map(|(sale_id, orders)| {
                let keys = self.redis.keys().sale(sale_id);
                let mut pipe = redis::pipe();
                for order in orders {
                    for set in [&keys.unpublished, &keys.acknowledged] {
                        pipe.cmd("ZADD")
                            .arg(set)
                            .arg("XX")
                            .arg(at_ms)
                            .arg(order.as_str())
                            .ignore();
                    }
                }
                pipe
            })
            .collect();
        self.redis.pipelines::<()>(&pipes).await.map(drop)
    }

    async fn outbox_sizes(&self, sale_id: &SaleId) -> Result<OutboxSizes, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let (locked, unacknowledged) = self
            .redis
            .call(async |c| {
                redis::pipe()
                    .hlen(&keys.outbox)
                    .zcard(&keys.unpublished)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(OutboxSizes {
            locked,
            unacknowledged,
        })
    }

    async fn outbox(&self, sale_id: &SaleId) -> Result<HashMap<OrderId, String>, StoreError> {
        let key = self.redis.keys().sale(sale_id).outbox;
        let entries: HashMap<String, String> =
            self.redis.call(async |c| c.hgetall(&key).await).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(order_id, payload)| Some((order_id.parse().ok()?, payload)))
            .collect())
    }

    async fn in_outbox(
        &self,
        sale_id: &SaleId,
        orders: &[&OrderId],
    ) -> Result<HashSet<OrderId>, StoreError> {
        let key = self.redis.keys().sale(sale_id).outbox;
        let mut pipe = redis::pipe();
        for order in orders {
            pipe.hexists(&key, order.as_str());
        }
        let found: Vec<bool> = self.redis.call(async |c| pipe.query_async(c).await).await?;
        Ok(orders
            .iter()
            .zip(found)
            .filter(|(_, found)| *found)
            .map(|(order, _)| (*order).clone())
            .collect())
    }
}

#[async_trait]
impl OrderLifecycle for RedisStockLedger {
    /// One round trip: `complete_order.lua`.
    async fn complete_orders(
        &self,
        sale_id: &SaleId,
        orders: &[&OrderId],
    ) -> Result<u64, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        self.redis
            .call(async |c| {
                let mut invocation = scripts::COMPLETE_ORDER.key(&keys.outbox);
                invocation
                    .key(&keys.unpublished)
                    .key(&keys.status)
                    .key(&keys.acknowledged)
                    .key(&keys.transition_outbox()[..]);
                for order in orders {
                    invocation.arg(order.as_str());
                }
                invocation.invoke_async(c).await
            })
            .await
    }

    /// One round trip: `fail_orders.lua`.
    async fn fail_orders(&self, sale_id: &SaleId, orders: &[&OrderId]) -> Result<(), StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        self.redis
            .call(async |c| {
                let mut invocation = scripts::FAIL_ORDERS.key(&keys.outbox);
                invocation
                    .key(&keys.unpublished)
                    .key(&keys.acknowledged)
                    .key(&keys.status)
                    .key(&keys.deadlines)
                    .key(&keys.stock)
                    .key(&keys.transition_outbox()[..])
                    .key(&keys.payments)
                    .key(&keys.payments_due);
                for order in orders {
                    invocation.arg(order.as_str());
                }
                invocation.invoke_async::<()>(c).await
            })
            .await
    }

    /// One round trip: `expire_due.lua`.
    async fn expire_due(&self, sale_id: &SaleId, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let expired: Vec<String> = self
            .redis
            .call(async |c| {
                scripts::EXPIRE_DUE
                    .key(&keys.deadlines)
                    .key(&keys.status)
                    .key(&keys.stock)
                    .key(&keys.transition_outbox()[..])
                    .arg(limit)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(parse_all(expired, "deadlines"))
    }
}

/// Writes on Redis Cluster (stock locks, payment intents) that no replica confirmed within
/// `REDIS_REPLICA_WAIT_MS`, by `write`: each was answered as unconfirmed, not as done
/// (docs/architecture.md, "What a 202 survives").
pub const UNCONFIRMED_WRITES_TOTAL: &str = "seckill_redis_unconfirmed_writes_total";

impl RedisStockLedger {
    /// On Redis Cluster, waits until a replica holds the write just made on `key`'s master (a
    /// `WAIT` shared with the writes made meanwhile); a write no replica confirmed in time is
    /// [`StoreError::Unconfirmed`]: it stands on its master, but a failover could lose it, so
    /// it must not be answered as done. On one node, nothing to wait for.
    async fn confirmed_by_replica(&self, key: &str, write: &'static str) -> Result<(), StoreError> {
        match self.redis.confirm_replicated(key).await {
            None | Some(Ok(1..)) => Ok(()),
            Some(outcome) => {
                metrics::counter!(UNCONFIRMED_WRITES_TOTAL, "write" => write).increment(1);
                tracing::debug!(?outcome, key, "no replica confirmed the write in time");
                Err(StoreError::Unconfirmed(self.redis.replica_wait()))
            }
        }
    }
}

/// The ids among `raw` that parse; a malformed one (written by hand, or by another program)
/// is logged and skipped rather than failing the whole read.
fn parse_all<T: std::str::FromStr>(raw: Vec<String>, source: &str) -> Vec<T> {
    raw.into_iter()
        .filter_map(|id| {
            let parsed = id.parse().ok();
            if parsed.is_none() {
                tracing::error!(id, source, "malformed id in Redis; skipped");
            }
            parsed
        })
        .collect()
}
