//! Purchase attempts of one sale by outcome, at this gateway: the dashboard's "purchases per
//! second" (the page takes the rate from two readings).
//!
//! The Prometheus counter of the same name has no sale label (a label per sale would grow
//! without bound); this tally lives in the sale's catalog entry instead, so only sales that
//! exist are counted, and it goes with the entry. One atomic counter per outcome: a flood of
//! refusals takes no lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every outcome of a purchase attempt: `accepted`, or the code of a refusal the purchase can
/// answer (`ApiError::code`).
pub const PURCHASE_OUTCOMES: [&str; 12] = [
    "accepted",
    "invalid_request",
    "unauthenticated",
    "blacklisted",
    "sale_not_open",
    "unknown_sale",
    "already_purchased",
    "sold_out",
    "payload_too_large",
    "rate_limited",
    "unavailable",
    "internal",
];

/// The position of `outcome` in [`PURCHASE_OUTCOMES`].
pub fn outcome_index(outcome: &str) -> Option<usize> {
    PURCHASE_OUTCOMES.iter().position(|known| *known == outcome)
}

/// Attempts by outcome: `accepted` or the refusal's error code.
pub type Outcomes = BTreeMap<&'static str, u64>;

#[derive(Default)]
pub struct PurchaseTally([AtomicU64; PURCHASE_OUTCOMES.len()]);

impl PurchaseTally {
    /// Counts one attempt that ended in the outcome at `index` of [`PURCHASE_OUTCOMES`].
    pub fn record(&self, index: usize) {
        self.0[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The attempts so far, by the outcomes that happened.
    pub fn outcomes(&self) -> Outcomes {
        PURCHASE_OUTCOMES
            .iter()
            .zip(&self.0)
            .map(|(outcome, count)| (*outcome, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
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
            tally.record(outcome_index(outcome).expect("a purchase outcome"));
        }
        assert_eq!(
            tally.outcomes(),
            Outcomes::from([("accepted", 1), ("sold_out", 2)])
        );
    }

    #[test]
    fn only_purchase_outcomes_have_a_place() {
        assert_eq!(outcome_index("accepted"), Some(0));
        assert_eq!(outcome_index("sale_exists"), None);
    }
}
