//! The invariants 1–8 of `docs/architecture.md`, held against what the crowd was told: each
//! violation a sentence, each check named as run or skipped (and why).

use std::collections::HashSet;

use shared::order_status::OrderStatus;

use super::{Expected, Observed};
use crate::drive::{Holding, Told};
use crate::lifecycle::Fates;
use crate::{money, oversell};

/// The invariants 1–8 of `docs/architecture.md`, checked as far as the run can see: each
/// violation as a sentence, and which checks ran or were skipped and why.
pub fn verdict(expected: &Expected<'_>, observed: &Observed) -> Verdict {
    let mut verdict = Verdict::default();
    supply(expected, observed, &mut verdict);
    order_table(expected, observed, &mut verdict);
    pipeline(expected, observed, &mut verdict);
    promises(expected, &mut verdict);
    payments(expected, observed, &mut verdict);
    verdict
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// One sentence per violation.
    pub violations: Vec<String>,
    /// The checks that ran, by name.
    pub ran: Vec<&'static str>,
    /// The checks the run could not make.
    pub skipped: Vec<Skipped>,
}

/// A check the run could not make, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub check: &'static str,
    pub because: &'static str,
}

impl Verdict {
    /// No check at all, `because`.
    pub fn unchecked(because: &'static str) -> Self {
        Self {
            skipped: vec![Skipped {
                check: "every invariant",
                because,
            }],
            ..Self::default()
        }
    }

    /// The check `name` ran; `sentence` is a violation unless it `holds`.
    fn check(&mut self, name: &'static str, holds: bool, sentence: impl FnOnce() -> String) {
        if !self.ran.contains(&name) {
            self.ran.push(name);
        }
        if !holds {
            self.violations.push(sentence());
        }
    }

    fn skip(&mut self, check: &'static str, because: &'static str) {
        self.skipped.push(Skipped { check, because });
    }
}

/// Invariants 1, 2 and 7's resale: never more units held than the stock, nothing stranded
/// while demand remains.
fn supply(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let held = expected.holdings.len() as u64;
    let peak = oversell::peak(expected.holdings, expected.payment_window, |holding| {
        observed.final_statuses.get(&holding.order_id).copied()
    });
    verdict.check(
        "oversell",
        peak.is_none_or(|peak| peak.held <= expected.stock),
        || {
            let peak = peak.expect("a peak above the stock");
            format!(
                "oversell: {} units held at once {:.3} s into the run, for a stock of {}",
                peak.held,
                peak.at
                    .saturating_duration_since(expected.started)
                    .as_secs_f64(),
                expected.stock
            )
        },
    );
    if expected.faults_while_buying {
        let because =
            "faults struck while the crowd bought: a unit left unsold is no safety violation";
        verdict.skip("stranded_stock", because);
        verdict.skip("resale", because);
        return;
    }
    if expected.demand < expected.stock {
        verdict.skip(
            "stranded_stock",
            "demand below the stock: the sale need not sell out",
        );
    }
    match expected.fates {
        None => {
            verdict.skip("resale", "no --pay-ratio: no unit comes back");
            if expected.demand >= expected.stock {
                verdict.check("stranded_stock", observed.remaining == 0, || {
                    format!("stranded stock: {} units remain", observed.remaining)
                });
                verdict.check("stranded_stock", held == expected.stock, || {
                    format!("stranded stock: {held} held of {}", expected.stock)
                });
            }
        }
        Some(fates) => {
            if expected.demand >= expected.stock {
                // At least the stock: with a short window, units expire and sell again during
                // the crowd itself.
                let first_crowd = held - fates.resold();
                verdict.check("stranded_stock", first_crowd >= expected.stock, || {
                    format!(
                        "stranded stock: the crowd got {first_crowd} of {}",
                        expected.stock
                    )
                });
            }
            resale(fates, verdict);
        }
    }
}

