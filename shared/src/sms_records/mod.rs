//! Which orders' SMS were sent, and who is sending one right now, shared by every SMS worker
//! instance.
//!
//! A sender claims an order's message before sending it ([`SmsRecords::claim`]), so a second
//! instance (two owners of a partition during a rebalance, a redelivery) waits instead of
//! sending too; after the provider accepted the message the record says so for good
//! ([`SmsRecords::record_sent`]). A claim expires, so a sender that died frees the order.
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

/// What a claim on an order's message found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the claim: it may send.
    Mine,
    /// The message was sent already: nothing to do.
    Sent,
    /// Another sender's claim lasts: it is sending, or died and its claim has not expired.
    Theirs,
}

#[async_trait]
pub trait SmsRecords: Send + Sync {
    /// Claims the order's message for `holder` for `ttl`, or renews `holder`'s own claim.
    async fn claim(
        &self,
        order: &OrderId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Records that the order's message was sent, for `ttl` (longer than any redelivery can
    /// take); it replaces the claim.
    async fn record_sent(&self, order: &OrderId, ttl: Duration) -> Result<(), StoreError>;

    /// Gives up `holder`'s claim (its send failed), so the next attempt, by whichever
    /// instance, may claim at once. Changes nothing once the message is recorded as sent.
    async fn release(&self, order: &OrderId, holder: &str) -> Result<(), StoreError>;
}
