//! The stock ledger in Redis: the only place a purchase is decided.
//!
//! Each operation that must be atomic is one Lua script (loaded once, run with EVALSHA; the
//! redis crate reloads it on NOSCRIPT), and each script touches only keys of one sale, so the
//! scripts run unchanged on Redis Cluster. (The connection itself is a single-node
//! multiplexed one; a cluster deployment would swap in the redis crate's cluster client.) Replies become typed outcomes here; callers never see
//! the script's strings.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::event::ReservationEvent;
use crate::ids::OrderId;
use crate::keys::KeySpace;
use crate::redis_client::{Redis, RedisCallError};
use crate::sale::Sale;

static RESERVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/reserve.lua")));
static CREATE_SALE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/create_sale.lua")));
static COMPLETE_ORDER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/complete_order.lua")));

/// What the stock lock decided for one purchase attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// One unit is locked for the buyer; `remaining` units are left.
    Reserved { remaining: u32 },
    /// The buyer already holds a unit of this sale, under `order_id`; nothing changed.
    AlreadyPurchased { order_id: String },
    /// No unit left; nothing changed.
    SoldOut,
    /// No such sale; nothing changed.
    UnknownSale,
}

/// Where an order stands, as the buyer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted; the order row is not written yet.
    Processing,
    /// The order row is in PostgreSQL.
    Created,
    /// The order could not be created (its event went to the dead-letter topic).
    Failed,
}

/// Stock, buyers, outbox and order status of every sale, in Redis.
#[derive(Clone)]
pub struct StockLedger {
    redis: Redis,
    keys: KeySpace,
}

