//! Readiness, checked in the background and answered from what was last seen.
//!
//! A load balancer asks every gateway "ready?" every few seconds, and a crowd of probes (or
//! anyone who found the path) must not turn into a crowd of Redis pings and blocking Kafka
//! metadata fetches of up to a second each. One task per gateway asks the stock ledger and the
//! broker every `READINESS_CHECK_MS`; `/readyz` reads the result. A result older than a few
//! intervals counts as not ready: a check that hangs must not leave a stale "yes" behind.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shared::publisher::Publisher;
use shared::stock::Sales;
use tokio_util::sync::CancellationToken;

/// Intervals a check may miss before its last result is too old to answer with.
const CHECKS_MISSED_AT_MOST: u32 = 3;

/// What the last check saw of the gateway's dependencies.
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    /// The stock ledger (Redis) answered.
    pub redis: bool,
    /// The broker answered a metadata request for the reservation topic.
    pub kafka: bool,
    /// When the check was made (every `/readyz` in between answers the same).
    pub checked_at: DateTime<Utc>,
    at: Instant,
}

/// The last check, shared by every `/readyz`.
pub struct Readiness {
    interval: Duration,
    last: RwLock<Option<Checked>>,
}

impl Readiness {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: RwLock::new(None),
        }
    }

    /// Checks `ledger` and `publisher` every interval until `stop`.
    pub async fn keep_checking(
        &self,
        ledger: &dyn Sales,
        publisher: &Publisher,
        stop: CancellationToken,
    ) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            // A probe is bounded by the interval: a dependency slower than that is not ready.
            let (redis, kafka) = tokio::join!(
                tokio::time::timeout(self.interval, ledger.ping()),
                publisher.is_reachable(self.interval),
            );
            self.record(Checked {
                redis: matches!(redis, Ok(Ok(()))),
                kafka,
                checked_at: Utc::now(),
                at: Instant::now(),
            });
        }
    }

    /// The last check, if it is recent enough to answer with.
    pub fn current(&self) -> Option<Checked> {
        let last = *self.last.read().expect("never poisoned");
        last.filter(|checked| checked.at.elapsed() <= self.interval * CHECKS_MISSED_AT_MOST)
    }

    fn record(&self, checked: Checked) {
        *self.last.write().expect("never poisoned") = Some(checked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(at: Instant) -> Checked {
        Checked {
            redis: true,
            kafka: true,
            checked_at: Utc::now(),
            at,
        }
    }

    #[test]
    fn nothing_is_known_before_the_first_check() {
        assert!(Readiness::new(Duration::from_secs(1)).current().is_none());
    }

    #[test]
    fn a_check_older_than_a_few_intervals_is_not_answered_with() {
        let readiness = Readiness::new(Duration::from_secs(1));
        readiness.record(checked(Instant::now()));
        assert!(readiness.current().is_some());
        readiness.record(checked(
            Instant::now().checked_sub(Duration::from_secs(4)).unwrap(),
        ));
        assert!(readiness.current().is_none());
    }
}
