//! Purchase attempts of one sale by outcome, at this gateway: the dashboard's "purchases per
//! second" (the page takes the rate from two readings).
//!
//! The Prometheus counter of the same name has no sale label (a label per sale would grow
//! without bound); this tally lives in the sale's catalog entry instead, so only sales that
//! exist are counted, and it goes with the entry.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Attempts by outcome: `accepted` or the refusal's error code.
pub type Outcomes = BTreeMap<&'static str, u64>;

#[derive(Default)]
pub struct PurchaseTally(Mutex<Outcomes>);

impl PurchaseTally {
    /// Counts one attempt that ended in `outcome`.
    pub fn record(&self, outcome: &'static str) {
        *self.lock().entry(outcome).or_default() += 1;
    }

    /// The attempts so far.
    pub fn outcomes(&self) -> Outcomes {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outcomes> {
        self.0.lock().expect("tally lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_by_outcome() {
        let tally = PurchaseTally::default();
        assert!(tally.outcomes().is_empty());
        for outcome in ["accepted", "sold_out", "sold_out"] {
            tally.record(outcome);
        }
        assert_eq!(
            tally.outcomes(),
            Outcomes::from([("accepted", 1), ("sold_out", 2)])
        );
    }
}
