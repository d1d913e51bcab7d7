//! The payment resolver: no buyer's money is kept without a sale.
//!
//! A payment is three steps in two systems: the intent recorded in the ledger, the provider's
//! charge, the order marked paid. The gateway finishes all three when nothing fails; this
//! finishes what it left (`docs/architecture.md`, "Money"). Every sweep of the reconciler
//! hands it the intents older than `resolve_after` (longer than any payment request runs, so
//! none is still charging), and it settles each by where the order stands:
//!
//! | order | the provider holds | done here |
//! | --- | --- | --- |
//! | paid | (its charge is the sale) | the intent settled |
//! | expired or failed | a charge | refunded, then settled |
//! | expired or failed | nothing, or a refund | its key voided (a charge still on its way is refused), settled |
//! | awaiting payment | a charge | the order paid (or, if its window closed meanwhile, refunded) |
//! | awaiting payment | nothing | left: the buyer may pay again, or the order expires, and then it is settled |
//!
//! A failure (the provider or the ledger unreachable) leaves the intent for the next look.

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use shared::error::StoreError;
use shared::ids::{OrderId, SaleId};
use shared::payment::{Charge, PaymentError, PaymentProvider};
use shared::stock::{DuePayment, OrderStatus, Payment, StockLedger};

/// Payment intents settled, by how: `paid` (the sale went through; completed here when the
/// gateway could not), `refunded`, `never_charged`.
pub const PAYMENTS_SETTLED_TOTAL: &str = "seckill_payments_settled_total";
/// Looks at a payment intent that failed (the provider or the ledger did not answer); the
/// intent waits for the next look.
pub const PAYMENT_RESOLVE_FAILURES_TOTAL: &str = "seckill_payment_resolve_failures_total";

/// Intents read per call.
const CHUNK: usize = 500;
/// Most intents looked at per sale per sweep (each may call the provider); the rest wait for
/// the next sweep.
const SWEEP_LIMIT: usize = 10_000;

pub struct PaymentResolver {
    ledger: Arc<dyn StockLedger>,
    provider: Arc<dyn PaymentProvider>,
    /// Only intents this old are looked at: longer than any payment request runs.
    resolve_after: Duration,
}

/// How one intent was settled, or why it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    Paid,
    Refunded,
    NeverCharged,
    /// Not charged, and the order may still be paid: looked at again later.
    Waiting,
}

impl Settled {
    fn label(self) -> Option<&'static str> {
        match self {
            Self::Paid => Some("paid"),
            Self::Refunded => Some("refunded"),
            Self::NeverCharged => Some("never_charged"),
            Self::Waiting => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error(transparent)]
    Ledger(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] PaymentError),
}

impl PaymentResolver {
    pub fn new(
        ledger: Arc<dyn StockLedger>,
        provider: Arc<dyn PaymentProvider>,
        resolve_after: Duration,
    ) -> Self {
        for how in ["paid", "refunded", "never_charged"] {
            counter!(PAYMENTS_SETTLED_TOTAL, "how" => how).absolute(0);
        }
        counter!(PAYMENT_RESOLVE_FAILURES_TOTAL).absolute(0);
        Self {
            ledger,
            provider,
            resolve_after,
        }
    }

    /// Settles what it can of the sale's intents older than `resolve_after` at `now_ms` (the
    /// ledger's clock); returns how many it settled. Fails only when the ledger cannot hand
    /// the intents out; one intent's failure is counted and left for the next look.
    pub async fn resolve(&self, sale_id: &SaleId, now_ms: i64) -> Result<usize, StoreError> {
        let before_ms = now_ms.saturating_sub(self.resolve_after.as_millis() as i64);
        let mut settled = 0;
        let mut looked_at = 0;
        loop {
            let due = self
                .ledger
                .claim_payments(sale_id, before_ms, CHUNK)
                .await?;
            let chunk = due.len();
            looked_at += chunk;
            for intent in due {
                match self.settle(&intent).await {
                    Ok(how) => {
                        if let Some(label) = how.label() {
                            counter!(PAYMENTS_SETTLED_TOTAL, "how" => label).increment(1);
                            settled += 1;
                        }
                    }
                    Err(error) => {
                        counter!(PAYMENT_RESOLVE_FAILURES_TOTAL).increment(1);
                        tracing::warn!(%error, order_id = %intent.order_id,
                            "payment intent not settled; looked at again later");
                    }
                }
            }
            // Each intent handed out is due again only after another full age: no loop.
            if chunk < CHUNK || looked_at >= SWEEP_LIMIT {
                return Ok(settled);
            }
        }
    }

    async fn settle(&self, intent: &DuePayment) -> Result<Settled, ResolveError> {
        let order = &intent.order_id;
        match intent.status {
            OrderStatus::Paid => {
                self.ledger.settle_payment(order).await?;
                Ok(Settled::Paid)
            }
            OrderStatus::Expired | OrderStatus::Failed => self.give_back(order).await,
            OrderStatus::Processing | OrderStatus::Created => {
                if !matches!(self.provider.charge_of(order).await?, Charge::Kept { .. }) {
                    return Ok(Settled::Waiting);
                }
                // Charged, and the gateway never marked it paid: finish the payment.
                match self.ledger.pay(order, &intent.user_id).await? {
                    Payment::Paid | Payment::AlreadyPaid => {
                        tracing::info!(%order, "a charge the gateway could not confirm completed its order");
                        Ok(Settled::Paid)
                    }
                    Payment::Expired | Payment::Failed | Payment::NotFound => {
                        self.give_back(order).await
                    }
                }
            }
        }
    }

    /// Voids the order's key (a charge still on its way is refused from now on), refunds the
    /// charge if the provider keeps one, then settles the intent.
    async fn give_back(&self, order: &OrderId) -> Result<Settled, ResolveError> {
        let how = match self.provider.void(order).await? {
            Charge::Kept { amount_cents } => {
                self.provider.refund(order).await?;
                tracing::info!(%order, amount_cents, "refunded a charge whose order did not sell");
                Settled::Refunded
            }
            Charge::Refunded => Settled::Refunded,
            Charge::None => Settled::NeverCharged,
        };
        self.ledger.settle_payment(order).await?;
        Ok(how)
    }
}
