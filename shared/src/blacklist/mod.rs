//! The blacklist every gateway refuses purchases by: one set for all sales, and a version
//! that moves with every change, so a gateway keeps a local copy and reloads it only after
//! a change (see the gateway's `risk::blacklist`).
//!
//! Two backends, one conformance suite: [`RedisBlacklist`] and [`MemoryBlacklist`].

mod memory;
mod redis;

use std::collections::HashSet;

use async_trait::async_trait;

pub use self::memory::MemoryBlacklist;
pub use self::redis::RedisBlacklist;
use crate::error::StoreError;
use crate::ids::UserId;

/// The blacklist as a caller that knew some version finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlacklistUpdate {
    /// The current version (0 before the first change).
    pub version: i64,
    /// The members, or `None` when `version` is the one the caller already knew.
    pub users: Option<HashSet<UserId>>,
}

#[async_trait]
pub trait Blacklist: Send + Sync {
    /// Bans (`true`) or lifts the ban of (`false`) a user, and moves the version in the same
    /// atomic step, so every gateway notices and reloads.
    async fn set_banned(&self, user_id: &UserId, banned: bool) -> Result<(), StoreError>;

    /// The version and, only when it differs from `known_version`, the members: a gateway
    /// polls cheaply and reloads only after a change.
    async fn since(&self, known_version: i64) -> Result<BlacklistUpdate, StoreError>;
}
