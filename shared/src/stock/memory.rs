//! The stock ledger in this process's memory, for the all-in-one demo and fast tests.
//!
//! One mutex guards every sale, so each method is atomic exactly as its Redis script is; the
//! lock is never held across an `.await`. The semantics, down to the order of the checks in
//! `reserve`, are `reserve.lua`'s; the conformance suite runs the same assertions against both.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{OrderStatus, OutboxSizes, Reservation, StockLedger, Unpublished};
use crate::error::StoreError;
use crate::event::ReservationEvent;
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
    unpublished: HashMap<OrderId, i64>,
    status: HashMap<OrderId, OrderStatus>,
}

impl MemoryStockLedger {
    fn sales(&self) -> MutexGuard<'_, HashMap<SaleId, SaleBook>> {
        self.sales.lock().expect("stock ledger lock poisoned")
    }
}

#[async_trait]
impl StockLedger for MemoryStockLedger {
    async fn create_sale(&self, sale: &Sale) -> Result<bool, StoreError> {
        let mut sales = self.sales();
        if sales.contains_key(&sale.id) {
            return Ok(false);
        }
        let book = SaleBook {
            sale: sale.clone(),
            stock: sale.stock,
            buyers: HashMap::new(),
            outbox: HashMap::new(),
            unpublished: HashMap::new(),
            status: HashMap::new(),
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
        book.unpublished
            .insert(order_id.clone(), event.reserved_at.timestamp_millis());
        book.status.insert(order_id, OrderStatus::Processing);
        Ok(Reservation::Reserved {
            remaining: book.stock,
        })
    }

    async fn mark_published(&self, orders: &[OrderId]) -> Result<(), StoreError> {
        let mut sales = self.sales();
        for order in orders {
            if let Some(book) = sales.get_mut(&order.sale_id()) {
                book.unpublished.remove(order);
            }
        }
        Ok(())
    }

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
            book.status.insert((*order).clone(), OrderStatus::Created);
        }
        Ok(removed)
    }

    async fn fail_orders(&self, sale_id: &SaleId, orders: &[&OrderId]) -> Result<(), StoreError> {
        let mut sales = self.sales();
        if let Some(book) = sales.get_mut(sale_id) {
            for order in orders {
                book.status.insert((*order).clone(), OrderStatus::Failed);
                book.unpublished.remove(*order);
            }
        }
        Ok(())
    }

    async fn sale_ids(&self) -> Result<Vec<SaleId>, StoreError> {
        Ok(self.sales().keys().cloned().collect())
    }

    async fn stale_unpublished(
        &self,
        sale_id: &SaleId,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Unpublished>, StoreError> {
        let sales = self.sales();
        let Some(book) = sales.get(sale_id) else {
            return Ok(Vec::new());
        };
        // Sorted like a Redis sorted set: by score, then by member.
        let mut stale: Vec<(i64, &OrderId)> = book
            .unpublished
            .iter()
            .filter(|&(_, &at)| at <= before_ms)
            .map(|(order, &at)| (at, order))
            .collect();
        stale.sort_unstable();
        Ok(stale
            .into_iter()
            .take(limit)
            .map(|(_, order_id)| Unpublished {
                order_id: order_id.clone(),
                payload: book.outbox.get(order_id).cloned(),
            })
            .collect())
    }

    async fn defer_unpublished(&self, orders: &[OrderId], at_ms: i64) -> Result<(), StoreError> {
        let mut sales = self.sales();
        for order in orders {
            let marked = sales
                .get_mut(&order.sale_id())
                .and_then(|book| book.unpublished.get_mut(order));
            if let Some(at) = marked {
                *at = at_ms;
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

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