impl StockLedger {
    pub fn new(redis: Redis, keys: KeySpace) -> Self {
        Self { redis, keys }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// Stores a new sale and its stock counter; `false` when the id is taken (nothing changed).
    pub async fn create_sale(&self, sale: &Sale) -> Result<bool, RedisCallError> {
        let keys = self.keys.sale(&sale.id);
        let json = serde_json::to_string(sale).expect("a Sale always serialises");
        // Index first: if the script then fails, a stray id in the index is harmless, while a
        // sale missing from it would escape the reconciler.
        let index = self.keys.sales_index();
        self.redis
            .call(async |c| c.sadd::<_, _, ()>(&index, &sale.id).await)
            .await?;
        let created: bool = self
            .redis
            .call(async |c| {
                CREATE_SALE
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

    /// The sale with this id, if it exists.
    pub async fn sale(&self, sale_id: &str) -> Result<Option<Sale>, RedisCallError> {
        let key = self.keys.sale(sale_id).info;
        let json: Option<String> = self.redis.call(async |c| c.get(&key).await).await?;
        Ok(json.and_then(|json| match serde_json::from_str(&json) {
            Ok(sale) => Some(sale),
            Err(error) => {
                tracing::error!(%error, sale_id, "stored sale is not valid JSON; treating it as absent");
                None
            }
        }))
    }

    /// Units left, or `None` for an unknown sale.
    pub async fn remaining(&self, sale_id: &str) -> Result<Option<u32>, RedisCallError> {
        let key = self.keys.sale(sale_id).stock;
        self.redis.call(async |c| c.get(&key).await).await
    }

    /// The stock lock: one round trip that checks the buyer, checks the stock and, only when
    /// both allow it, takes a unit and records the buyer, the outbox entry and the status.
    /// `payload` is `event.to_json()`, passed in so the caller encodes once and publishes the
    /// very bytes the outbox holds.
    pub async fn reserve(
        &self,
        event: &ReservationEvent,
        payload: &str,
    ) -> Result<Reservation, RedisCallError> {
        let keys = self.keys.sale(&event.sale_id);
        let (outcome, remaining, existing_order): (String, i64, String) = self
            .redis
            .call(async |c| {
                RESERVE
                    .key(&keys.stock)
                    .key(&keys.buyers)
                    .key(&keys.outbox)
                    .key(&keys.unpublished)
                    .key(&keys.status)
                    .arg(&event.user_id)
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
                order_id: existing_order,
            },
            "sold_out" => Reservation::SoldOut,
            "unknown_sale" => Reservation::UnknownSale,
            other => {
                return Err(RedisCallError::Failed(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "unexpected reply from reserve.lua",
                    other.to_owned(),
                ))));
            }
        })
    }

    /// Records the broker's acknowledgement of these orders' events, so the reconciler leaves
    /// them alone. One pipelined round trip for the whole batch.
    pub async fn mark_published(&self, orders: &[OrderId]) -> Result<(), RedisCallError> {
        if orders.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for order in orders {
            pipe.zrem(self.keys.sale(order.sale_id()).unpublished, order.as_str())
                .ignore();
        }
        self.redis
            .call(async |c| pipe.query_async::<()>(c).await)
            .await
    }

    /// Marks orders of one sale as created and removes them from the outbox; returns how
    /// many outbox entries were removed. Idempotent.
    pub async fn complete_orders(
        &self,
        sale_id: &str,
        orders: &[&OrderId],
    ) -> Result<u64, RedisCallError> {
        let keys = self.keys.sale(sale_id);
        self.redis
            .call(async |c| {
                let mut invocation = COMPLETE_ORDER.key(&keys.outbox);
                invocation.key(&keys.unpublished).key(&keys.status);
                for order in orders {
                    invocation.arg(order.as_str());
                }
                invocation.invoke_async(c).await
            })
            .await
    }

    /// Marks orders of one sale as failed (their events went to the dead-letter topic) and
    /// takes them out of the reconciler's reach. Their outbox entries stay, so each unit stays
    /// accounted for until an operator resolves it.
    pub async fn fail_orders(
        &self,
        sale_id: &str,
        orders: &[&OrderId],
    ) -> Result<(), RedisCallError> {
        let keys = self.keys.sale(sale_id);
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

    /// Every sale id ever created.
    pub async fn sale_ids(&self) -> Result<Vec<String>, RedisCallError> {
        let key = self.keys.sales_index();
        self.redis.call(async |c| c.smembers(&key).await).await
    }

    /// Up to `limit` orders of one sale whose publish was not acknowledged and that were
    /// reserved before `before_ms` (unix ms), each with its outbox payload (`None` when the
    /// order was created meanwhile and its entry is gone).
    pub async fn stale_unpublished(
        &self,
        sale_id: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>, RedisCallError> {
        let keys = self.keys.sale(sale_id);
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
        Ok(orders.into_iter().zip(payloads).collect())
    }

    /// Moves unacknowledged orders' timestamps to `at_ms`, so the reconciler does not publish
    /// them again before the next `min_age` has passed (`XX`: never re-adds an order
    /// acknowledged meanwhile). One pipelined round trip.
    pub async fn defer_unpublished(
        &self,
        orders: &[OrderId],
        at_ms: i64,
    ) -> Result<(), RedisCallError> {
        if orders.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for order in orders {
            pipe.cmd("ZADD")
                .arg(self.keys.sale(order.sale_id()).unpublished)
                .arg("XX")
                .arg(at_ms)
                .arg(order.as_str())
                .ignore();
        }
        self.redis
            .call(async |c| pipe.query_async::<()>(c).await)
            .await
    }

    /// Sizes of one sale's outbox (locked, no order row yet) and of its unacknowledged part.
    pub async fn outbox_sizes(&self, sale_id: &str) -> Result<(u64, u64), RedisCallError> {
        let keys = self.keys.sale(sale_id);
        self.redis
            .call(async |c| {
                redis::pipe()
                    .hlen(&keys.outbox)
                    .zcard(&keys.unpublished)
                    .query_async(c)
                    .await
            })
            .await
    }

    /// The order's status, if `user_id` owns it. Anyone else learns nothing, not even that it
    /// exists.
    pub async fn order_status(
        &self,
        order_id: &OrderId,
        user_id: &str,
    ) -> Result<Option<OrderStatus>, RedisCallError> {
        let keys = self.keys.sale(order_id.sale_id());
        let (owned_order, status): (Option<String>, Option<String>) = self
            .redis
            .call(async |c| {
                redis::pipe()
                    .hget(&keys.buyers, user_id)
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

    /// The outbox of one sale: order id → event JSON.
    pub async fn outbox(&self, sale_id: &str) -> Result<HashMap<String, String>, RedisCallError> {
        let key = self.keys.sale(sale_id).outbox;
        self.redis.call(async |c| c.hgetall(&key).await).await
    }
}
