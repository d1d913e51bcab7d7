//! The blacklist in Redis: a set and its version counter, under one hash tag so both change in
//! one MULTI on a cluster too.

use std::collections::HashSet;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{Blacklist, BlacklistUpdate};
use crate::error::StoreError;
use crate::ids::UserId;
use crate::redis_client::Redis;

#[derive(Clone)]
pub struct RedisBlacklist {
    redis: Redis,
}

impl RedisBlacklist {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl Blacklist for RedisBlacklist {
    /// One MULTI: the set changes and the version moves together.
    async fn set_banned(&self, user_id: &UserId, banned: bool) -> Result<(), StoreError> {
        let (set, version) = (
            self.redis.keys().blacklist(),
            self.redis.keys().blacklist_version(),
        );
        let mut pipe = redis::pipe();
        pipe.atomic();
        if banned {
            pipe.sadd(&set, user_id.as_str());
        } else {
            pipe.srem(&set, user_id.as_str());
        }
        pipe.ignore().incr(&version, 1).ignore();
        self.redis
            .call(async |c| pipe.query_async::<()>(c).await)
            .await
    }

    async fn since(&self, known_version: i64) -> Result<BlacklistUpdate, StoreError> {
        let version_key = self.redis.keys().blacklist_version();
        let version = self
            .redis
            .call(async |c| c.get::<_, Option<i64>>(&version_key).await)
            .await?
            .unwrap_or(0);
        if version == known_version {
            return Ok(BlacklistUpdate {
                version,
                users: None,
            });
        }
        // The set and the version are read in two steps; a change in between moves the
        // version again, so the next poll reloads.
        let set = self.redis.keys().blacklist();
        let members: Vec<String> = self.redis.call(async |c| c.smembers(&set).await).await?;
        let users: HashSet<UserId> = members
            .into_iter()
            .filter_map(|member| member.parse().ok())
            .collect();
        Ok(BlacklistUpdate {
            version,
            users: Some(users),
        })
    }
}
