//! Coordination facts in this process's memory, with the Redis backend's semantics (expiry
//! included: an expired lease or record is treated as absent).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Coordination;
use crate::backends::StoreError;
use crate::ids::OrderId;

#[derive(Default)]
pub struct MemoryCoordination {
    facts: Mutex<Facts>,
}

#[derive(Default)]
struct Facts {
    blacklist: HashSet<String>,
    blacklist_version: i64,
    /// lease name → (holder, expiry)
    leases: HashMap<String, (String, Instant)>,
    /// order id → expiry
    sms_sent: HashMap<String, Instant>,
    /// Expired records are dropped when the map reaches this size (then twice the live
    /// records), so pruning costs amortised O(1) per record.
    sms_prune_at: usize,
}

impl MemoryCoordination {
    fn facts(&self) -> MutexGuard<'_, Facts> {
        self.facts.lock().expect("coordination lock poisoned")
    }
}

#[async_trait]
impl Coordination for MemoryCoordination {
    async fn set_blacklisted(&self, user_id: &str, banned: bool) -> Result<(), StoreError> {
        let mut facts = self.facts();
        if banned {
            facts.blacklist.insert(user_id.to_owned());
        } else {
            facts.blacklist.remove(user_id);
        }
        facts.blacklist_version += 1;
        Ok(())
    }

    async fn blacklist_since(
        &self,
        known_version: i64,
    ) -> Result<(i64, Option<HashSet<String>>), StoreError> {
        let facts = self.facts();
        let changed = facts.blacklist_version != known_version;
        Ok((
            facts.blacklist_version,
            changed.then(|| facts.blacklist.clone()),
        ))
    }

    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (now, ttl) = (Instant::now(), ttl.max(Duration::from_millis(1)));
        let mut facts = self.facts();
        let lease = facts.leases.get(name);
        let free = lease.is_none_or(|(current, expiry)| current == holder || *expiry <= now);
        if free {
            facts
                .leases
                .insert(name.to_owned(), (holder.to_owned(), now + ttl));
        }
        Ok(free)
    }

    async fn sms_sent(&self, order: &OrderId) -> Result<bool, StoreError> {
        let facts = self.facts();
        Ok(facts
            .sms_sent
            .get(order.as_str())
            .is_some_and(|expiry| *expiry > Instant::now()))
    }

    async fn record_sms_sent(&self, order: &OrderId, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut facts = self.facts();
        if facts.sms_sent.len() >= facts.sms_prune_at {
            facts.sms_sent.retain(|_, expiry| *expiry > now);
            facts.sms_prune_at = (facts.sms_sent.len() * 2).max(1024);
        }
        facts.sms_sent.insert(
            order.as_str().to_owned(),
            now + ttl.max(Duration::from_millis(1)),
        );
        Ok(())
    }
}
