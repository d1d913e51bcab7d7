//! The stock ledger in this process's memory, for the all-in-one demo and fast tests.
//!
//! One mutex guards every sale, so each method is atomic exactly as its Redis script is; the
//! lock is never held across an `.await`. The semantics, down to the order of the checks in
//! `reserve`, are `reserve.lua`'s; the conformance suite runs the same assertions against both.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::scored_set::ScoredSet;
use super::{
    DuePayment, DueTransition, OrderLifecycle, OrderStatus, Outbox, OutboxEntry, OutboxSizes,
    Payment, PaymentIntent, Payments, Publication, Purchases, Reservation, Sales, TransitionId,
};
use crate::error::StoreError;
use crate::event::{ReservationEvent, TransitionEvent};
use crate::ids::{OrderId, SaleId, UserId};
use crate::sale::Sale;

#[derive(Default)]
pub struct MemoryStockLedger {
    sales: Mutex<HashMap<SaleId, SaleBook>>,
}

/// One sale's state: the same structures as its keys in Redis.
struct SaleBook {
    sale: Sale,
    stock: u32,
    /// user id → order id
    buyers: HashMap<UserId, OrderId>,
    /// order id → event JSON
    outbox: HashMap<OrderId, String>,
    /// order id → reservation (or deferral) time, unix ms
    unpublished: ScoredSet<OrderId>,
    /// order id → acknowledgement (or deferral) time, unix ms
    acknowledged: ScoredSet<OrderId>,
    status: HashMap<OrderId, OrderStatus>,
    /// order id → pay-by time, unix ms, while the order awaits payment
    deadlines: ScoredSet<OrderId>,
    /// order id → its buyer
    owners: HashMap<OrderId, UserId>,
    /// The transition outbox: event id → event JSON, until the broker acknowledges it
    transitions: HashMap<String, String>,
    /// event id → when it is due for (re)publishing, unix ms
    transitions_due: ScoredSet<String>,
    /// The payment intents: order id → when the resolver may look at it, unix ms
    payments_due: ScoredSet<OrderId>,
    /// Settled: no longer among the active sales.
    settled: bool,
}

impl SaleBook {
    /// The order's status; `processing` until something else is recorded.
    fn status_of(&self, order: &OrderId) -> OrderStatus {
        self.status
            .get(order)
            .copied()
            .unwrap_or(OrderStatus::Processing)
    }

    /// Moves the order to `status` and records the transition's event, as `transition.lua`
    /// does.
    fn transition(&mut self, order: &OrderId, status: OrderStatus, at_ms: i64) {
        self.status.insert(order.clone(), status);
        let Some(owner) = self.owners.get(order) else {
            return; // never locked here: the Redis script would write a broken event
        };
        let event = TransitionEvent::new(order, owner, self.sale.price_cents, status, at_ms);
        self.transitions_due.insert(event.event_id.clone(), at_ms);
        self.transitions
            .insert(event.event_id.clone(), event.to_json());
    }

    /// Ends an order that awaits payment with `outcome`, returning its unit; does nothing to
    /// an order already final. Returns whether it did end it.
    fn end_unpaid(&mut self, order: &OrderId, outcome: OrderStatus) -> bool {
        self.deadlines.remove(order);
        if !matches!(
            self.status_of(order),
            OrderStatus::Processing | OrderStatus::Created
        ) {
            return false;
        }
        self.transition(order, outcome, now_ms());
        self.stock += 1;
        true
    }

    /// Why `user_id` cannot pay the order now, if they cannot: the checks `pay.lua` and
    /// `begin_payment.lua` share.
    fn payment_refused(&self, order_id: &OrderId, user_id: &UserId) -> Option<Payment> {
        if self.buyers.get(user_id) != Some(order_id) {
            return Some(Payment::NotFound);
        }
        match self.status_of(order_id) {
            OrderStatus::Paid => Some(Payment::AlreadyPaid),
            OrderStatus::Expired => Some(Payment::Expired),
            OrderStatus::Failed => Some(Payment::Failed),
            OrderStatus::Processing | OrderStatus::Created => self
                .deadlines
                .score(order_id)
                .is_some_and(|pay_by| now_ms() > pay_by)
                .then_some(Payment::Expired),
        }
    }