/// Invariant 7's resale: returned units are sold again while latecomers want them.
///
/// A round may sell more than the units back when it began: an order whose payment's answer was
/// unknown may expire during the round, and its unit sells too.
fn resale(fates: &Fates, verdict: &mut Verdict) {
    for (number, round) in fates.rounds.iter().enumerate() {
        verdict.check(
            "resale",
            round.buyers < round.offered || round.held >= round.offered,
            || {
                format!(
                    "returned units not sold again: resale round {} sold {} of {} units to {} latecomers",
                    number + 1,
                    round.held,
                    round.offered,
                    round.buyers
                )
            },
        );
    }
}

/// Invariants 4 and 7 in the order table: one row per order, each in its final status.
fn order_table(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let Some(rows) = observed.orders else {
        verdict.skip("order_table", "no order table to read (--database-url)");
        return;
    };
    let held = expected.holdings.len() as u64;
    let (paid, expired) = (
        observed.ended(OrderStatus::Paid),
        observed.ended(OrderStatus::Expired),
    );
    let mut check = |holds, sentence: String| verdict.check("order_table", holds, || sentence);
    check(
        rows.rows == held,
        format!(
            "orders lost or doubled: {} orders for {held} acceptances",
            rows.rows
        ),
    );
    check(
        (rows.paid, rows.expired) == (paid, expired),
        format!(
            "order table: {} paid and {} expired rows for {paid} orders that ended paid and {expired} expired",
            rows.paid, rows.expired
        ),
    );
    check(
        rows.revenue_cents == observed.stats.revenue_cents,
        format!(
            "stats revenue {} differs from the orders' {}",
            observed.stats.revenue_cents, rows.revenue_cents
        ),
    );
    check(
        rows.paid_revenue_cents == observed.stats.paid_revenue_cents,
        format!(
            "stats paid revenue {} differs from the paid orders' {}",
            observed.stats.paid_revenue_cents, rows.paid_revenue_cents
        ),
    );
}

/// Invariants 3 to 5 and 7 everywhere else: statuses, statistics, SMS, conservation.
fn pipeline(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let held = expected.holdings.len() as u64;
    let (paid, expired) = (
        observed.ended(OrderStatus::Paid),
        observed.ended(OrderStatus::Expired),
    );
    verdict.check("one_per_buyer", observed.duplicates == 0, || {
        format!(
            "{} duplicates (buyers, orders or SMS of one kind)",
            observed.duplicates
        )
    });
    verdict.check(
        "statistics",
        (
            observed.stats.sold,
            observed.stats.buyers,
            observed.stats.paid,
            observed.stats.expired,
            observed.stats.failed,
        ) == (held, held, paid, expired, 0),
        || {
            format!(
                "stats count {} sold to {} buyers, {} paid, {} expired and {} failed, for {held} acceptances, {paid} orders that ended paid and {expired} expired",
                observed.stats.sold,
                observed.stats.buyers,
                observed.stats.paid,
                observed.stats.expired,
                observed.stats.failed
            )
        },
    );
    let wrong_status = expected
        .holdings
        .iter()
        .filter(|holding| {
            observed
                .final_statuses
                .get(&holding.order_id)
                .is_none_or(|status| !expected.allows(&holding.order_id, *status))
        })
        .count();
    verdict.check("final_statuses", wrong_status == 0, || {
        format!(
            "{wrong_status} held orders did not end as they must (created; or paid when the payment was answered 200, expired when it was refused or never tried, either when its answer could not tell)"
        )
    });
    sms(expected, observed, verdict);
    conservation(expected, observed, verdict);
}

/// Invariant 4's one SMS per order and kind, read from the SMS file.
fn sms(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let (Some(sms), Some(repeats)) = (observed.sms, observed.sms_repeats) else {
        verdict.skip("sms", "no SMS file to read (--sms-file)");
        return;
    };
    verdict.check("sms", sms == expected.sms(), || {
        format!(
            "{sms} SMS for {} orders and {} of them paid or expired (expected {})",
            expected.holdings.len(),
            expected.sms() - expected.holdings.len() as u64,
            expected.sms()
        )
    });
    verdict.check("sms", repeats <= expected.sms_repeats_allowed, || {
        format!(
            "{repeats} SMS sent again (the provider delivered each once), {} allowed by the faults",
            expected.sms_repeats_allowed
        )
    });
}

