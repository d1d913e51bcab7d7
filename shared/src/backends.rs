//! Which backend holds the key-value state, chosen by the scheme of `REDIS_URL`.
//!
//! Three traits cover everything the services keep outside the order table:
//! [`StockLedger`] (sales, the stock lock, outbox, order status), [`StatsStore`] (the
//! statistics) and [`Coordination`] (blacklist, reconciler lease, SMS records). Each has two
//! implementations that one conformance suite (`shared/tests/conformance`) holds to the same
//! assertions:
//!
//! | `REDIS_URL` | backend |
//! | --- | --- |
//! | `redis://…`, `rediss://…`, `unix://…` | Redis: the Lua scripts, shared by every process |
//! | `memory:` or `memory:<name>` | in this process's memory: one store per name and key prefix, shared by every service of the process, gone when it exits |
//!
//! The embedded backend is what lets `seckill` run the whole sale in one process with nothing
//! installed; production and the real-service tests use Redis.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::RedisArgs;
use crate::coordination::{Coordination, MemoryCoordination, RedisCoordination};
use crate::keys::KeySpace;
use crate::redis_client::Redis;
use crate::stats::{MemoryStatsStore, RedisStatsStore, StatsStore};
use crate::stock::{MemoryStockLedger, RedisStockLedger, StockLedger};

/// The scheme of in-process backends in `REDIS_URL`.
pub const MEMORY_SCHEME: &str = "memory:";

/// Why a store gave no answer. Callers answer both the same way (503, or retry later); the
/// distinction is for logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the store failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One deployment's key-value state, behind its three traits.
#[derive(Clone)]
pub struct Backends {
    pub ledger: Arc<dyn StockLedger>,
    pub stats: Arc<dyn StatsStore>,
    pub coordination: Arc<dyn Coordination>,
}

impl Backends {
    /// The backends `args.redis_url` names. Redis connects lazily (a service starts, and reports
    /// not ready, while Redis is down); fails only on a malformed URL.
    pub fn open(args: &RedisArgs) -> Result<Self, redis::RedisError> {
        if args.redis_url.starts_with(MEMORY_SCHEME) {
            return Ok(Self::in_memory(&args.redis_url, &args.redis_key_prefix));
        }
        let redis = Redis::connect_lazily(args)?;
        let keys = KeySpace::new(&args.redis_key_prefix);
        Ok(Self {
            ledger: Arc::new(RedisStockLedger::new(redis.clone(), keys.clone())),
            stats: Arc::new(RedisStatsStore::new(redis.clone(), keys.clone())),
            coordination: Arc::new(RedisCoordination::new(redis, keys)),
        })
    }

    /// Whether `args` names an in-memory store that a service of this process already opened
    /// (a reader that is not one of the services, such as the load test's checks, must not
    /// conclude anything from a fresh, empty store).
    pub fn is_open_in_this_process(args: &RedisArgs) -> bool {
        memory_stores().contains_key(&memory_key(&args.redis_url, &args.redis_key_prefix))
    }

    /// The process-wide in-memory store of this URL and prefix, created on first use, so that
    /// the gateway and the workers of one process see the same state.
    fn in_memory(url: &str, prefix: &str) -> Self {
        memory_stores()
            .entry(memory_key(url, prefix))
            .or_insert_with(|| Self {
                ledger: Arc::new(MemoryStockLedger::default()),
                stats: Arc::new(MemoryStatsStore::default()),
                coordination: Arc::new(MemoryCoordination::default()),
            })
            .clone()
    }
}

fn memory_stores() -> MutexGuard<'static, HashMap<String, Backends>> {
    static STORES: LazyLock<Mutex<HashMap<String, Backends>>> = LazyLock::new(Mutex::default);
    STORES.lock().expect("store registry lock poisoned")
}

fn memory_key(url: &str, prefix: &str) -> String {
    format!("{url} {prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str, prefix: &str) -> RedisArgs {
        RedisArgs {
            redis_url: url.into(),
            redis_key_prefix: prefix.into(),
            redis_timeout_ms: 200,
        }
    }

    #[test]
    fn memory_backends_of_one_url_and_prefix_are_one_store() {
        let a = Backends::open(&args("memory:", "p")).unwrap();
        let b = Backends::open(&args("memory:", "p")).unwrap();
        let other_prefix = Backends::open(&args("memory:", "q")).unwrap();
        let other_name = Backends::open(&args("memory:elsewhere", "p")).unwrap();
        assert!(Arc::ptr_eq(&a.ledger, &b.ledger));
        assert!(!Arc::ptr_eq(&a.ledger, &other_prefix.ledger));
        assert!(!Arc::ptr_eq(&a.ledger, &other_name.ledger));
        assert!(Backends::is_open_in_this_process(&args("memory:", "p")));
        assert!(!Backends::is_open_in_this_process(&args(
            "memory:never",
            "p"
        )));
    }

    #[test]
    fn a_malformed_redis_url_is_refused() {
        assert!(Backends::open(&args("not a url", "p")).is_err());
    }
}