    fn stamps(&mut self, publication: Publication) -> &mut ScoredSet<OrderId> {
        match publication {
            Publication::Unacknowledged => &mut self.unpublished,
            Publication::Acknowledged => &mut self.acknowledged,
        }
    }
}

/// This process's clock, the memory ledger's only one.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

impl MemoryStockLedger {
    fn sales(&self) -> MutexGuard<'_, HashMap<SaleId, SaleBook>> {
        self.sales.lock().expect("stock ledger lock poisoned")
    }
}

#[async_trait]
impl Sales for MemoryStockLedger {
    async fn create_sale(&self, sale: &Sale) -> Result<bool, StoreError> {
        let mut sales = self.sales();
        // A settled sale stays in the map (nothing expires here), so its id stays taken, as
        // the marker key keeps it taken in Redis.
        if sales.contains_key(&sale.id) {
            return Ok(false);
        }
        let book = SaleBook {
            sale: sale.clone(),
            stock: sale.stock,
            buyers: HashMap::new(),
            outbox: HashMap::new(),
            unpublished: ScoredSet::default(),
            acknowledged: ScoredSet::default(),
            status: HashMap::new(),
            deadlines: ScoredSet::default(),
            owners: HashMap::new(),
            transitions: HashMap::new(),
            transitions_due: ScoredSet::default(),
            payments_due: ScoredSet::default(),
            settled: false,
        };
        sales.insert(sale.id.clone(), book);
        Ok(true)
    }

    async fn sale(&self, sale_id: &SaleId) -> Result<Option<Sale>, StoreError> {
        Ok(self.sales().get(sale_id).map(|book| book.sale.clone()))
    }

    async fn remaining(&self, sale_id: &SaleId) -> Result<Option<u32>, StoreError> {
        Ok(self.sales().get(sale_id).map(|book| book.stock))
    }

    async fn now_ms(&self, _sale_id: &SaleId) -> Result<i64, StoreError> {
        Ok(now_ms())
    }

