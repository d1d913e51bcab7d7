//! Coordination facts in Redis: the blacklist set and its version counter, leases as keys with
//! an expiry, SMS records as keys with an expiry beside their sale's other keys.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::Coordination;
use crate::backends::StoreError;
use crate::ids::OrderId;
use crate::keys::KeySpace;
use crate::redis_client::Redis;

static ACQUIRE_OR_RENEW_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/lease.lua")));

#[derive(Clone)]
pub struct RedisCoordination {
    redis: Redis,
    keys: KeySpace,
}

impl RedisCoordination {
    pub fn new(redis: Redis, keys: KeySpace) -> Self {
        Self { redis, keys }
    }

    fn sms_record(&self, order: &OrderId) -> String {
        let prefix = self.keys.sale(order.sale_id()).sms_sent_prefix;
        format!("{prefix}:{order}")
    }
}

#[async_trait]
impl Coordination for RedisCoordination {
    /// One MULTI: the set changes and the version moves together.
    async fn set_blacklisted(&self, user_id: &str, banned: bool) -> Result<(), StoreError> {
        let (set, version) = (self.keys.blacklist(), self.keys.blacklist_version());
        let mut pipe = redis::pipe();
        pipe.atomic();
        if banned {
            pipe.sadd(&set, user_id);
        } else {
            pipe.srem(&set, user_id);
        }
        pipe.ignore().incr(&version, 1).ignore();
        self.redis
            .call(async |c| pipe.query_async::<()>(c).await)
            .await
    }

    async fn blacklist_since(
        &self,
        known_version: i64,
    ) -> Result<(i64, Option<HashSet<String>>), StoreError> {
        let version_key = self.keys.blacklist_version();
        let version = self
            .redis
            .call(async |c| c.get::<_, Option<i64>>(&version_key).await)
            .await?
            .unwrap_or(0);
        if version == known_version {
            return Ok((version, None));
        }
        // The set and the version are read in two steps; a change in between moves the
        // version again, so the next poll reloads.
        let set = self.keys.blacklist();
        let users = self.redis.call(async |c| c.smembers(&set).await).await?;
        Ok((version, Some(users)))
    }

    /// One round trip: `lease.lua`.
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.keys.lease(name);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.redis
            .call(async |c| {
                ACQUIRE_OR_RENEW_LEASE
                    .key(&key)
                    .arg(holder)
                    .arg(ttl_ms)
                    .invoke_async(c)
                    .await
            })
            .await
    }

    async fn sms_sent(&self, order: &OrderId) -> Result<bool, StoreError> {
        let record = self.sms_record(order);
        self.redis.call(async |c| c.exists(&record).await).await
    }

    async fn record_sms_sent(&self, order: &OrderId, ttl: Duration) -> Result<(), StoreError> {
        let record = self.sms_record(order);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.redis
            .call(async |c| c.pset_ex::<_, _, ()>(&record, 1, ttl_ms).await)
            .await
    }
}