/// Invariants 5 and 7: stock = remaining + live orders, as the API shows them (always), and as
/// the stores hold them (the outbox and the order table, when the run can read both).
fn conservation(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let live = [
        OrderStatus::Processing,
        OrderStatus::Created,
        OrderStatus::Paid,
    ]
    .map(|status| observed.ended(status))
    .iter()
    .sum::<u64>();
    verdict.check(
        "conservation",
        expected.stock == observed.remaining + live,
        || {
            format!(
                "conservation: stock {} != remaining {} + live orders {live} (processing, created or paid, as their owners were told)",
                expected.stock, observed.remaining
            )
        },
    );
    let (Some(outbox), Some(rows)) = (observed.outbox, observed.orders) else {
        verdict.skip(
            "conservation_in_stores",
            "needs the stock ledger (--redis-url) and the order table (--database-url)",
        );
        return;
    };
    // Live orders hold a unit: processing ones (in the outbox) and stored ones not expired.
    let live = outbox + rows.rows - rows.expired;
    verdict.check(
        "conservation_in_stores",
        expected.stock == observed.remaining + live,
        || {
            format!(
                "conservation in the stores: stock {} != remaining {} + outbox entries {outbox} + order rows not expired {}",
                expected.stock,
                observed.remaining,
                live - outbox
            )
        },
    );
}

/// Invariant 8, from the provider's books: every charge ended paid or refunded.
fn payments(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let Some(books) = &observed.payments else {
        verdict.skip("money", "no payment books to read (--payments-file)");
        return;
    };
    let (_, violations) = money::check(books, expected.sale_id, &observed.final_statuses);
    verdict.check("money", violations.is_empty(), || {
        let shown: Vec<&str> = violations.iter().take(3).map(String::as_str).collect();
        format!(
            "money: {} violations, e.g. {}",
            violations.len(),
            shown.join("; ")
        )
    });
}

/// The orders of buyers told by a 503 that nothing was locked (and whose every other answer
/// was definitive: `promised_nothing_locked`) that no 202 announced: the gateway said it had
/// not locked them.
pub fn told_unavailable_but_holding<'a>(
    holdings: &'a [Holding],
    promised_nothing_locked: &[usize],
) -> Vec<&'a Holding> {
    let promised: HashSet<usize> = promised_nothing_locked.iter().copied().collect();
    holdings
        .iter()
        .filter(|holding| holding.told != Told::Accepted && promised.contains(&holding.user))
        .collect()
}

/// The gateway's word: a buyer told by a 503 that nothing was locked holds nothing from it.
fn promises(expected: &Expected<'_>, verdict: &mut Verdict) {
    let broken = told_unavailable_but_holding(expected.holdings, expected.promised_nothing_locked);
    verdict.check("nothing_locked_means_nothing_held", broken.is_empty(), || {
        let example = broken.first().expect("a broken promise");
        format!(
            "{} buyers told 503 \"nothing was locked\" hold an order no 202 announced (e.g. user {} holds {})",
            broken.len(),
            example.user,
            example.order_id
        )
    });
}

#[cfg(test)]
mod tests {
    use shared::journal::Replay;

    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use order_worker::store::SaleOrders;
    use shared::ids::{OrderId, SaleId};
    use shared::payment::PaymentRecord;

    use super::*;
    use crate::api::StatsView;
    use crate::checks::{Expected, Observed};
    use crate::lifecycle::{Fate, Round};

    /// A sale of `stock` units that `holdings` bought, as a correct run sees it once settled:
    /// statistics, order table, outbox and SMS file agree, each order ended as it must.
    struct Run {
        sale: SaleId,
        stock: u64,
        started: Instant,
        holdings: Vec<Holding>,
        promised_nothing_locked: Vec<usize>,
        tokens: Vec<String>,
        fates: Option<Fates>,
    }

