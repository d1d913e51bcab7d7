//! The stock ledger in Redis, shared by every gateway and worker process.
//!
//! Each operation that must be atomic is one Lua script (loaded once, run with EVALSHA; the
//! redis crate reloads it on NOSCRIPT) or one MULTI, and each touches only keys of one sale,
//! so the scripts run unchanged on Redis Cluster. (The connection itself is a single-node
//! multiplexed one; a cluster deployment would swap in the redis crate's cluster client.)
//! Replies become typed outcomes here; callers never see the script's strings.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{OrderStatus, OutboxSizes, Reservation, StockLedger, Unpublished};
use crate::error::StoreError;
use crate::event::ReservationEvent;
use crate::ids::{OrderId, SaleId, UserId};
use crate::redis_client::Redis;
use crate::sale::Sale;
use crate::scripts;

/// Stock, buyers, outbox and order status of every sale, in Redis.
#[derive(Clone)]
pub struct RedisStockLedger {
    pub redis: Redis,
}

#[async_trait]
impl StockLedger for RedisStockLedger {
    async fn create_sale(&self, sale: &Sale) -> Result<bool, StoreError> {
        let keys = self.redis.keys().sale(&sale.id);
        let json = serde_json::to_string(sale).expect("a Sale always serialises");
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

    /// One round trip: `reserve.lua`.
    async fn reserve(
        &self,
        event: &ReservationEvent,
        payload: &str,
    ) -> Result<Reservation, StoreError> {
        let keys = self.redis.keys().sale(&event.sale_id);
        let (outcome, remaining, existing_order): (String, i64, String) = self
            .redis
            .call(async |c| {
                scripts::RESERVE
                    .key(&keys.stock)
                    .key(&keys.buyers)
                    .key(&keys.outbox)
                    .key(&keys.unpublished)
                    .key(&keys.status)
                    .arg(event.user_id.as_str())
                    .arg(event.order_id.as_str())
                    .arg(payload)
                    .arg(event.reserved_at.timestamp_millis())
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(match outcome.as_str() {
            "reserved" => Reservation::Reserved {
                remaining: u32::try_from(remaining).unwrap_or(0),
            },
            "already_purchased" => Reservation::AlreadyPurchased {
                order_id: existing_order.parse().map_err(|error| {
                    StoreError::Failed(
                        format!("reserve.lua returned a malformed order id: {error}").into(),
                    )
                })?,
            },
            "sold_out" => Reservation::SoldOut,
            "unknown_sale" => Reservation::UnknownSale,
            other => {
                return Err(StoreError::Failed(
                    format!("unexpected reply from reserve.lua: {other}").into(),
                ));
            }
        })
    }

    /// One pipelined round trip for the whole batch.
    async fn mark_published(&self, orders: &[OrderId]) -> Result<(), StoreError> {
        if orders.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for order in orders {
            pipe.zrem(
                self.redis.keys().sale(&order.sale_id()).unpublished,
                order.as_str(),
            )
            .ignore();
        }
        self.redis
            .call(async |c| pipe.query_async::<()>(c).await)
            .await
    }

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
                invocation.key(&keys.unpublished).key(&keys.status);
                for order in orders {
                    invocation.arg(order.as_str());
                }
                invocation.invoke_async(c).await
            })
            .await
    }

    /// One MULTI for the batch.
    async fn fail_orders(&self, sale_id: &SaleId, orders: &[&OrderId]) -> Result<(), StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for order in orders {
            pipe.hset(&keys.status, order.as_str(), "failed")
                .ignore()
                .zrem(&keys.unpublished, order.as_str())
                .ignore();
        }
        self.redis
            .call(async |c| pipe.query_async::<()>(c).await)
            .await
    }

    async fn sale_ids(&self) -> Result<Vec<SaleId>, StoreError> {
        let key = self.redis.keys().sales_index();
        let ids: Vec<String> = self.redis.call(async |c| c.smembers(&key).await).await?;
        Ok(parse_all(ids, "sales index"))
    }

    /// Two round trips (ZRANGEBYSCORE, then HMGET); an entry completed in between comes back
    /// without its payload, which the reconciler skips.
    async fn stale_unpublished(
        &self,
        sale_id: &SaleId,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Unpublished>, StoreError> {
        let keys = self.redis.keys().sale(sale_id);
        let orders: Vec<String> = self
            .redis
            .call(async |c| {
                c.zrangebyscore_limit(&keys.unpublished, "-inf", before_ms, 0, limit as isize)
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
        Ok(parse_all(orders, "unpublished set")
            .into_iter()
            .zip(payloads)
            .map(|(order_id, payload)| Unpublished { order_id, payload })
            .collect())
    }

    /// `ZADD XX` never re-adds an order acknowledged meanwhile. One pipelined round trip.
    async fn defer_unpublished(&self, orders: &[OrderId], at_ms: i64) -> Result<(), StoreError> {
        if orders.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for order in orders {
            pipe.cmd("ZADD")
                .arg(self.redis.keys().sale(&order.sale_id()).unpublished)
                .arg("XX")
                .arg(at_ms)
                .arg(order.as_str())
                .ignore();
        }
        self.redis
            .call(async |c| pipe.query_async::<()>(c).await)
            .await
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
        Ok(Some(match status.as_deref() {
            Some("created") => OrderStatus::Created,
            Some("failed") => OrderStatus::Failed,
            _ => OrderStatus::Processing,
        }))
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
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
