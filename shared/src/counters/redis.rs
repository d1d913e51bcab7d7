//! Counters in Redis: a hash of values and a sorted set of applied event ids, both under the
//! counter set's own hash tag (one slot on a cluster), changed together by
//! `counters_add_once.lua`.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::{Counters, Increment};
use crate::error::StoreError;
use crate::keys::CounterKeys;
use crate::redis_client::Redis;

static ADD_ONCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/counters_add_once.lua")));

#[derive(Clone)]
pub struct RedisCounters {
    redis: Redis,
    keys: CounterKeys,
    retention: Duration,
}

impl RedisCounters {
    /// The counter set behind `keys`, remembering applied event ids for `retention`.
    pub fn new(redis: Redis, keys: CounterKeys, retention: Duration) -> Self {
        Self {
            redis,
            keys,
            retention,
        }
    }
}

#[async_trait]
impl Counters for RedisCounters {
    /// One round trip for the whole batch.
    async fn add_once(&self, increments: &[Increment<'_>]) -> Result<u64, StoreError> {
        if increments.is_empty() {
            return Ok(0);
        }
        self.redis
            .call(async |c| {
                let mut invocation = ADD_ONCE.key(&self.keys.applied);
                invocation
                    .key(&self.keys.values)
                    .arg(self.retention.as_millis() as u64);
                for increment in increments {
                    invocation
                        .arg(increment.event_id.to_string())
                        .arg(increment.key)
                        .arg(increment.amount);
                }
                invocation.invoke_async(c).await
            })
            .await
    }

    async fn get(&self, key: &str) -> Result<i64, StoreError> {
        let values = &self.keys.values;
        let value: Option<i64> = self.redis.call(async |c| c.hget(values, key).await).await?;
        Ok(value.unwrap_or(0))
    }
}
