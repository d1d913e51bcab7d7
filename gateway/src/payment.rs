//! Where money would move: the payment provider, behind a trait of two calls.
//!
//! The order's state machine lives in the stock ledger; the provider only charges and refunds.
//! A payment charges first, then asks the ledger to mark the order paid in the one atomic step
//! it shares with expiry; if expiry won, the charge is refunded. Both calls carry the order id
//! as their idempotency key, so a repeated request charges once. The gateway ships a simulated
//! provider that approves everything; a real one plugs in here.

use async_trait::async_trait;
use shared::ids::OrderId;

/// The provider could not be reached or refused; nothing was charged.
#[derive(Debug, thiserror::Error)]
#[error("the payment provider failed: {0}")]
pub struct PaymentError(pub String);

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Charges `amount_cents` for the order, once per order id however often it is called.
    async fn charge(&self, order: &OrderId, amount_cents: i64) -> Result<(), PaymentError>;

    /// Gives a charge for the order back, once per order id.
    async fn refund(&self, order: &OrderId, amount_cents: i64) -> Result<(), PaymentError>;
}

/// Approves every charge and refund at once: the demo's and the tests' provider.
#[derive(Debug, Default)]
pub struct SimulatedProvider;

#[async_trait]
impl PaymentProvider for SimulatedProvider {
    async fn charge(&self, order: &OrderId, amount_cents: i64) -> Result<(), PaymentError> {
        tracing::debug!(%order, amount_cents, "simulated charge");
        Ok(())
    }

    async fn refund(&self, order: &OrderId, amount_cents: i64) -> Result<(), PaymentError> {
        tracing::info!(%order, amount_cents, "simulated refund of a payment that came too late");
        Ok(())
    }
}
