//! Counters in this process's memory, with the Redis backend's semantics (an event id is
//! remembered for the retention, then forgotten).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use super::{Counters, Increment};
use crate::error::StoreError;
use crate::expiring_map::ExpiringMap;

pub struct MemoryCounters {
    retention: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    values: HashMap<String, i64>,
    /// The event ids applied and still remembered.
    applied: ExpiringMap<Uuid, ()>,
}

impl MemoryCounters {
    /// An empty counter set, remembering applied event ids for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention,
            state: Mutex::default(),
        }
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn add_once(&self, increments: &[Increment<'_>]) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("counters lock poisoned");
        let mut new = 0;
        for increment in increments {
            if state.applied.get(&increment.event_id, now).is_some() {
                continue;
            }
            let forgotten_at = now + self.retention;
            state
                .applied
                .insert(increment.event_id, (), forgotten_at, now);
            *state.values.entry(increment.key.to_owned()).or_default() += increment.amount;
            new += 1;
        }
        Ok(new)
    }

    async fn get(&self, key: &str) -> Result<i64, StoreError> {
        let state = self.state.lock().expect("counters lock poisoned");
        Ok(state.values.get(key).copied().unwrap_or(0))
    }
}
