//! SMS records in Redis: one key per order, with an expiry, beside its sale's other keys.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::SmsRecords;
use crate::error::StoreError;
use crate::ids::OrderId;
use crate::redis_client::Redis;

#[derive(Clone)]
pub struct RedisSmsRecords {
    pub redis: Redis,
}

impl RedisSmsRecords {
    fn record(&self, order: &OrderId) -> String {
        let prefix = self.redis.keys().sale(&order.sale_id()).sms_sent_prefix;
        format!("{prefix}:{order}")
    }
}

#[async_trait]
impl SmsRecords for RedisSmsRecords {
    async fn sent(&self, order: &OrderId) -> Result<bool, StoreError> {
        let record = self.record(order);
        self.redis.call(async |c| c.exists(&record).await).await
    }

    async fn record_sent(&self, order: &OrderId, ttl: Duration) -> Result<(), StoreError> {
        let record = self.record(order);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.redis
            .call(async |c| c.pset_ex::<_, _, ()>(&record, 1, ttl_ms).await)
            .await
    }
}
