//! Leases in this process's memory, with the Redis backend's semantics (an expired lease is
//! free).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Leases;
use crate::error::StoreError;

#[derive(Default)]
pub struct MemoryLeases {
    /// lease name → (holder, expiry)
    leases: Mutex<HashMap<String, (String, Instant)>>,
}

#[async_trait]
impl Leases for MemoryLeases {
    async fn hold(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (now, ttl) = (Instant::now(), ttl.max(Duration::from_millis(1)));
        let mut leases = self.leases.lock().expect("lease lock poisoned");
        let free = leases
            .get(name)
            .is_none_or(|(current, expiry)| current == holder || *expiry <= now);
        if free {
            leases.insert(name.to_owned(), (holder.to_owned(), now + ttl));
        }
        Ok(free)
    }
}
