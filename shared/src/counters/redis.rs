//! Counters in Redis: a hash of values and a sorted set of applied event ids, both under the
//! counter set's own hash tag (one slot on a cluster), changed together by
//! `counters_add_once.lua`.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{Counters, Increment};
use crate::error::StoreError;
use crate::keys::CounterKeys;
use crate::redis_client::Redis;
use crate::scripts;

#[derive(Clone)]
pub struct RedisCounters {
    redis: Redis,
    keys: CounterKeys,
    retention: Duration,
}

impl RedisCounters {
    /// The counter set `name`, remembering applied event ids for `retention`.
    pub fn new(redis: Redis, name: &str, retention: Duration) -> Self {
        Self {
            keys: redis.keys().counters(name),
            redis,
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
                let mut invocation = scripts::COUNTERS_ADD_ONCE.key(&self.keys.applied);
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
