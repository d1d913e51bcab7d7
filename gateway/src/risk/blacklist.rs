//! The gateway's local copy of the global blacklist.
//!
//! The blacklist is one Redis set for all sales, so the stock script cannot read it (it would
//! cross hash slots on a cluster). Instead each gateway keeps a copy in memory, checked just
//! before the script at no network cost. Admin changes bump a version counter in the same
//! MULTI; every gateway polls that counter and reloads the set only when it moved, so the copy
//! is at most one sync interval stale and the poll costs one GET.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use redis::AsyncCommands;
use shared::keys::KeySpace;
use shared::redis_client::{Redis, RedisCallError};

#[derive(Default)]
pub struct Blacklist {
    users: RwLock<HashSet<String>>,
    /// The Redis version the copy was loaded at; -1 before the first load.
    version: AtomicI64,
}

impl Blacklist {
    pub fn new() -> Self {
        Self {
            users: RwLock::default(),
            version: AtomicI64::new(-1),
        }
    }

    pub fn contains(&self, user_id: &str) -> bool {
        self.users
            .read()
            .expect("blacklist lock poisoned")
            .contains(user_id)
    }

    /// Blacklists `user_id` everywhere; this gateway's copy changes at once.
    pub async fn add(
        &self,
        redis: &Redis,
        keys: &KeySpace,
        user_id: &str,
    ) -> Result<(), RedisCallError> {
        self.change(redis, keys, user_id, true).await
    }

    /// Lifts the ban of `user_id` everywhere; this gateway's copy changes at once.
    pub async fn remove(
        &self,
        redis: &Redis,
        keys: &KeySpace,
        user_id: &str,
    ) -> Result<(), RedisCallError> {
        self.change(redis, keys, user_id, false).await
    }

    /// Changes the set and bumps the version in one MULTI, then the local copy.
    async fn change(
        &self,
        redis: &Redis,
        keys: &KeySpace,
        user_id: &str,
        banned: bool,
    ) -> Result<(), RedisCallError> {
        let (set, version) = (keys.blacklist(), keys.blacklist_version());
        let mut pipe = redis::pipe();
        pipe.atomic();
        if banned {
            pipe.sadd(&set, user_id);
        } else {
            pipe.srem(&set, user_id);
        }
        pipe.ignore().incr(&version, 1).ignore();
        redis
            .call(async |c| pipe.query_async::<()>(c).await)
            .await?;
        let mut users = self.users.write().expect("blacklist lock poisoned");
        if banned {
            users.insert(user_id.to_owned());
        } else {
            users.remove(user_id);
        }
        Ok(())
    }

    /// Reloads the copy if the version in Redis moved since the last load.
    pub async fn sync(&self, redis: &Redis, keys: &KeySpace) -> Result<(), RedisCallError> {
        let version_key = keys.blacklist_version();
        let version: i64 = redis
            .call(async |c| c.get::<_, Option<i64>>(&version_key).await)
            .await?
            .unwrap_or(0);
        if version == self.version.load(Ordering::Acquire) {
            return Ok(());
        }
        let set = keys.blacklist();
        let users: HashSet<String> = redis.call(async |c| c.smembers(&set).await).await?;
        tracing::info!(version, users = users.len(), "blacklist reloaded");
        *self.users.write().expect("blacklist lock poisoned") = users;
        self.version.store(version, Ordering::Release);
        Ok(())
    }
}
