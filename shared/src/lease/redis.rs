//! Leases in Redis: a key holding the holder's id, with an expiry (`lease.lua`).

use std::time::Duration;

use async_trait::async_trait;

use super::Leases;
use crate::error::StoreError;
use crate::redis_client::Redis;
use crate::scripts;

#[derive(Clone)]
pub struct RedisLeases {
    redis: Redis,
}

impl RedisLeases {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl Leases for RedisLeases {
    /// One round trip: `lease.lua`.
    async fn hold(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.redis.keys().lease(name);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.redis
            .call(async |c| {
                scripts::LEASE
                    .key(&key)
                    .arg(holder)
                    .arg(ttl_ms)
                    .invoke_async(c)
                    .await
            })
            .await
    }
}
