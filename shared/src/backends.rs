//! Which backend holds the key-value state, chosen by the scheme of `REDIS_URL`, and the one
//! place the stores are built.
//!
//! Each store trait has two implementations that one conformance suite
//! (`shared/tests/conformance`) holds to the same assertions:
//!
//! | `REDIS_URL` | backend |
//! | --- | --- |
//! | `redis://…`, `rediss://…`, `unix://…` | Redis: the Lua scripts, shared by every process |
//! | (none: [`Backends::in_memory`]) | this process's memory: shared by every service handed the same [`Backends`], gone when it exits |
//!
//! A service started on its own refuses `REDIS_URL=memory:` ([`OpenError::InProcessOnly`]):
//! its stock would be its own, and two gateways would each sell all of it. Only code that
//! starts every service in one process (the all-in-one runner, tests) builds in-memory stores.
//!
//! A service asks its `Backends` for the stores it needs ([`Backends::ledger`],
//! [`Backends::blacklist`], …) and nothing else; a worker with a store of its own builds it
//! here too ([`Backends::counters`]). The all-in-one runner builds one in-memory `Backends`
//! and hands clones of it to every service, so they see one state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::blacklist::{Blacklist, MemoryBlacklist, RedisBlacklist};
use crate::config::RedisArgs;
use crate::counters::{Counters, MemoryCounters, RedisCounters};
use crate::lease::{Leases, MemoryLeases, RedisLeases};
use crate::redis_client::Redis;
use crate::sms_records::{MemorySmsRecords, RedisSmsRecords, SmsRecords};
use crate::stats::{MemoryStatsStore, RedisStatsStore, StatsStore};
use crate::stock::{MemoryStockLedger, RedisStockLedger, StockLedger};

/// The scheme a `REDIS_URL` for in-process stores would have; refused by [`Backends::open`].
pub const MEMORY_SCHEME: &str = "memory:";

/// Why [`Backends::open`] refused a `REDIS_URL`.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "REDIS_URL=memory: would keep the stock inside this one process, shared with no other (two gateways would each sell the whole stock); in-process stores are for the all-in-one runner (cargo run -p seckill), which builds them itself. Give a redis:// URL"
    )]
    InProcessOnly,
    #[error("REDIS_URL is not a usable Redis URL: {0}")]
    Url(#[from] redis::RedisError),
}

/// One deployment's key-value state. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct Backends(Arc<Stores>);

/// One of each store, built with the `Backends`, and where named counter sets come from.
struct Stores {
    ledger: Arc<dyn StockLedger>,
    stats: Arc<dyn StatsStore>,
    blacklist: Arc<dyn Blacklist>,
    leases: Arc<dyn Leases>,
    sms_records: Arc<dyn SmsRecords>,
    counters: CounterSets,
}

enum CounterSets {
    Redis(Redis),
    /// One set per name, so every service of the process counts into the same one.
    Memory(Mutex<HashMap<String, Arc<MemoryCounters>>>),
}

impl Backends {
    /// The Redis backends `args.redis_url` names. Redis connects lazily (a service starts, and
    /// reports not ready, while Redis is down); fails only on a URL that is not Redis's.
    pub fn open(args: &RedisArgs) -> Result<Self, OpenError> {
        if args.redis_url.starts_with(MEMORY_SCHEME) {
            return Err(OpenError::InProcessOnly);
        }
        Ok(Self::on_redis(Redis::connect_lazily(args)?))
    }

    /// The same stores, every Redis call with `deadline` instead (in-memory stores have
    /// none, and are shared as they are).
    #[must_use]
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        match &self.0.counters {
            CounterSets::Redis(redis) => Self::on_redis(redis.with_deadline(deadline)),
            CounterSets::Memory(_) => self.clone(),
        }
    }

    fn on_redis(redis: Redis) -> Self {
        Self(Arc::new(Stores {
            ledger: Arc::new(RedisStockLedger::new(redis.clone())),
            stats: Arc::new(RedisStatsStore::new(redis.clone())),
            blacklist: Arc::new(RedisBlacklist::new(redis.clone())),
            leases: Arc::new(RedisLeases::new(redis.clone())),
            sms_records: Arc::new(RedisSmsRecords::new(redis.clone())),
            counters: CounterSets::Redis(redis),
        }))
    }

    /// Fresh, empty stores in this process's memory.
    pub fn in_memory() -> Self {
        Self(Arc::new(Stores {
            ledger: Arc::new(MemoryStockLedger::default()),
            stats: Arc::new(MemoryStatsStore::default()),
            blacklist: Arc::new(MemoryBlacklist::default()),
            leases: Arc::new(MemoryLeases::default()),
            sms_records: Arc::new(MemorySmsRecords::default()),
            counters: CounterSets::Memory(Mutex::default()),
        }))
    }

    /// Sales, the stock lock, the outbox and order status.
    pub fn ledger(&self) -> Arc<dyn StockLedger> {
        Arc::clone(&self.0.ledger)
    }

    /// Per-sale statistics, counted once per event.
    pub fn stats(&self) -> Arc<dyn StatsStore> {
        Arc::clone(&self.0.stats)
    }

    /// The blacklist every gateway copies.
    pub fn blacklist(&self) -> Arc<dyn Blacklist> {
        Arc::clone(&self.0.blacklist)
    }

    /// Leases, for jobs one instance at a time runs.
    pub fn leases(&self) -> Arc<dyn Leases> {
        Arc::clone(&self.0.leases)
    }

    /// The SMS workers' records of what was sent.
    pub fn sms_records(&self) -> Arc<dyn SmsRecords> {
        Arc::clone(&self.0.sms_records)
    }

    /// The counter set `name`, adding once per event id and remembering applied ids for
    /// `retention` (see [`crate::counters`]). Every call with the same name is the same set.
    pub fn counters(&self, name: &str, retention: Duration) -> Arc<dyn Counters> {
        match &self.0.counters {
            CounterSets::Redis(redis) => {
                Arc::new(RedisCounters::new(redis.clone(), name, retention))
            }
            CounterSets::Memory(sets) => sets
                .lock()
                .expect("counters registry lock poisoned")
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(MemoryCounters::new(retention)))
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> RedisArgs {
        RedisArgs {
            redis_url: url.into(),
            ..crate::config::defaults()
        }
    }

    #[test]
    fn clones_of_in_memory_backends_share_their_stores_and_new_ones_do_not() {
        let backends = Backends::in_memory();
        let clone = backends.clone();
        let other = Backends::in_memory();
        assert!(Arc::ptr_eq(&backends.ledger(), &clone.ledger()));
        assert!(!Arc::ptr_eq(&backends.ledger(), &other.ledger()));
        let retention = Duration::from_mins(1);
        assert!(Arc::ptr_eq(
            &backends.counters("points", retention),
            &clone.counters("points", retention)
        ));
        assert!(!Arc::ptr_eq(
            &backends.counters("points", retention),
            &backends.counters("miles", retention)
        ));
    }

    #[test]
    fn a_malformed_redis_url_is_refused() {
        assert!(matches!(
            Backends::open(&args("not a url")),
            Err(OpenError::Url(_))
        ));
    }

    #[test]
    fn in_process_stores_are_refused_to_a_service_started_alone_with_the_reason() {
        let error = Backends::open(&args("memory:")).err().unwrap();
        assert!(matches!(error, OpenError::InProcessOnly));
        assert!(
            error.to_string().contains("each sell the whole stock"),
            "{error}"
        );
    }
}
