//! The order worker's handler: a batch of reservations becomes order rows, then "created".
//!
//! Order matters: the rows are committed in the order store first, and only then is the status set
//! to `created` and the outbox entry removed. A crash in between leaves an outbox entry for an
//! existing order; the redelivered event inserts nothing (ON CONFLICT DO NOTHING) and completes
//! the Redis side. Idempotent on `order_id`, hence on `event_id`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use metrics::counter;
use shared::consumer::{Delivery, Handler, HandlerError};
use shared::ids::{OrderId, SaleId};
use shared::stock::OrderLifecycle;

use crate::store::{OrderStore, OrderStoreError};

/// Orders confirmed (row present, status `created`), redeliveries included.
pub const ORDERS_COMPLETED_TOTAL: &str = "seckill_orders_completed_total";

pub struct OrderHandler {
    store: Arc<dyn OrderStore>,
    ledger: Arc<dyn OrderLifecycle>,
}

impl OrderHandler {
    pub fn new(store: Arc<dyn OrderStore>, ledger: Arc<dyn OrderLifecycle>) -> Self {
        counter!(ORDERS_COMPLETED_TOTAL).absolute(0);
        Self { store, ledger }
    }

    /// Inserts the batch; if the database rejects it, inserts row by row to find the culprits.
    /// Returns the order ids present afterwards and the event ids the database refused.
    async fn insert(
        &self,
        batch: &[Delivery],
    ) -> Result<(HashSet<OrderId>, Vec<uuid::Uuid>), HandlerError> {
        match self.store.insert(batch).await {
            Ok(present) => return Ok((present, Vec::new())),
            Err(error @ (OrderStoreError::Unavailable(_) | OrderStoreError::TimedOut(_))) => {
                return Err(HandlerError::Unavailable(Box::new(error)));
            }
            Err(OrderStoreError::Rejected(error)) => {
                tracing::warn!(%error, "batch rejected; inserting row by row to isolate it");
            }
        }
        let mut present = HashSet::new();
        let mut rejected = Vec::new();
        for delivery in batch {
            match self.store.insert(std::slice::from_ref(delivery)).await {
                Ok(found) => present.extend(found),
                Err(OrderStoreError::Rejected(error)) => {
                    tracing::error!(%error, event_id = %delivery.event.event_id, "order rejected by the database");
                    rejected.push(delivery.event.event_id);
                }
                Err(error @ (OrderStoreError::Unavailable(_) | OrderStoreError::TimedOut(_))) => {
                    return Err(HandlerError::Unavailable(Box::new(error)));
                }
            }
        }
        Ok((present, rejected))
    }
}

impl Handler for OrderHandler {
    type Event = shared::event::ReservationEvent;

    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let (present, mut failed) = self.insert(batch).await?;

        // Group by sale: each sale's keys share one Redis slot, so one script call per sale.
        let mut created: BTreeMap<&SaleId, Vec<&OrderId>> = BTreeMap::new();
        let mut refused: BTreeMap<&SaleId, Vec<&OrderId>> = BTreeMap::new();
        for Delivery { event, .. } in batch {
            let order = &event.order_id;
            if present.contains(order) {
                created.entry(&event.sale_id).or_default().push(order);
            } else {
                // Rejected, or the buyer already has a different order in this sale.
                refused.entry(&event.sale_id).or_default().push(order);
                if !failed.contains(&event.event_id) {
                    failed.push(event.event_id);
                }
            }
        }
        for (sale_id, orders) in &created {
            self.ledger.complete_orders(sale_id, orders).await?;
            counter!(ORDERS_COMPLETED_TOTAL).increment(orders.len() as u64);
        }
        for (sale_id, orders) in &refused {
            self.ledger.fail_orders(sale_id, orders).await?;
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(HandlerError::Permanent {
                event_ids: failed,
                reason: "the order could not be stored (rejected, or the buyer already has another order in this sale)".into(),
            })
        }
    }
}