    const WINDOW: Duration = Duration::from_secs(10);

    impl Run {
        /// `stock` units, each bought by one buyer told by a 202 a millisecond after its start.
        fn sold_out(stock: u64) -> Self {
            let sale: SaleId = "s1".parse().unwrap();
            let started = Instant::now();
            let holdings = (0..stock as usize)
                .map(|user| Holding {
                    user,
                    order_id: OrderId::generate(&sale),
                    told: Told::Accepted,
                    locked_after: started,
                    known_at: started + Duration::from_millis(1),
                })
                .collect();
            Self {
                sale,
                stock,
                started,
                holdings,
                promised_nothing_locked: Vec::new(),
                tokens: vec!["token".to_owned(); stock as usize + 10],
                fates: None,
            }
        }

        /// One more buyer, told by a 202 `secs` into the run.
        fn buys_at(&mut self, secs: u64) -> OrderId {
            let order_id = OrderId::generate(&self.sale);
            let sent = self.started + Duration::from_secs(secs);
            self.holdings.push(Holding {
                user: self.holdings.len(),
                order_id: order_id.clone(),
                told: Told::Accepted,
                locked_after: sent,
                known_at: sent + Duration::from_millis(1),
            });
            order_id
        }

        fn expected(&self) -> Expected<'_> {
            Expected {
                sale_id: &self.sale,
                stock: self.stock,
                payment_window: WINDOW,
                demand: self.stock + 5,
                holdings: &self.holdings,
                promised_nothing_locked: &self.promised_nothing_locked,
                started: self.started,
                tokens: &self.tokens,
                fates: self.fates.as_ref(),
                sms_repeats_allowed: 0,
                faults_while_buying: false,
            }
        }

