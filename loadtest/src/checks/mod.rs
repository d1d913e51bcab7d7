//! After the crowd: wait for the pipeline to drain, then check the invariants
//! (`docs/architecture.md`) from every angle the run was given: the API always, the order
//! table, the stock ledger and the SMS file when [`Probes`] reach them. The order table and
//! the ledger are read through the services' own store traits, so any backend the services
//! run on can be checked: a separate load test opens them from URLs ([`Probes::open`]), the
//! all-in-one runner hands in the very stores its services use.
//!
//! | module | concern |
//! | --- | --- |
//! | [`probes`] | where the checks may look besides the API: arguments, and the stores they open |
//! | [`settle`] | waiting for the pipeline to drain, then reading what every store holds |
//! | [`sms_ledger`] | one sale's lines of the SMS file |
//! | [`invariants`] | the invariants 1–8, held against what the crowd was told |

pub mod invariants;
pub mod probes;
pub mod settle;
pub(crate) mod sms_ledger;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use order_worker::store::SaleOrders;
use shared::ids::{OrderId, SaleId};
use shared::order_status::OrderStatus;
use shared::payment::PaymentRecord;

use crate::api::StatsView;
use crate::drive::Holding;
use crate::lifecycle::{Fate, Fates};

pub use invariants::{Skipped, Verdict, told_unavailable_but_holding, verdict};
pub use probes::{CheckArgs, Probes};
pub use settle::settle;

/// What the crowd was told, and about which sale.
pub struct Expected<'a> {
    pub sale_id: &'a SaleId,
    pub stock: u64,
    /// The shortest payment window of the run's orders: an expired order held its unit at
    /// least this long.
    pub payment_window: Duration,
    /// Distinct users who tried to buy.
    pub demand: u64,
    /// Every order the crowd holds (see `drive::Outcome::holdings`).
    pub holdings: &'a [Holding],
    /// Users a 503 promised nothing was locked (see `drive::Outcome::promised_nothing_locked`).
    pub promised_nothing_locked: &'a [usize],
    /// When the crowd began: the report gives instants from it.
    pub started: Instant,
    pub tokens: &'a [String],
    /// With a lifecycle: each order's fate, and the resale rounds. `None`: nobody paid, every
    /// order should stay `created`.
    pub fates: Option<&'a Fates>,
    /// Messages the SMS worker may send again because the run killed it.
    pub sms_repeats_allowed: u64,
    /// Faults struck while the crowd bought: stranded stock and resale are not checked.
    pub faults_while_buying: bool,
}

impl Expected<'_> {
    /// Whether `order_id` may end as `status`.
    fn allows(&self, order_id: &OrderId, status: OrderStatus) -> bool {
        match self.fates {
            None => status == OrderStatus::Created,
            Some(fates) => fates
                .of
                .get(order_id)
                .copied()
                .unwrap_or(Fate::Expired)
                .allows(status),
        }
    }

    /// Orders that must end paid, must end expired, and may end either.
    fn fate_counts(&self) -> (u64, u64, u64) {
        self.fates.map_or((0, 0, 0), |fates| {
            (
                fates.count(Fate::Paid),
                fates.count(Fate::Expired),
                fates.count(Fate::PaidOrExpired),
            )
        })
    }

    /// SMS the run expects: one per order, and one more per order paid or expired.
    fn sms(&self) -> u64 {
        let (paid, expired, either) = self.fate_counts();
        self.holdings.len() as u64 + paid + expired + either
    }
}

/// What the system holds once it settled, each reply as its reader types it; `None` where the
/// run had no access.
#[derive(Debug, Default)]
pub struct Observed {
    /// Units the API says remain.
    pub remaining: u64,
    /// The statistics, as the API serves them.
    pub stats: StatsView,
    /// The sale's rows in the order table.
    pub orders: Option<SaleOrders>,
    /// Locks not yet handed to the broker (the stock ledger's outbox).
    pub outbox: Option<u64>,
    /// Payment intents not settled yet (the resolver completes or refunds their charges).
    pub open_payments: Option<u64>,
    /// The payment provider's books, read once settled.
    pub payments: Option<PaymentRecord>,
    /// SMS the provider delivered, and the ones it was sent again and did not deliver.
    pub sms: Option<u64>,
    pub sms_repeats: Option<u64>,
    /// Each held order's status once settled, as its owner was told (missing: not told).
    pub final_statuses: HashMap<OrderId, OrderStatus>,
    pub duplicates: u64,
    pub settle_secs: f64,
}

impl Observed {
    /// Held orders that ended in `status`.
    pub fn ended(&self, status: OrderStatus) -> u64 {
        self.final_statuses
            .values()
            .filter(|s| **s == status)
            .count() as u64
    }
}
