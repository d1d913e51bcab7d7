//! The gateway's local copy of the global blacklist.
//!
//! The blacklist is one set for all sales, so the stock script cannot read it (in Redis it
//! would cross hash slots on a cluster). Instead each gateway keeps a copy in memory, checked
//! just before the script at no network cost. Admin changes move a version counter in the same
//! atomic step; every gateway polls that counter and reloads the set only when it moved, so
//! the copy is at most one sync interval stale and the poll costs one GET.
//!
//! The gateway syncs once before it serves, and reports itself not ready while the copy is
//! older than a few intervals (Redis unreachable): a stale copy lets a banned user buy.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use shared::blacklist::{Blacklist, BlacklistUpdate};
use shared::error::StoreError;
use shared::ids::UserId;

pub struct BlacklistCopy {
    store: Arc<dyn Blacklist>,
    users: RwLock<HashSet<UserId>>,
    /// The store's version the copy was loaded at; -1 before the first load.
    version: AtomicI64,
    /// When the copy was last confirmed current; `None` before the first sync.
    confirmed_at: Mutex<Option<Instant>>,
}

impl BlacklistCopy {
    pub fn new(store: Arc<dyn Blacklist>) -> Self {
        Self {
            store,
            users: RwLock::default(),
            version: AtomicI64::new(-1),
            confirmed_at: Mutex::default(),
        }
    }

    /// Whether the copy was confirmed current within `max_age`.
    pub fn is_fresh(&self, max_age: Duration) -> bool {
        self.confirmed_at
            .lock()
            .expect("blacklist lock poisoned")
            .is_some_and(|at| at.elapsed() <= max_age)
    }

    pub fn contains(&self, user_id: &UserId) -> bool {
        self.users
            .read()
            .expect("blacklist lock poisoned")
            .contains(user_id)
    }

    /// Bans (`true`) or lifts the ban of (`false`) `user_id` everywhere; this gateway's copy
    /// changes at once.
    pub async fn set_banned(&self, user_id: &UserId, banned: bool) -> Result<(), StoreError> {
        self.store.set_banned(user_id, banned).await?;
        let mut users = self.users.write().expect("blacklist lock poisoned");
        if banned {
            users.insert(user_id.clone());
        } else {
            users.remove(user_id);
        }
        Ok(())
    }

    /// Reloads the copy if the shared version moved since the last load.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let known = self.version.load(Ordering::Acquire);
        let BlacklistUpdate { version, users } = self.store.since(known).await?;
        if let Some(users) = users {
            tracing::info!(version, users = users.len(), "blacklist reloaded");
            *self.users.write().expect("blacklist lock poisoned") = users;
            self.version.store(version, Ordering::Release);
        }
        *self.confirmed_at.lock().expect("blacklist lock poisoned") = Some(Instant::now());
        Ok(())
    }
}
