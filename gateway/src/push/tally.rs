//! Purchase attempts of one sale by outcome, at this gateway: the dashboard's "purchases per
//! second" (the page takes the rate from two readings).
//!
//! The Prometheus counter of the same name has no sale label (a label per sale would grow
//! without bound); this tally lives in the sale's catalog entry instead, so only sales that
//! exist are counted, and it goes with the entry. One atomic counter per outcome: a flood of
//! refusals takes no lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::outcome::PurchaseOutcome;

/// Attempts by outcome: `accepted` or the refusal's error code.
pub type Outcomes = BTreeMap<&'static str, u64>;

#[derive(Default)]
pub struct PurchaseTally([AtomicU64; PurchaseOutcome::COUNT]);

impl PurchaseTally {
    /// Counts one attempt that came to `outcome`.
    pub fn record(&self, outcome: PurchaseOutcome) {
        self.0[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The attempts so far, by the outcomes that happened.
    pub fn outcomes(&self) -> Outcomes {
        PurchaseOutcome::all()
            .zip(&self.0)
            .map(|(outcome, count)| (outcome.as_str(), count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::ErrorCode;

    #[test]
    fn attempts_are_counted_by_outcome() {
        let tally = PurchaseTally::default();
        assert!(tally.outcomes().is_empty());
        let sold_out = PurchaseOutcome::Refused(ErrorCode::SoldOut);
        for outcome in [PurchaseOutcome::Accepted, sold_out, sold_out] {
            tally.record(outcome);
        }
        assert_eq!(
            tally.outcomes(),
            Outcomes::from([("accepted", 1), ("sold_out", 2)])
        );
    }
}
