//! The simulated payment provider: approves every charge, keeps books like a real one, and
//! lets anyone read them afterwards.
//!
//! Its books are a [`Journal`] (one JSON line per call that moved money, or repeated a move),
//! so every gateway and order worker sharing the file sees one provider, across restarts,
//! and the load test reads the same record ([`PaymentRecord`]) to check that every charge
//! ended paid or refunded. The lines:
//!
//! ```text
//! {"order_id":"<order id>","op":"charge","amount_cents":1250}
//! {"order_id":"<order id>","op":"refund","amount_cents":1250}
//! {"order_id":"<order id>","op":"charge","amount_cents":1250,"repeat":true}
//! {"order_id":"<order id>","op":"void","amount_cents":0}
//! ```
//!
//! A repeat is a call whose idempotency key (the order id) the provider knew: answered as the
//! first was, moving nothing. The books are kept in memory for the life of the process, as
//! many orders as the file has: fine for a stand-in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Charge, PaymentError, PaymentProvider};
use crate::ids::OrderId;
use crate::journal::{Journal, Replay};

/// Approves every charge, honouring the order id as idempotency key, and records it.
pub struct SimulatedProvider {
    books: Arc<Mutex<Journal<PaymentRecord>>>,
    /// How long a charge's answer takes after the charge is booked.
    latency: Duration,
}

impl SimulatedProvider {
    /// The provider whose books are the file at `path` (created at the first call), answering
    /// each charge `latency` after booking it.
    pub fn new(path: PathBuf, latency: Duration) -> Self {
        Self {
            books: Arc::new(Mutex::new(Journal::new(path))),
            latency,
        }
    }

    /// Runs `call` on the books, off the async threads (the file lock blocks).
    async fn with_books<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut Journal<PaymentRecord>) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, PaymentError> {
        let books = Arc::clone(&self.books);
        tokio::task::spawn_blocking(move || {
            let mut journal = books.lock().expect("payment books lock poisoned");
            call(&mut journal)
                .map_err(|e| PaymentError(format!("{}: {e}", journal.path().display())))
        })
        .await
        .map_err(|e| PaymentError(e.to_string()))?
    }
}

#[async_trait]
impl PaymentProvider for SimulatedProvider {
    async fn charge(&self, order: &OrderId, amount_cents: i64) -> Result<(), PaymentError> {
        let order = order.clone();
        let accepted = self
            .with_books(move |journal| {
                journal.append(|record| {
                    if record.voided(&order) && record.charge_of(&order) == Charge::None {
                        return (None, false);
                    }
                    let repeat = record.charge_of(&order) != Charge::None;
                    let line = Line::encoded(&order, Op::Charge, amount_cents, repeat);
                    (Some(line), true)
                })
            })
            .await?;
        if !accepted {
            return Err(PaymentError("the order's payment was voided".into()));
        }
        tokio::time::sleep(self.latency).await;
        Ok(())
    }

    async fn refund(&self, order: &OrderId) -> Result<(), PaymentError> {
        let order = order.clone();
        let refunded = self
            .with_books(move |journal| {
                journal.append(|record| match record.charge_of(&order) {
                    Charge::None => (None, false),
                    Charge::Kept { amount_cents } => (
                        Some(Line::encoded(&order, Op::Refund, amount_cents, false)),
                        true,
                    ),
                    Charge::Refunded => {
                        let amount_cents = record.accounts[&order].charged_cents;
                        (
                            Some(Line::encoded(&order, Op::Refund, amount_cents, true)),
                            true,
                        )
                    }
                })
            })
            .await?;
        if refunded {
            Ok(())
        } else {
            Err(PaymentError("nothing was charged for this order".into()))
        }
    }

    async fn charge_of(&self, order: &OrderId) -> Result<Charge, PaymentError> {
        let order = order.clone();
        self.with_books(move |journal| journal.append(|record| (None, record.charge_of(&order))))
            .await
    }

    async fn void(&self, order: &OrderId) -> Result<Charge, PaymentError> {
        let order = order.clone();
        self.with_books(move |journal| {
            journal.append(|record| {
                let line =
                    (!record.voided(&order)).then(|| Line::encoded(&order, Op::Void, 0, false));
                (line, record.charge_of(&order))
            })
        })
        .await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Charge,
    Refund,
    /// The order's key closed: later charges are refused.
    Void,
}

/// One line of the books.
#[derive(Serialize, Deserialize)]
struct Line {
    order_id: OrderId,
    op: Op,
    amount_cents: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    repeat: bool,
}

impl Line {
    fn encoded(order: &OrderId, op: Op, amount_cents: i64, repeat: bool) -> Vec<u8> {
        let line = Self {
            order_id: order.clone(),
            op,
            amount_cents,
            repeat,
        };
        serde_json::to_vec(&line).expect("a line always serialises")
    }
}

/// One order's money, as the provider's books tell it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Charges that moved money (a correct provider makes at most one).
    pub charges: u32,
    /// Refunds that moved money (at most one, and never more than the charges).
    pub refunds: u32,
    /// What was charged.
    pub charged_cents: i64,
    /// Calls answered as repeats of an earlier one.
    pub repeats: u32,
    /// The key was closed: no charge is taken any more.
    pub voided: bool,
}

