//! The SMS workers' record of which orders' messages were sent, shared by every instance, so a
//! redelivered event sends nothing (see the SMS worker's handler for the one gap left).
//!
//! Two backends, one conformance suite: [`RedisSmsRecords`] and [`MemorySmsRecords`].

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemorySmsRecords;
pub use self::redis::RedisSmsRecords;
use crate::error::StoreError;
use crate::ids::OrderId;

#[async_trait]
pub trait SmsRecords: Send + Sync {
    /// Whether the SMS of this order was recorded as sent (within the record's lifetime).
    async fn sent(&self, order: &OrderId) -> Result<bool, StoreError>;

    /// Records that the SMS of this order was sent; the record expires after `ttl`.
    async fn record_sent(&self, order: &OrderId, ttl: Duration) -> Result<(), StoreError>;
}