    async fn active_sale_ids(&self) -> Result<Vec<SaleId>, StoreError> {
        Ok(self
            .sales()
            .iter()
            .filter(|(_, book)| !book.settled)
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// Retention is Redis's business (key expiry); here a settled sale only leaves the
    /// active sales.
    async fn settle_sale(
        &self,
        sale_id: &SaleId,
        ended: bool,
        _retention: Duration,
    ) -> Result<bool, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(sale_id) else {
            return Ok(false);
        };
        let settled = book.outbox.is_empty()
            && book.deadlines.is_empty()
            && book.transitions.is_empty()
            && book.payments_due.is_empty()
            && (ended || book.stock == 0);
        book.settled |= settled;
        Ok(settled)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Purchases for MemoryStockLedger {
    async fn reserve(
        &self,
        event: &ReservationEvent,
        payload: &str,
    ) -> Result<Reservation, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(&event.sale_id) else {
            return Ok(Reservation::UnknownSale);
        };
        if let Some(existing) = book.buyers.get(&event.user_id) {
            // This very attempt again: its unit is locked already.
            if *existing == event.order_id {
                return Ok(Reservation::Reserved {
                    remaining: book.stock,
                });
            }
            return Ok(Reservation::AlreadyPurchased {
                order_id: existing.clone(),
            });
        }
        if book.stock == 0 {
            return Ok(Reservation::SoldOut);
        }
        book.stock -= 1;
        let order_id = event.order_id.clone();
        book.buyers.insert(event.user_id.clone(), order_id.clone());
        book.outbox.insert(order_id.clone(), payload.to_owned());
        book.unpublished.insert(order_id.clone(), now_ms());
        book.status
            .insert(order_id.clone(), OrderStatus::Processing);
        book.deadlines
            .insert(order_id.clone(), event.pay_by.timestamp_millis());
        book.owners.insert(order_id, event.user_id.clone());
        Ok(Reservation::Reserved {
            remaining: book.stock,
        })
    }

    async fn pay_by(&self, order_id: &OrderId) -> Result<Option<i64>, StoreError> {
        Ok(self
            .sales()
            .get(&order_id.sale_id())
            .and_then(|book| book.deadlines.score(order_id)))
    }

    async fn buyers_order(
        &self,
        sale_id: &SaleId,
        user_id: &UserId,
    ) -> Result<Option<OrderId>, StoreError> {
        Ok(self
            .sales()
            .get(sale_id)
            .and_then(|book| book.buyers.get(user_id).cloned()))
    }

    async fn order_status(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
    ) -> Result<Option<OrderStatus>, StoreError> {
        let sales = self.sales();
        let Some(book) = sales.get(&order_id.sale_id()) else {
            return Ok(None);
        };
        if book.buyers.get(user_id) != Some(order_id) {
            return Ok(None);
        }
        Ok(Some(
            book.status
                .get(order_id)
                .copied()
                .unwrap_or(OrderStatus::Processing),
        ))
    }

    /// One process's memory: nothing outlives it, nothing to wait for.
    async fn confirm_written(&self, _sale_id: &SaleId) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Payments for MemoryStockLedger {
    async fn begin_payment(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
        _amount_cents: i64,
    ) -> Result<PaymentIntent, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(&order_id.sale_id()) else {
            return Ok(PaymentIntent::Refused(Payment::NotFound));
        };
        if let Some(refusal) = book.payment_refused(order_id, user_id) {
            return Ok(PaymentIntent::Refused(refusal));
        }
        book.payments_due.insert(order_id.clone(), now_ms());
        Ok(PaymentIntent::Recorded)
    }

    async fn pay(&self, order_id: &OrderId, user_id: &UserId) -> Result<Payment, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(&order_id.sale_id()) else {
            return Ok(Payment::NotFound);
        };
        if let Some(refusal) = book.payment_refused(order_id, user_id) {
            if refusal == Payment::AlreadyPaid {
                book.payments_due.remove(order_id);
            }
            return Ok(refusal);
        }
        book.deadlines.remove(order_id);
        book.transition(order_id, OrderStatus::Paid, now_ms());
        book.payments_due.remove(order_id);
        Ok(Payment::Paid)
    }

    async fn claim_payments(
        &self,
        sale_id: &SaleId,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<DuePayment>, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(sale_id) else {
            return Ok(Vec::new());
        };
        let due = book.payments_due.up_to(before_ms, limit);
        let now = now_ms();
        Ok(due
            .into_iter()
            .filter_map(|order_id| {
                book.payments_due.insert(order_id.clone(), now);
                Some(DuePayment {
                    user_id: book.owners.get(&order_id)?.clone(),
                    status: book.status_of(&order_id),
                    order_id,
                })
            })
            .collect())
    }

    async fn open_payments(&self, sale_id: &SaleId) -> Result<u64, StoreError> {
        Ok(self
            .sales()
            .get(sale_id)
            .map_or(0, |book| book.payments_due.len() as u64))
    }

    async fn settle_payment(&self, order_id: &OrderId) -> Result<(), StoreError> {
        if let Some(book) = self.sales().get_mut(&order_id.sale_id()) {
            book.payments_due.remove(order_id);
        }
        Ok(())
    }
}

#[async_trait]
impl Outbox for MemoryStockLedger {
    async fn mark_published(&self, orders: &[OrderId]) -> Result<(), StoreError> {
        let mut sales = self.sales();
        for order in orders {
            if let Some(book) = sales.get_mut(&order.sale_id())
                && book.unpublished.remove(order)
            {
                book.acknowledged.insert(order.clone(), now_ms());
            }
        }
        Ok(())
    }

    async fn due_transitions(
        &self,
        sale_id: &SaleId,
        limit: usize,
        redeliver_after: Duration,
    ) -> Result<Vec<DueTransition>, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(sale_id) else {
            return Ok(Vec::new());
        };
        let now = now_ms();
        let due = book.transitions_due.up_to(now, limit);
        let again = now + redeliver_after.as_millis() as i64;
        Ok(due
            .into_iter()
            .filter_map(|event_id| {
                let Some(payload) = book.transitions.get(&event_id).cloned() else {
                    book.transitions_due.remove(&event_id);
                    return None;
                };
                book.transitions_due.insert(event_id.clone(), again);
                Some(DueTransition { event_id, payload })
            })
            .collect())
    }

    async fn discard_transition(&self, sale_id: &SaleId, event_id: &str) -> Result<(), StoreError> {
        if let Some(book) = self.sales().get_mut(sale_id) {
            book.transitions.remove(event_id);
            book.transitions_due.remove(event_id);
        }
        Ok(())
    }

