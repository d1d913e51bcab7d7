//! A map whose entries expire: the in-memory twin of Redis keys with a time to live, for the
//! memory backends that remember something for a while (the counters' applied event ids,
//! the SMS claims and records).
//!
//! An expired entry is absent to every read at once; it leaves memory when the map has grown
//! to twice what was live at the last pruning (at least [`PRUNE_FLOOR`] entries), so pruning
//! costs amortised O(1) per insert and memory stays proportional to the live entries.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// The smallest map that is pruned.
const PRUNE_FLOOR: usize = 1024;

#[derive(Debug)]
pub struct ExpiringMap<K, V> {
    entries: HashMap<K, (V, Instant)>,
    prune_at: usize,
}

impl<K, V> Default for ExpiringMap<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }
}

impl<K: Hash + Eq, V> ExpiringMap<K, V> {
    /// `key`'s value, if it has not expired by `now`.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries
            .get(key)
            .filter(|(_, expiry)| *expiry > now)
            .map(|(value, _)| value)
    }

    /// Sets `key` to `value` until `expiry`, dropping what expired by `now` when it is time.
    pub fn insert(&mut self, key: K, value: V, expiry: Instant, now: Instant) {
        if self.entries.len() >= self.prune_at {
            self.entries.retain(|_, (_, at)| *at > now);
            self.prune_at = (self.entries.len() * 2).max(PRUNE_FLOOR);
        }
        self.entries.insert(key, (value, expiry));
    }

    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_entry_is_absent_once_expired_and_leaves_memory_at_the_next_pruning() {
        let start = Instant::now();
        let mut map = ExpiringMap::default();
        map.insert("kept".to_owned(), 1, start + Duration::from_mins(1), start);
        map.insert("gone".to_owned(), 2, start + Duration::from_secs(1), start);
        let later = start + Duration::from_secs(2);
        assert_eq!(map.get("kept", later), Some(&1));
        assert_eq!(map.get("gone", later), None);
        for key in 0..PRUNE_FLOOR {
            map.insert(key.to_string(), 0, later + Duration::from_secs(1), later);
        }
        assert!(
            map.entries.len() <= PRUNE_FLOOR + 1,
            "the expired entry was dropped"
        );
        assert!(!map.entries.contains_key("gone"));
    }
}
