//! Redis's clock as this process sees it, so the stock lock can carry a deadline of its own.
//!
//! A lock queued behind a paused or overloaded Redis may run after the gateway stopped
//! waiting and answered 503; it would then lock a unit for a buyer who was told to try again,
//! a sale nobody knows about. So the lock carries the moment, on Redis's clock, after which it
//! must not run, and `reserve.lua` compares it with `TIME`.
//!
//! Redis's clock is read once with `TIME` and then advanced by this process's monotonic clock
//! (a step of the wall clock here changes nothing), measured again every
//! [`MEASURE_EVERY`] and whenever a lock came back late. The reading is pinned to the moment
//! its reply arrived, so the estimate can only trail Redis's clock (by up to that round trip),
//! never run ahead of it: a run-by time errs towards refusing a lock that was about to be too
//! late anyway, never towards letting one run after the caller gave up.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::redis_client::Redis;

/// How long one reading is trusted; two clocks drift apart by far less than a millisecond in
/// it.
const MEASURE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct RedisClock {
    /// Redis's clock (unix ms) and this process's instant when its reply arrived.
    reading: Mutex<Option<(i64, Instant)>>,
}

impl RedisClock {
    /// Redis's clock now, in unix milliseconds: one `TIME` round trip when a reading is due,
    /// none otherwise.
    pub async fn now_ms(&self, redis: &Redis) -> Result<i64, StoreError> {
        let reading = *self.reading.lock().expect("clock lock poisoned");
        let (redis_ms, at) = match reading {
            Some((redis_ms, at)) if at.elapsed() < MEASURE_EVERY => (redis_ms, at),
            _ => self.measure(redis).await?,
        };
        Ok(redis_ms + at.elapsed().as_millis() as i64)
    }

    /// Drops the reading, so the next call measures again (a lock came back late: one of the
    /// two clocks may have stepped).
    pub fn forget(&self) {
        *self.reading.lock().expect("clock lock poisoned") = None;
    }

    async fn measure(&self, redis: &Redis) -> Result<(i64, Instant), StoreError> {
        let redis_ms = redis.time_ms().await?;
        let reading = (redis_ms, Instant::now());
        *self.reading.lock().expect("clock lock poisoned") = Some(reading);
        Ok(reading)
    }
}