impl Account {
    /// Whether the provider keeps this order's money.
    pub fn kept(&self) -> bool {
        self.charges > self.refunds
    }
}

/// The provider's books: every order's charges and refunds.
#[derive(Debug, Default)]
pub struct PaymentRecord {
    accounts: HashMap<OrderId, Account>,
}

impl PaymentRecord {
    /// The books in the file at `path` (empty if it does not exist yet).
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Journal::read(path)
    }

    /// Every order the provider has seen, with its account.
    pub fn accounts(&self) -> impl Iterator<Item = (&OrderId, &Account)> {
        self.accounts.iter()
    }

    fn voided(&self, order: &OrderId) -> bool {
        self.accounts
            .get(order)
            .is_some_and(|account| account.voided)
    }

    fn charge_of(&self, order: &OrderId) -> Charge {
        match self.accounts.get(order) {
            Some(account) if account.kept() => Charge::Kept {
                amount_cents: account.charged_cents,
            },
            Some(account) if account.refunds > 0 => Charge::Refunded,
            // Never seen, or only voided.
            _ => Charge::None,
        }
    }
}

impl Replay for PaymentRecord {
    fn replay(&mut self, line: &[u8]) {
        let Ok(line) = serde_json::from_slice::<Line>(line) else {
            return;
        };
        let account = self.accounts.entry(line.order_id).or_default();
        match (line.op, line.repeat) {
            (_, true) => account.repeats += 1,
            (Op::Charge, false) => {
                account.charges += 1;
                account.charged_cents = line.amount_cents;
            }
            (Op::Refund, false) => account.refunds += 1,
            (Op::Void, false) => account.voided = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SaleId;

    fn temp_file() -> PathBuf {
        std::env::temp_dir().join(format!("payments-{}.jsonl", uuid::Uuid::new_v4()))
    }

    fn order() -> OrderId {
        OrderId::generate(&"s1".parse::<SaleId>().unwrap())
    }

    #[tokio::test]
    async fn a_charge_is_made_once_per_order_however_often_asked_by_whichever_process() {
        let path = temp_file();
        let (gateway, other_gateway) = (
            SimulatedProvider::new(path.clone(), Duration::ZERO),
            SimulatedProvider::new(path.clone(), Duration::ZERO),
        );
        let order = order();
        gateway.charge(&order, 1250).await.unwrap();
        other_gateway.charge(&order, 1250).await.unwrap();

        assert_eq!(
            other_gateway.charge_of(&order).await.unwrap(),
            Charge::Kept { amount_cents: 1250 }
        );
        let record = PaymentRecord::read(&path).unwrap();
        let account = record.accounts().find(|(id, _)| **id == order).unwrap().1;
        assert_eq!((account.charges, account.repeats), (1, 1));
        assert!(account.kept());
        std::fs::remove_file(path).unwrap();
    }

    #[tokio::test]
    async fn a_charge_that_arrives_after_its_orders_key_was_voided_is_refused() {
        let path = temp_file();
        let provider = SimulatedProvider::new(path.clone(), Duration::ZERO);
        let (late, charged) = (order(), order());
        provider.charge(&charged, 500).await.unwrap();
        assert_eq!(provider.void(&late).await.unwrap(), Charge::None);
        assert_eq!(
            provider.void(&charged).await.unwrap(),
            Charge::Kept { amount_cents: 500 },
            "a void reports a charge already taken, for the caller to refund"
        );

        assert!(provider.charge(&late, 500).await.is_err());
        assert_eq!(provider.charge_of(&late).await.unwrap(), Charge::None);
        std::fs::remove_file(path).unwrap();
    }

    #[tokio::test]
    async fn a_refund_gives_a_charge_back_once_and_never_without_a_charge() {
        let path = temp_file();
        let provider = SimulatedProvider::new(path.clone(), Duration::ZERO);
        let (charged, never_charged) = (order(), order());
        provider.charge(&charged, 990).await.unwrap();
        provider.refund(&charged).await.unwrap();
        provider.refund(&charged).await.unwrap();
        assert!(provider.refund(&never_charged).await.is_err());

        assert_eq!(
            provider.charge_of(&charged).await.unwrap(),
            Charge::Refunded
        );
        assert_eq!(
            provider.charge_of(&never_charged).await.unwrap(),
            Charge::None
        );
        let record = PaymentRecord::read(&path).unwrap();
        let account = record.accounts().find(|(id, _)| **id == charged).unwrap().1;
        assert_eq!(
            (account.charges, account.refunds, account.repeats),
            (1, 1, 1)
        );
        assert!(!account.kept());
        assert_eq!(
            record.accounts().count(),
            1,
            "the refused refund left no line"
        );
        std::fs::remove_file(path).unwrap();
    }
}
