//! Counters that count each event once: the "apply once per event id" primitive a consumer
//! with an effect of its own builds on (the example loyalty-points worker's points are one).
//!
//! At-least-once delivery brings an event again after a crash, a rebalance or a re-publish by
//! the reconciler. [`Counters::add_once`] records the event id in the same atomic step as the
//! addition, so the second delivery adds nothing. Ids are remembered for a retention the
//! caller chooses: longer than any redelivery can take, i.e. at least twice the topics'
//! retention, which the caller's `validate()` checks with
//! [`crate::config::KafkaArgs::require_outlives_topics`].
//!
//! Two backends, one conformance suite: [`RedisCounters`] and [`MemoryCounters`], built by
//! [`crate::backends::Backends::counters`] under a name of the caller's.

mod memory;
mod redis;

use async_trait::async_trait;
use uuid::Uuid;

pub use self::memory::MemoryCounters;
pub use self::redis::RedisCounters;
use crate::error::StoreError;

/// One addition to one counter, caused by one event.
#[derive(Clone, Copy, Debug)]
pub struct Increment<'a> {
    pub event_id: Uuid,
    pub key: &'a str,
    pub amount: i64,
}

#[async_trait]
pub trait Counters: Send + Sync {
    /// Applies every increment whose event id was not applied before, in one atomic step;
    /// returns how many were new.
    async fn add_once(&self, increments: &[Increment<'_>]) -> Result<u64, StoreError>;

    /// The counter's value; 0 for a key never incremented.
    async fn get(&self, key: &str) -> Result<i64, StoreError>;
}
