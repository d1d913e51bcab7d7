//! Redis's clock as this process sees it, so the stock lock can carry a deadline of its own.
//!
//! A lock queued behind a paused or overloaded Redis may run after the gateway stopped
//! waiting and answered 503; it would then lock a unit for a buyer who was told to try again,
//! a sale nobody knows about. So the lock carries the moment, on Redis's clock, after which it
//! must not run, and `reserve.lua` compares it with `TIME`. Redis's clock is estimated here as
//! this process's clock plus an offset measured with `TIME` (the estimate is off by at most
//! half that round trip) and measured again every [`RESYNC_EVERY_MS`]. A few milliseconds of
//! error cannot matter: the gateway answers a lock it heard nothing from only after the lock's
//! deadline and then a patience of its own (`gateway/src/routes/purchase.rs`).

use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::StoreError;
use crate::redis_client::Redis;

/// How long a measured offset is trusted; clocks drift by far less than a millisecond in it.
const RESYNC_EVERY_MS: i64 = 10_000;

#[derive(Debug, Default)]
pub struct RedisClock {
    /// Redis's clock minus this process's, in milliseconds.
    offset_ms: AtomicI64,
    /// When the offset was measured, on this process's clock (0: never).
    measured_at_ms: AtomicI64,
}

impl RedisClock {
    /// Redis's clock now, in unix milliseconds; one `TIME` round trip when the offset is due
    /// to be measured again, none otherwise.
    pub async fn now_ms(&self, redis: &Redis) -> Result<i64, StoreError> {
        if local_now_ms() - self.measured_at_ms.load(Ordering::Relaxed) > RESYNC_EVERY_MS {
            self.measure(redis).await?;
        }
        Ok(local_now_ms() + self.offset_ms.load(Ordering::Relaxed))
    }

    async fn measure(&self, redis: &Redis) -> Result<(), StoreError> {
        let sent = local_now_ms();
        let server = redis.time_ms().await?;
        let received = local_now_ms();
        self.offset_ms
            .store(server - i64::midpoint(sent, received), Ordering::Relaxed);
        self.measured_at_ms.store(received, Ordering::Relaxed);
        Ok(())
    }
}

fn local_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
