//! SMS records in this process's memory, with the Redis backend's semantics (an expired claim
//! or record is absent).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Claim, SmsId, SmsRecords};
use crate::error::StoreError;
use crate::expiring_map::ExpiringMap;

#[derive(Default)]
pub struct MemorySmsRecords {
    records: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    /// message → sent, or the claiming holder, until it expires
    by_message: ExpiringMap<SmsId, Record>,
}

#[derive(Clone, PartialEq, Eq)]
enum Record {
    Sent,
    ClaimedBy(String),
}

impl Records {
    fn live(&self, message: &SmsId, now: Instant) -> Option<&Record> {
        self.by_message.get(message, now)
    }

    fn set(&mut self, message: &SmsId, record: Record, now: Instant, ttl: Duration) {
        let expiry = now + ttl.max(Duration::from_millis(1));
        self.by_message.insert(message.clone(), record, expiry, now);
    }
}

#[async_trait]
impl SmsRecords for MemorySmsRecords {
    async fn claim(
        &self,
        message: &SmsId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut records = self.records.lock().expect("SMS records lock poisoned");
        match records.live(message, now) {
            Some(Record::Sent) => return Ok(Claim::Sent),
            Some(Record::ClaimedBy(other)) if other != holder => return Ok(Claim::Theirs),
            _ => {}
        }
        records.set(message, Record::ClaimedBy(holder.to_owned()), now, ttl);
        Ok(Claim::Mine)
    }

    async fn record_sent(&self, message: &SmsId, ttl: Duration) -> Result<(), StoreError> {
        let mut records = self.records.lock().expect("SMS records lock poisoned");
        records.set(message, Record::Sent, Instant::now(), ttl);
        Ok(())
    }

    async fn release(&self, message: &SmsId, holder: &str) -> Result<(), StoreError> {
        let mut records = self.records.lock().expect("SMS records lock poisoned");
        let claimed = Record::ClaimedBy(holder.to_owned());
        if records.live(message, Instant::now()) == Some(&claimed) {
            records.by_message.remove(message);
        }
        Ok(())
    }
}