        /// What a correct system shows: each order ended as `ended` says (created without one).
        fn observed(&self, ended: impl Fn(&OrderId) -> OrderStatus) -> Observed {
            let final_statuses: HashMap<OrderId, OrderStatus> = self
                .holdings
                .iter()
                .map(|holding| (holding.order_id.clone(), ended(&holding.order_id)))
                .collect();
            let count = |status| final_statuses.values().filter(|s| **s == status).count() as u64;
            let (held, paid, expired) = (
                self.holdings.len() as u64,
                count(OrderStatus::Paid),
                count(OrderStatus::Expired),
            );
            Observed {
                remaining: self.stock + expired - held,
                stats: StatsView {
                    sold: held,
                    buyers: held,
                    paid,
                    expired,
                    ..StatsView::default()
                },
                orders: Some(SaleOrders {
                    rows: held,
                    distinct_buyers: held,
                    paid,
                    expired,
                    ..SaleOrders::default()
                }),
                outbox: Some(0),
                sms: Some(held + paid + expired),
                sms_repeats: Some(0),
                payments: Some(books_charging(&final_statuses)),
                final_statuses,
                ..Observed::default()
            }
        }
    }

    /// The provider's books of a correct run: one charge per paid order, nothing else.
    fn books_charging(final_statuses: &HashMap<OrderId, OrderStatus>) -> PaymentRecord {
        let mut books = PaymentRecord::default();
        for (order_id, _) in final_statuses
            .iter()
            .filter(|(_, status)| **status == OrderStatus::Paid)
        {
            let line = serde_json::json!({"order_id": order_id, "op": "charge", "amount_cents": 1});
            books.replay(line.to_string().as_bytes());
        }
        books
    }

    #[test]
    fn a_round_that_sold_fewer_units_than_came_back_to_enough_latecomers_is_a_violation() {
        let round = |offered, held| Round {
            offered,
            buyers: offered * 3,
            held,
        };
        let verdict_of = |rounds: Vec<Round>| {
            let fates = Fates {
                rounds,
                ..Fates::default()
            };
            let mut verdict = Verdict::default();
            resale(&fates, &mut verdict);
            verdict.violations
        };
        assert_eq!(verdict_of(vec![round(10, 9)]).len(), 1);
        assert!(
            verdict_of(vec![round(10, 10), round(4, 7)]).is_empty(),
            "units of unknown payments that came back during a round sell too"
        );
    }

    #[test]
    fn a_correct_run_holds_every_invariant_and_runs_every_check() {
        let run = Run::sold_out(3);
        let verdict = verdict(&run.expected(), &run.observed(|_| OrderStatus::Created));
        assert_eq!(verdict.violations, Vec::<String>::new());
        for check in [
            "oversell",
            "stranded_stock",
            "order_table",
            "statistics",
            "final_statuses",
            "sms",
            "conservation",
            "conservation_in_stores",
            "nothing_locked_means_nothing_held",
            "money",
        ] {
            assert!(verdict.ran.contains(&check), "{check} did not run");
        }
        assert_eq!(
            verdict.skipped,
            [Skipped {
                check: "resale",
                because: "no --pay-ratio: no unit comes back"
            }]
        );
    }

    #[test]
    fn faults_while_buying_waive_units_left_unsold_but_no_safety_check() {
        let mut run = Run::sold_out(3);
        run.stock = 4;
        let observed = run.observed(|_| OrderStatus::Created);
        let strict = verdict(&run.expected(), &observed);
        assert_eq!(
            strict.violations,
            [
                "stranded stock: 1 units remain",
                "stranded stock: 3 held of 4"
            ]
        );

        let faulted = Expected {
            faults_while_buying: true,
            ..run.expected()
        };
        let waived = verdict(&faulted, &observed);
        assert_eq!(waived.violations, Vec::<String>::new());
        let skipped: Vec<&str> = waived.skipped.iter().map(|s| s.check).collect();
        assert_eq!(skipped, ["stranded_stock", "resale"]);

        let doubled = Observed {
            orders: observed.orders.map(|rows| SaleOrders {
                rows: rows.rows + 1,
                ..rows
            }),
            ..run.observed(|_| OrderStatus::Created)
        };
        let violations = verdict(&faulted, &doubled).violations;
        assert!(
            violations
                .iter()
                .any(|v| v.starts_with("orders lost or doubled")),
            "{violations:?}"
        );
    }

    #[test]
    fn without_the_stores_the_checks_that_need_them_say_why_they_were_skipped() {
        let run = Run::sold_out(3);
        let observed = Observed {
            orders: None,
            outbox: None,
            sms: None,
            sms_repeats: None,
            payments: None,
            ..run.observed(|_| OrderStatus::Created)
        };
        let verdict = verdict(&run.expected(), &observed);
        assert_eq!(verdict.violations, Vec::<String>::new());
        let skipped: Vec<_> = verdict.skipped.iter().map(|skip| skip.check).collect();
        assert_eq!(
            skipped,
            [
                "resale",
                "order_table",
                "sms",
                "conservation_in_stores",
                "money"
            ]
        );
        assert!(
            verdict.ran.contains(&"conservation"),
            "the API always shows conservation"
        );
    }

    #[test]
    fn a_unit_off_in_conservation_is_a_violation_in_the_api_and_in_the_stores() {
        let run = Run::sold_out(3);
        let mut observed = run.observed(|_| OrderStatus::Created);
        observed.outbox = Some(1);
        assert_eq!(
            verdict(&run.expected(), &observed).violations,
            [
                "conservation in the stores: stock 3 != remaining 0 + outbox entries 1 + order rows not expired 3"
            ]
        );
        let mut observed = run.observed(|_| OrderStatus::Created);
        observed.remaining = 1;
        let violations = verdict(&run.expected(), &observed).violations;
        assert!(
            violations.contains(
                &"conservation: stock 3 != remaining 1 + live orders 3 (processing, created or paid, as their owners were told)".to_owned()
            ),
            "{violations:?}"
        );
    }

    #[test]
    fn units_held_beyond_the_stock_at_one_instant_are_an_oversell_though_the_totals_agree() {
        // Stock 2: the first buyer pays, the second lets the window pass; a third buys at
        // 5 s, inside that window. 3 accepted <= stock 2 + 1 expired, yet 3 units were held.
        let mut run = Run::sold_out(2);
        let early = run.buys_at(5);
        let (paid, unpaid) = (
            run.holdings[0].order_id.clone(),
            run.holdings[1].order_id.clone(),
        );
        let fates = |late: &OrderId| Fates {
            of: HashMap::from([
                (paid.clone(), Fate::Paid),
                (unpaid.clone(), Fate::Expired),
                (late.clone(), Fate::Paid),
            ]),
            rounds: Vec::new(),
        };
        run.fates = Some(fates(&early));
        let ended = |order: &OrderId| {
            if *order == unpaid {
                OrderStatus::Expired
            } else {
                OrderStatus::Paid
            }
        };
        let violations = verdict(&run.expected(), &run.observed(ended)).violations;
        assert_eq!(
            violations,
            ["oversell: 3 units held at once 5.001 s into the run, for a stock of 2"]
        );

        // Bought after the window passed: the unit came back first.
        run.holdings.pop();
        let late = run.buys_at(11);
        run.fates = Some(fates(&late));
        let verdict = verdict(&run.expected(), &run.observed(ended));
        assert_eq!(verdict.violations, Vec::<String>::new());
    }

    #[test]
    fn a_buyer_told_nothing_was_locked_who_holds_an_order_no_202_announced_is_a_violation() {
        let mut run = Run::sold_out(2);
        run.holdings[1].told = Told::AlreadyPurchased;
        let observed = run.observed(|_| OrderStatus::Created);
        assert_eq!(
            verdict(&run.expected(), &observed).violations,
            Vec::<String>::new()
        );
        run.promised_nothing_locked = vec![0, 1];
        let held = run.holdings[1].order_id.clone();
        assert_eq!(
            verdict(&run.expected(), &observed).violations,
            [format!(
                "1 buyers told 503 \"nothing was locked\" hold an order no 202 announced (e.g. user 1 holds {held})"
            )]
        );
        assert_eq!(
            told_unavailable_but_holding(&run.holdings, &run.promised_nothing_locked).len(),
            1,
            "user 0's order was announced by a 202"
        );
    }

    #[test]
    fn a_payment_that_could_not_tell_may_end_paid_or_expired_and_a_refused_one_only_expired() {
        let mut run = Run::sold_out(2);
        let (first, second) = (
            run.holdings[0].order_id.clone(),
            run.holdings[1].order_id.clone(),
        );
        let fates = |second_fate| Fates {
            of: HashMap::from([
                (first.clone(), Fate::PaidOrExpired),
                (second.clone(), second_fate),
            ]),
            rounds: Vec::new(),
        };
        run.fates = Some(fates(Fate::Expired));
        for ended in [OrderStatus::Paid, OrderStatus::Expired] {
            let observed = run.observed(|order| {
                if *order == first {
                    ended
                } else {
                    OrderStatus::Expired
                }
            });
            let verdict = verdict(&run.expected(), &observed);
            assert_eq!(verdict.violations, Vec::<String>::new(), "{ended:?}");
        }
        let observed = run.observed(|_| OrderStatus::Paid);
        let violations = verdict(&run.expected(), &observed).violations;
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].starts_with("1 held orders did not end as they must"));
    }

    #[test]
    fn sms_repeats_are_a_violation_beyond_what_the_faults_allow() {
        let run = Run::sold_out(1);
        let mut observed = run.observed(|_| OrderStatus::Created);
        observed.sms_repeats = Some(1);
        let repeat_violations = |allowed| {
            let expected = Expected {
                sms_repeats_allowed: allowed,
                faults_while_buying: false,
                ..run.expected()
            };
            verdict(&expected, &observed).violations
        };
        assert_eq!(
            repeat_violations(0),
            ["1 SMS sent again (the provider delivered each once), 0 allowed by the faults"]
        );
        assert!(
            repeat_violations(1).is_empty(),
            "{:?}",
            repeat_violations(1)
        );
    }
}
