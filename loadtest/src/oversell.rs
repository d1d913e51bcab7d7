//! Invariant 1 over time: at no instant may more units be held than the sale has.
//!
//! Comparing totals is not enough once units come back: with a share of the winners paying,
//! `held ≤ stock + expired` holds for any oversell of units that later expire. So each
//! order is counted over the time it surely held its unit, and a sweep over those intervals
//! finds the most units held at once.
//!
//! "Surely" keeps the check sound: it never accuses a correct run. An order surely held its
//! unit from the moment its buyer was told of it (the lock came before the answer) until:
//! - the end of the run, if it ended `paid`, or is `created` or `processing` (nothing returns
//!   its unit);
//! - its payment window after the lock, if it ended `expired`: the expiry sweep returns a unit
//!   no sooner than the order's `pay_by`, the lock's instant plus the window (on the ledger's
//!   clock, but both ends are the run's own instants: the sending of the attempt, which came
//!   before the lock, plus the window);
//! - nowhere beyond being told, if it `failed` or its status is unknown (a failed order's unit
//!   returns at once; an unknown status is a violation of its own).
//!
//! The expiry instants the run could observe (the stock seen back on sale) come later than
//! the true ones, and with a window shorter than the crowd units expire and sell again before
//! any observation: counting to them would accuse correct runs. The intervals above are the
//! shortest the design allows, so every overlap they show is a real oversell.

use std::time::{Duration, Instant};

use shared::order_status::OrderStatus;

use crate::drive::Holding;

/// The most units held at once, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peak {
    pub held: u64,
    pub at: Instant,
}

/// The most units `holdings` surely held at one instant, each order's status as
/// `final_status` tells and the sale's payment `window`; `None` without holdings.
pub fn peak(
    holdings: &[Holding],
    window: Duration,
    final_status: impl Fn(&Holding) -> Option<OrderStatus>,
) -> Option<Peak> {
    // (instant, change): a unit taken is +1, a unit surely returned -1.
    let mut changes: Vec<(Instant, i64)> = Vec::with_capacity(holdings.len() * 2);
    for holding in holdings {
        let from = holding.known_at;
        match surely_held_until(holding, window, final_status(holding)) {
            Some(until) if until > from => changes.extend([(from, 1), (until, -1)]),
            Some(_) => {}
            None => changes.push((from, 1)),
        }
    }
    // At one instant a return counts before a take: the unit may pass from one to the other.
    changes.sort_unstable();
    let mut held: i64 = 0;
    let mut peak: Option<Peak> = None;
    for (at, change) in changes {
        held += change;
        let held = held.unsigned_abs();
        if peak.is_none_or(|peak| held > peak.held) {
            peak = Some(Peak { held, at });
        }
    }
    peak
}

/// Until when `holding` surely held its unit (`None`: to the end of the run).
fn surely_held_until(
    holding: &Holding,
    window: Duration,
    status: Option<OrderStatus>,
) -> Option<Instant> {
    match status {
        Some(OrderStatus::Paid | OrderStatus::Created | OrderStatus::Processing) => None,
        Some(OrderStatus::Expired) => Some(holding.locked_after + window),
        Some(OrderStatus::Failed) | None => Some(holding.known_at),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use shared::ids::{OrderId, SaleId};
    use shared::order_status::OrderStatus::{Expired, Failed, Paid};

    use super::*;
    use crate::drive::Told;

    const WINDOW: Duration = Duration::from_secs(10);

    /// An order told by a 202 sent at `sent_secs` and answered 10 ms later.
    fn accepted(start: Instant, user: usize, sent_secs: u64) -> Holding {
        let sent = start + Duration::from_secs(sent_secs);
        Holding {
            user,
            order_id: OrderId::generate(&"s".parse::<SaleId>().unwrap()),
            told: Told::Accepted,
            locked_after: sent,
            known_at: sent + Duration::from_millis(10),
        }
    }

    fn peak_of(holdings: &[Holding], statuses: &[OrderStatus]) -> u64 {
        let status: HashMap<&OrderId, OrderStatus> = holdings
            .iter()
            .map(|holding| &holding.order_id)
            .zip(statuses.iter().copied())
            .collect();
        peak(holdings, WINDOW, |holding| {
            status.get(&holding.order_id).copied()
        })
        .map_or(0, |peak| peak.held)
    }

    #[test]
    fn units_resold_after_their_window_are_held_by_one_order_at_a_time() {
        let start = Instant::now();
        // Stock 2: one paid, one expired at 10 s and sold again at 12 s.
        let holdings = [
            accepted(start, 0, 0),
            accepted(start, 1, 0),
            accepted(start, 2, 12),
        ];
        assert_eq!(peak_of(&holdings, &[Paid, Expired, Paid]), 2);
    }

    #[test]
    fn a_unit_sold_again_inside_its_window_is_an_oversell_though_the_totals_agree() {
        let start = Instant::now();
        // Stock 2, and `accepted ≤ stock + expired` (3 ≤ 2 + 1): yet at 5 s three units are
        // held, the expired order's window still open.
        let holdings = [
            accepted(start, 0, 0),
            accepted(start, 1, 0),
            accepted(start, 2, 5),
        ];
        assert_eq!(peak_of(&holdings, &[Paid, Expired, Paid]), 3);
    }

    #[test]
    fn a_return_and_a_take_at_one_instant_count_the_unit_once() {
        let start = Instant::now();
        let mut returned = accepted(start, 0, 0);
        returned.locked_after = start;
        let mut taken = accepted(start, 1, 0);
        taken.known_at = start + WINDOW;
        assert_eq!(peak_of(&[returned, taken], &[Expired, Paid]), 1);
    }

    #[test]
    fn failed_and_unknown_orders_count_nowhere_and_paid_ones_to_the_end() {
        let start = Instant::now();
        let holdings = [
            accepted(start, 0, 0),
            accepted(start, 1, 1),
            accepted(start, 2, 100),
        ];
        // The third has no status: only the paid one counts beside it.
        assert_eq!(peak_of(&holdings, &[Paid, Failed]), 1);
        assert_eq!(peak(&[], WINDOW, |_| None), None);
    }
}
