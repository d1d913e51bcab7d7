//! How far a sale has gone through the pipeline, read where each step leaves its mark: the
//! moment a fault strikes is chosen by it ("once 30 orders are written"), so the fault meets
//! the step it is meant to meet. Every count is read through the services' own types (the
//! order store, the payment books, the SMS file's reader), never through a key spelled here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use order_worker::store::OrderStore;
use shared::ids::SaleId;
use shared::payment::PaymentRecord;

use crate::api::Gateway;
use crate::checks::sms_ledger::SmsLedger;

/// A step of a purchase, counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Units locked in Redis (answered 202, or lost with the answer).
    Locked,
    /// Order rows in the order table.
    OrdersWritten,
    /// SMS delivered.
    SmsSent,
    /// Units the statistics counted sold.
    UnitsCounted,
    /// Order rows expired by the reconciler's sweep.
    OrdersExpired,
    /// Orders the payment provider has been asked to charge.
    Charges,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Self::Locked => "units locked",
            Self::OrdersWritten => "orders written",
            Self::SmsSent => "SMS sent",
            Self::UnitsCounted => "units counted",
            Self::OrdersExpired => "orders expired",
            Self::Charges => "charges",
        }
    }
}

/// Where one sale's steps are read.
pub struct Progress {
    pub gateway: Gateway,
    pub orders: Arc<dyn OrderStore>,
    pub sms_file: PathBuf,
    pub payments_file: PathBuf,
    pub sale_id: SaleId,
    pub stock: u64,
}

impl Progress {
    /// How many times `step` has happened; 0 where it cannot be read yet (the sale not
    /// created, the file not written).
    pub async fn count(&self, step: Step) -> u64 {
        let sale = self.sale_id.as_str();
        match step {
            Step::Locked => self
                .gateway
                .sale(sale)
                .await
                .map_or(0, |view| self.stock.saturating_sub(view.remaining)),
            Step::OrdersWritten => self
                .orders
                .sale_orders(&self.sale_id)
                .await
                .map_or(0, |rows| rows.rows),
            Step::OrdersExpired => self
                .orders
                .sale_orders(&self.sale_id)
                .await
                .map_or(0, |rows| rows.expired),
            Step::SmsSent => SmsLedger::read(&self.sms_file, &self.sale_id)
                .map_or(0, |sms| sms.delivered.len() as u64),
            Step::UnitsCounted => self.gateway.stats(sale).await.map_or(0, |stats| stats.sold),
            Step::Charges => PaymentRecord::read(&self.payments_file).map_or(0, |books| {
                let charged = books.accounts().filter(|(_, account)| account.charges > 0);
                charged.count() as u64
            }),
        }
    }

    /// Waits until `step` has happened `at_least` times; fails after a minute.
    pub async fn reached(&self, step: Step, at_least: u64) -> anyhow::Result<()> {
        let reached = shared::poll::until(
            Duration::from_mins(1),
            Duration::from_millis(50),
            async || {
                let count = self.count(step).await;
                (count >= at_least).then_some(count)
            },
        )
        .await;
        let count =
            reached.with_context(|| format!("never saw {} reach {at_least}", step.describe()))?;
        eprintln!("{} at {count}: the fault strikes", step.describe());
        Ok(())
    }
}
