//! The small shared facts through which several instances of one service coordinate: the
//! gateways' blacklist, the order workers' reconciler lease, the SMS workers' record of what
//! was sent. None decides a purchase; each must be seen alike by every instance.
//!
//! Two backends, one conformance suite: [`RedisCoordination`] and [`MemoryCoordination`].

mod memory;
mod redis;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryCoordination;
pub use self::redis::RedisCoordination;
use crate::backends::StoreError;
use crate::ids::OrderId;

#[async_trait]
pub trait Coordination: Send + Sync {
    /// Bans (`true`) or lifts the ban of (`false`) a user, and moves the blacklist's version
    /// in the same atomic step, so every gateway notices and reloads.
    async fn set_blacklisted(&self, user_id: &str, banned: bool) -> Result<(), StoreError>;

    /// The blacklist's version (0 before the first change) and, only when it differs from
    /// `known_version`, its members: a gateway polls cheaply and reloads only after a change.
    async fn blacklist_since(
        &self,
        known_version: i64,
    ) -> Result<(i64, Option<HashSet<String>>), StoreError>;

    /// Acquires the lease `name` for `holder`, or renews it if `holder` has it; `true` when
    /// `holder` holds it for the next `ttl`. A holder that stops renewing loses it after `ttl`.
    async fn hold_lease(&self, name: &str, holder: &str, ttl: Duration)
    -> Result<bool, StoreError>;

    /// Whether the SMS of this order was recorded as sent (within the record's lifetime).
    async fn sms_sent(&self, order: &OrderId) -> Result<bool, StoreError>;

    /// Records that the SMS of this order was sent; the record expires after `ttl`.
    async fn record_sms_sent(&self, order: &OrderId, ttl: Duration) -> Result<(), StoreError>;
}
