//! A lease in Redis, so exactly one instance of a periodic job runs at a time.
//!
//! Whoever holds the key runs the job and renews the key before it expires; if that instance
//! dies, the key expires and another instance takes over within one lease period.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use shared::redis_client::{Redis, RedisCallError};

static ACQUIRE_OR_RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/lease.lua")));

pub struct Lease {
    redis: Redis,
    key: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// A lease on `key` for this process (a random holder id).
    pub fn new(redis: Redis, key: String, ttl: Duration) -> Self {
        Self {
            redis,
            key,
            holder: uuid::Uuid::new_v4().to_string(),
            ttl,
        }
    }

    /// Whether this process holds the lease now (acquiring or renewing it).
    pub async fn hold(&self) -> Result<bool, RedisCallError> {
        let ttl_ms = self.ttl.as_millis() as u64;
        self.redis
            .call(async |c| {
                ACQUIRE_OR_RENEW
                    .key(&self.key)
                    .arg(&self.holder)
                    .arg(ttl_ms)
                    .invoke_async(c)
                    .await
            })
            .await
    }
}
