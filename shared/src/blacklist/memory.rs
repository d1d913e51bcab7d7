//! The blacklist in this process's memory, with the Redis backend's semantics.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Blacklist, BlacklistUpdate};
use crate::error::StoreError;
use crate::ids::UserId;

#[derive(Default)]
pub struct MemoryBlacklist {
    list: Mutex<(HashSet<UserId>, i64)>,
}

#[async_trait]
impl Blacklist for MemoryBlacklist {
    async fn set_banned(&self, user_id: &UserId, banned: bool) -> Result<(), StoreError> {
        let mut list = self.list.lock().expect("blacklist lock poisoned");
        let (users, version) = &mut *list;
        if banned {
            users.insert(user_id.clone());
        } else {
            users.remove(user_id);
        }
        *version += 1;
        Ok(())
    }

    async fn since(&self, known_version: i64) -> Result<BlacklistUpdate, StoreError> {
        let list = self.list.lock().expect("blacklist lock poisoned");
        let (users, version) = &*list;
        Ok(BlacklistUpdate {
            version: *version,
            users: (*version != known_version).then(|| users.clone()),
        })
    }
}
