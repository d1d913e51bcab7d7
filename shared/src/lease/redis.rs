//! Leases in Redis: a key holding the holder's id, with an expiry (`lease.lua`).

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::Leases;
use crate::error::StoreError;
use crate::keys::KeySpace;
use crate::redis_client::Redis;

static ACQUIRE_OR_RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/lease.lua")));

#[derive(Clone)]
pub struct RedisLeases {
    redis: Redis,
    keys: KeySpace,
}

impl RedisLeases {
    pub fn new(redis: Redis, keys: KeySpace) -> Self {
        Self { redis, keys }
    }
}

#[async_trait]
impl Leases for RedisLeases {
    /// One round trip: `lease.lua`.
    async fn hold(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.keys.lease(name);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.redis
            .call(async |c| {
                ACQUIRE_OR_RENEW
                    .key(&key)
                    .arg(holder)
                    .arg(ttl_ms)
                    .invoke_async(c)
                    .await
            })
            .await
    }
}
