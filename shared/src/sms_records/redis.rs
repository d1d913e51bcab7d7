//! SMS records in Redis: one key per message (order and kind), beside its sale's other keys, holding `sent` or
//! the claim of its sender, each with an expiry.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{Claim, SmsId, SmsRecords};
use crate::error::StoreError;
use crate::redis_client::Redis;
use crate::scripts;

pub struct RedisSmsRecords {
    redis: Redis,
}

impl RedisSmsRecords {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

impl RedisSmsRecords {
    fn record(&self, message: &SmsId) -> String {
        let prefix = self
            .redis
            .keys()
            .sale(&message.order_id.sale_id())
            .sms_sent_prefix;
        format!("{prefix}:{message}")
    }
}

#[async_trait]
impl SmsRecords for RedisSmsRecords {
    /// One round trip: `sms_claim.lua`.
    async fn claim(
        &self,
        message: &SmsId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let record = self.record(message);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.redis
            .call(async |c| {
                scripts::SMS_CLAIM
                    .key(&record)
                    .arg(holder)
                    .arg(ttl_ms)
                    .invoke_async(c)
                    .await
            })
            .await
    }

    async fn record_sent(&self, message: &SmsId, ttl: Duration) -> Result<(), StoreError> {
        let record = self.record(message);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.redis
            .call(async |c| c.pset_ex::<_, _, ()>(&record, "sent", ttl_ms).await)
            .await
    }

    /// One round trip: `sms_release.lua`.
    async fn release(&self, message: &SmsId, holder: &str) -> Result<(), StoreError> {
        let record = self.record(message);
        self.redis
            .call(async |c| {
                scripts::SMS_RELEASE
                    .key(&record)
                    .arg(holder)
                    .invoke_async::<()>(c)
                    .await
            })
            .await
    }
}

/// `sms_claim.lua`'s answer.
impl redis::FromRedisValue for Claim {
    fn from_redis_value(reply: redis::Value) -> Result<Self, redis::ParsingError> {
        scripts::one_of(
            reply,
            &[
                ("mine", Self::Mine),
                ("sent", Self::Sent),
                ("theirs", Self::Theirs),
            ],
        )
    }
}
