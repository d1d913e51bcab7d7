//! Redis's clock as this process sees it, so the stock lock can carry a deadline of its own.
//!
//! A lock queued behind a paused or overloaded Redis may run after the gateway stopped
//! waiting and answered 503; it would then lock a unit for a buyer who was told to try again,
//! a sale nobody knows about. So the lock carries the moment, on Redis's clock, after which it
//! must not run, and `reserve.lua` compares it with `TIME`.
//!
//! The clock that matters is the one of the node that runs the script: on Redis Cluster each
//! master has its own, so a reading is kept per hash tag (read by a script on one of its keys,
//! which runs on that key's master) and never shared between sales. Each reading is taken once
//! and then advanced by this process's monotonic clock (a step of the wall clock here changes
//! nothing), measured again every [`MEASURE_EVERY`] and whenever a lock came back late. The
//! reading is pinned to the moment its reply arrived, so the estimate can only trail the node's
//! clock (by up to that round trip), never run ahead of it: a run-by time errs towards refusing
//! a lock that was about to be too late anyway, never towards letting one run after the caller
//! gave up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::redis_client::Redis;
use crate::scripts;

/// How long one reading is trusted; two clocks drift apart by far less than a millisecond in
/// it.
const MEASURE_EVERY: Duration = Duration::from_secs(10);

/// Readings of the clocks of the nodes behind some keys.
#[derive(Debug, Default)]
pub struct RedisClock {
    /// Per key: the node's clock (unix ms) and this process's instant when its reply arrived.
    readings: Mutex<HashMap<String, (i64, Instant)>>,
}

impl RedisClock {
    /// The clock of the node that holds `key` now, in unix milliseconds: one round trip when a
    /// reading is due, none otherwise.
    pub async fn now_ms(&self, redis: &Redis, key: &str) -> Result<i64, StoreError> {
        let reading = self.readings().get(key).copied();
        let (node_ms, at) = match reading {
            Some((node_ms, at)) if at.elapsed() < MEASURE_EVERY => (node_ms, at),
            _ => self.measure(redis, key).await?,
        };
        Ok(node_ms + at.elapsed().as_millis() as i64)
    }

    /// Drops the reading of `key`'s node, so the next call measures again (a lock came back
    /// late: one of the two clocks may have stepped).
    pub fn forget(&self, key: &str) {
        self.readings().remove(key);
    }

    async fn measure(&self, redis: &Redis, key: &str) -> Result<(i64, Instant), StoreError> {
        let node_ms: i64 = redis
            .call(async |c| scripts::READ_CLOCK.key(key).invoke_async(c).await)
            .await?;
        let reading = (node_ms, Instant::now());
        let mut readings = self.readings();
        // Readings of sales no longer asked about are dropped, so the map holds the sales in
        // play, not every sale this process ever saw.
        readings.retain(|_, (_, at)| at.elapsed() < MEASURE_EVERY);
        readings.insert(key.to_owned(), reading);
        Ok(reading)
    }

    fn readings(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Instant)>> {
        self.readings.lock().expect("clock lock poisoned")
    }
}
