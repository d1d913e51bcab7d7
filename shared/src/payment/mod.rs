//! Where money moves: the payment provider, behind a trait of four calls.
//!
//! The order's state machine lives in the stock ledger; the provider only charges, refunds,
//! and says what it holds for an order. Every call carries the order id as its idempotency
//! key, so a repeated charge charges once and a repeated refund refunds once. The gateway
//! charges (after recording the payment intent in the ledger); the reconciler's payment
//! resolver refunds what did not become a sale, voids the key of an order that ended
//! uncharged, and asks the provider where the gateway could not tell (`docs/architecture.md`, "Money"). Both are handed the provider by their
//! `build_on`; [`simulated`] is the one the demo, the compose stack and every test use, and
//! its record is what the load test checks invariant 8 against.

pub mod simulated;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;

pub use self::simulated::{PaymentRecord, SimulatedProvider};
use crate::ids::OrderId;

/// The provider could not be reached, or refused; what it holds is unknown until asked.
#[derive(Debug, thiserror::Error)]
#[error("the payment provider failed: {0}")]
pub struct PaymentError(pub String);

/// What the provider holds for one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Never charged.
    None,
    /// Charged `amount_cents`, not refunded.
    Kept { amount_cents: i64 },
    /// Charged, then refunded.
    Refunded,
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Charges `amount_cents` for the order, once per order id however often it is called.
    async fn charge(&self, order: &OrderId, amount_cents: i64) -> Result<(), PaymentError>;

    /// Gives the order's charge back, once per order id. Refusing an order never charged is
    /// the provider's right: a refund without a charge is an error, not a no-op.
    async fn refund(&self, order: &OrderId) -> Result<(), PaymentError>;

    /// What the provider holds for the order: asked when a charge's outcome is unknown.
    async fn charge_of(&self, order: &OrderId) -> Result<Charge, PaymentError>;

    /// Closes the order's key for good: a charge that reaches the provider afterwards is
    /// refused, so one still on its way when its order ended can never land unseen. Returns
    /// what the provider holds for the order at that moment. Idempotent.
    async fn void(&self, order: &OrderId) -> Result<Charge, PaymentError>;
}

/// Where the simulated provider keeps its record, and how slowly it answers.
#[derive(Args, Clone, Debug)]
pub struct PaymentArgs {
    /// The simulated payment provider's record (JSON lines): every gateway and order worker of
    /// a deployment must name the same file, which stands in for the provider's own books.
    #[arg(long, env = "PAYMENTS_FILE", default_value = "payments.jsonl")]
    pub payments_file: PathBuf,

    /// How long the simulated provider takes to answer a charge it made, as a real one takes
    /// a few hundred milliseconds (the chaos run's window for a fault between charge and sale).
    #[arg(long, env = "PAYMENTS_SIMULATED_LATENCY_MS", default_value_t = 0)]
    pub payments_simulated_latency_ms: u64,
}

impl PaymentArgs {
    /// The provider these arguments name.
    pub fn provider(&self) -> Arc<dyn PaymentProvider> {
        Arc::new(SimulatedProvider::new(
            self.payments_file.clone(),
            Duration::from_millis(self.payments_simulated_latency_ms),
        ))
    }
}
