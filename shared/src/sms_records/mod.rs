//! Which SMS were sent, and who is sending one right now, shared by every SMS worker instance.
//! An order gets one message per kind ([`SmsKind`]: reserved, paid, expired, failed), so a
//! message is named by its order and kind ([`SmsId`]).
//!
//! A sender claims a message before sending it ([`SmsRecords::claim`]), so a second
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

/// What an order's message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmsKind {
    /// The unit is held: pay by the deadline.
    Reserved,
    /// The receipt.
    Paid,
    /// Not paid in time: the unit went back on sale.
    Expired,
    /// The order could not be created: nothing is owed.
    Failed,
}

impl SmsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Paid => "paid",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }
}

/// One message: an order and a kind. Written `<order id>:<kind>`, which is also the
/// idempotency key the provider receives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SmsId {
    pub order_id: OrderId,
    pub kind: SmsKind,
}

impl std::fmt::Display for SmsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.order_id, self.kind.as_str())
    }
}

/// What a claim on a message found.
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
    /// Claims the message for `holder` for `ttl`, or renews `holder`'s own claim.
    async fn claim(
        &self,
        message: &SmsId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Records that the message was sent, for `ttl` (longer than any redelivery can take); it
    /// replaces the claim.
    async fn record_sent(&self, message: &SmsId, ttl: Duration) -> Result<(), StoreError>;

    /// Gives up `holder`'s claim (its send failed), so the next attempt, by whichever
    /// instance, may claim at once. Changes nothing once the message is recorded as sent.
    async fn release(&self, message: &SmsId, holder: &str) -> Result<(), StoreError>;
}