    async fn mark_transitions_published(&self, events: &[TransitionId]) -> Result<(), StoreError> {
        let mut sales = self.sales();
        for event in events {
            if let Some(book) = sales.get_mut(&event.order_id.sale_id()) {
                let event_id = event.event_id();
                book.transitions.remove(&event_id);
                book.transitions_due.remove(&event_id);
            }
        }
        Ok(())
    }

    async fn stale_entries(
        &self,
        sale_id: &SaleId,
        publication: Publication,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(sale_id) else {
            return Ok(Vec::new());
        };
        Ok(book
            .stamps(publication)
            .up_to(before_ms, limit)
            .into_iter()
            .map(|order_id| OutboxEntry {
                payload: book.outbox.get(&order_id).cloned(),
                order_id,
            })
            .collect())
    }

    async fn defer(&self, orders: &[OrderId], at_ms: i64) -> Result<(), StoreError> {
        let mut sales = self.sales();
        for order in orders {
            if let Some(book) = sales.get_mut(&order.sale_id()) {
                for publication in [Publication::Unacknowledged, Publication::Acknowledged] {
                    book.stamps(publication).rescore(order, at_ms);
                }
            }
        }
        Ok(())
    }

    async fn outbox_sizes(&self, sale_id: &SaleId) -> Result<OutboxSizes, StoreError> {
        Ok(self
            .sales()
            .get(sale_id)
            .map_or_else(OutboxSizes::default, |book| OutboxSizes {
                locked: book.outbox.len() as u64,
                unacknowledged: book.unpublished.len() as u64,
            }))
    }

    async fn outbox(&self, sale_id: &SaleId) -> Result<HashMap<OrderId, String>, StoreError> {
        Ok(self
            .sales()
            .get(sale_id)
            .map(|book| book.outbox.clone())
            .unwrap_or_default())
    }

    async fn in_outbox(
        &self,
        sale_id: &SaleId,
        orders: &[&OrderId],
    ) -> Result<HashSet<OrderId>, StoreError> {
        let sales = self.sales();
        let Some(book) = sales.get(sale_id) else {
            return Ok(HashSet::new());
        };
        Ok(orders
            .iter()
            .filter(|order| book.outbox.contains_key(**order))
            .map(|order| (*order).clone())
            .collect())
    }
}

#[async_trait]
impl OrderLifecycle for MemoryStockLedger {
    async fn complete_orders(
        &self,
        sale_id: &SaleId,
        orders: &[&OrderId],
    ) -> Result<u64, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(sale_id) else {
            return Ok(0);
        };
        let mut removed = 0;
        for order in orders {
            removed += u64::from(book.outbox.remove(*order).is_some());
            book.unpublished.remove(*order);
            book.acknowledged.remove(*order);
            if book.status.get(*order) == Some(&OrderStatus::Processing) {
                book.transition(order, OrderStatus::Created, now_ms());
            }
        }
        Ok(removed)
    }

    async fn fail_orders(&self, sale_id: &SaleId, orders: &[&OrderId]) -> Result<(), StoreError> {
        let mut sales = self.sales();
        if let Some(book) = sales.get_mut(sale_id) {
            for order in orders {
                let locked = book.outbox.remove(*order).is_some();
                match book.status.get(*order) {
                    Some(OrderStatus::Processing) if locked => {
                        book.end_unpaid(order, OrderStatus::Failed);
                    }
                    // Paid while processing: its charge is refunded by the payment resolver.
                    Some(OrderStatus::Paid) if locked => {
                        book.transition(order, OrderStatus::Failed, now_ms());
                        book.stock += 1;
                        book.payments_due.insert((*order).clone(), 0);
                    }
                    _ => {}
                }
                book.deadlines.remove(*order);
                book.unpublished.remove(*order);
                book.acknowledged.remove(*order);
            }
        }
        Ok(())
    }

    async fn expire_due(&self, sale_id: &SaleId, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        let mut sales = self.sales();
        let Some(book) = sales.get_mut(sale_id) else {
            return Ok(Vec::new());
        };
        Ok(book
            .deadlines
            .up_to(now_ms(), limit)
            .into_iter()
            .filter(|order| book.end_unpaid(order, OrderStatus::Expired))
            .collect())
    }
}
