//! SMS records in this process's memory, with the Redis backend's semantics (an expired record
//! is absent).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SmsRecords;
use crate::error::StoreError;
use crate::ids::OrderId;

#[derive(Default)]
pub struct MemorySmsRecords {
    records: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    /// order id → expiry
    expiries: HashMap<OrderId, Instant>,
    /// Expired records are dropped when the map reaches this size (then twice the live
    /// records), so pruning costs amortised O(1) per record.
    prune_at: usize,
}

#[async_trait]
impl SmsRecords for MemorySmsRecords {
    async fn sent(&self, order: &OrderId) -> Result<bool, StoreError> {
        let records = self.records.lock().expect("SMS records lock poisoned");
        Ok(records
            .expiries
            .get(order)
            .is_some_and(|expiry| *expiry > Instant::now()))
    }

    async fn record_sent(&self, order: &OrderId, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut records = self.records.lock().expect("SMS records lock poisoned");
        if records.expiries.len() >= records.prune_at {
            records.expiries.retain(|_, expiry| *expiry > now);
            records.prune_at = (records.expiries.len() * 2).max(1024);
        }
        records
            .expiries
            .insert(order.clone(), now + ttl.max(Duration::from_millis(1)));
        Ok(())
    }
}
