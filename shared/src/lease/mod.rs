//! Leases: whoever holds one is the single instance running a job (the reconciler), until it
//! stops renewing and another instance takes over after the lease's lifetime.
//!
//! Two backends, one conformance suite: [`RedisLeases`] and [`MemoryLeases`].

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryLeases;
pub use self::redis::RedisLeases;
use crate::error::StoreError;

#[async_trait]
pub trait Leases: Send + Sync {
    /// Acquires the lease `name` for `holder`, or renews it if `holder` has it; `true` when
    /// `holder` holds it for the next `ttl`. A holder that stops renewing loses it after `ttl`.
    async fn hold(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;
}
