//! Invariant 8, money, read from the payment provider's own books
//! ([`shared::payment::PaymentRecord`], the very fold the simulated provider decides with), not
//! from what the gateway believed: every charge of the sale ends with its order paid or with a
//! refund; no order is charged twice; no refund without a charge; every paid order was charged.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use shared::ids::{OrderId, SaleId};
use shared::order_status::OrderStatus;
use shared::payment::PaymentRecord;

/// What the books say of one sale's money.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Money {
    /// Orders charged (once or more).
    pub charged: u64,
    /// Of those, refunded.
    pub refunded: u64,
    /// What the provider keeps.
    pub kept_cents: i64,
}

/// The sale's money in `books`, and each way it breaks invariant 8 as a sentence, given each
/// order's final status as its owner was told.
pub fn check<S: BuildHasher>(
    books: &PaymentRecord,
    sale_id: &SaleId,
    final_statuses: &HashMap<OrderId, OrderStatus, S>,
) -> (Money, Vec<String>) {
    let mut money = Money::default();
    let mut violations = Vec::new();
    let mut charged_for = HashSet::new();
    for (order_id, account) in books.accounts() {
        if order_id.sale_id() != *sale_id {
            continue;
        }
        let status = final_statuses.get(order_id).copied();
        let shown = status.map_or("unknown", OrderStatus::as_str);
        if account.charges > 1 {
            violations.push(format!(
                "order {order_id} charged {} times",
                account.charges
            ));
        }
        if account.refunds > account.charges {
            violations.push(format!(
                "order {order_id} refunded {} times for {} charges",
                account.refunds, account.charges
            ));
        }
        if account.charges > 0 {
            money.charged += 1;
            charged_for.insert(order_id);
        }
        if account.refunds > 0 {
            money.refunded += 1;
        }
        if account.kept() {
            money.kept_cents += account.charged_cents;
            if status != Some(OrderStatus::Paid) {
                violations.push(format!(
                    "money kept without a sale: order {order_id} ended {shown}, its charge of {} cents not refunded",
                    account.charged_cents
                ));
            }
        } else if status == Some(OrderStatus::Paid) {
            violations.push(format!(
                "order {order_id} is paid, but its charge was refunded"
            ));
        }
    }
    let unpaid_for = final_statuses
        .iter()
        .filter(|(order_id, status)| {
            **status == OrderStatus::Paid && !charged_for.contains(order_id)
        })
        .count();
    if unpaid_for > 0 {
        violations.push(format!(
            "{unpaid_for} orders are paid with no charge in the provider's books"
        ));
    }
    (money, violations)
}

#[cfg(test)]
mod tests {
    use shared::journal::Replay;

    use super::*;

    fn sale() -> SaleId {
        "s1".parse().unwrap()
    }

    /// Books made of these lines, as the simulated provider writes them.
    fn books(lines: &[(&OrderId, &str, bool)]) -> PaymentRecord {
        let mut record = PaymentRecord::default();
        for (order, op, repeat) in lines {
            let line = serde_json::json!({
                "order_id": order, "op": op, "amount_cents": 1250, "repeat": repeat
            });
            record.replay(line.to_string().as_bytes());
        }
        record
    }

    #[test]
    fn a_paid_charge_and_a_refunded_one_hold() {
        let (paid, expired, never) = (
            OrderId::generate(&sale()),
            OrderId::generate(&sale()),
            OrderId::generate(&sale()),
        );
        let record = books(&[
            (&paid, "charge", false),
            (&paid, "charge", true),
            (&expired, "charge", false),
            (&expired, "refund", false),
        ]);
        let statuses = HashMap::from([
            (paid, OrderStatus::Paid),
            (expired, OrderStatus::Expired),
            (never, OrderStatus::Expired),
        ]);
        let (money, violations) = check(&record, &sale(), &statuses);
        assert_eq!(violations, Vec::<String>::new());
        assert_eq!(
            money,
            Money {
                charged: 2,
                refunded: 1,
                kept_cents: 1250
            }
        );
    }

    #[test]
    fn a_charge_kept_for_an_expired_order_is_money_kept_without_a_sale() {
        let expired = OrderId::generate(&sale());
        let record = books(&[(&expired, "charge", false)]);
        let statuses = HashMap::from([(expired, OrderStatus::Expired)]);
        let (_, violations) = check(&record, &sale(), &statuses);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].starts_with("money kept without a sale"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_double_charge_a_refund_without_charge_and_a_paid_order_never_charged_are_violations() {
        let (twice, refunded_only, free) = (
            OrderId::generate(&sale()),
            OrderId::generate(&sale()),
            OrderId::generate(&sale()),
        );
        let record = books(&[
            (&twice, "charge", false),
            (&twice, "charge", false),
            (&refunded_only, "refund", false),
        ]);
        let statuses = HashMap::from([
            (twice, OrderStatus::Paid),
            (refunded_only, OrderStatus::Expired),
            (free, OrderStatus::Paid),
        ]);
        let (_, violations) = check(&record, &sale(), &statuses);
        assert_eq!(violations.len(), 3, "{violations:?}");
    }
}
