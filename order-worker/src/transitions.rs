//! The order worker's second handler: transitions from the order-event topic onto the rows.
//!
//! A row is inserted as `created` by the reservation handler; a `paid` or `expired` (or
//! `failed`) event moves it forward, never back (see [`OrderStore::apply_transitions`]).
//!
//! The two topics are consumed by two loops, so a transition can arrive before its order's
//! row: paid while still processing, with the reservation behind in its own partition. Such a
//! batch is retried (as an outage: no attempt budget) until the row exists, which it will while
//! the order is still in the outbox. An order that left the outbox without a row had it
//! refused: nothing to apply (its `failed` event is the one that counts).

use std::collections::BTreeSet;
use std::sync::Arc;

use metrics::counter;
use shared::consumer::{Delivery, Handler, HandlerError};
use shared::event::TransitionEvent;
use shared::ids::{OrderId, SaleId};
use shared::stock::{OrderStatus, Outbox};

use crate::store::OrderStore;

/// Transition events applied to the order table (redeliveries and no-ops included).
pub const TRANSITIONS_APPLIED_TOTAL: &str = "seckill_order_transitions_applied_total";

pub struct TransitionHandler {
    store: Arc<dyn OrderStore>,
    ledger: Arc<dyn Outbox>,
}

impl TransitionHandler {
    pub fn new(store: Arc<dyn OrderStore>, ledger: Arc<dyn Outbox>) -> Self {
        counter!(TRANSITIONS_APPLIED_TOTAL).absolute(0);
        Self { store, ledger }
    }

    async fn apply(
        &self,
        events: &[TransitionEvent],
    ) -> Result<Vec<TransitionEvent>, HandlerError> {
        // Every failure is worth waiting out here: a transition's data is the ledger's, never
        // refused by the table's checks.
        let present = self
            .store
            .apply_transitions(events)
            .await
            .map_err(|error| HandlerError::Unavailable(Box::new(error)))?;
        Ok(events
            .iter()
            .filter(|event| {
                event.status != OrderStatus::Failed && !present.contains(&event.order_id)
            })
            .cloned()
            .collect())
    }
}

impl Handler for TransitionHandler {
    type Event = TransitionEvent;

    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn handle(&self, batch: &[Delivery<TransitionEvent>]) -> Result<(), HandlerError> {
        let events: Vec<TransitionEvent> = batch.iter().map(|d| d.event.clone()).collect();
        let rowless = self.apply(&events).await?;
        if !rowless.is_empty() {
            let sales: BTreeSet<&SaleId> = rowless.iter().map(|event| &event.sale_id).collect();
            for sale_id in sales {
                let orders: Vec<&OrderId> = rowless
                    .iter()
                    .filter(|event| &event.sale_id == sale_id)
                    .map(|event| &event.order_id)
                    .collect();
                // Asks about these orders only: the outbox may hold a whole peak's backlog.
                if let Some(order_id) = self.ledger.in_outbox(sale_id, &orders).await?.iter().next()
                {
                    return Err(HandlerError::Unavailable(
                        format!(
                            "order {order_id} has no row yet (its reservation is still on its way)"
                        )
                        .into(),
                    ));
                }
            }
            // Out of the outbox: its row was stored meanwhile (apply again), or refused.
            for event in self.apply(&rowless).await? {
                tracing::warn!(order_id = %event.order_id, status = event.status.as_str(),
                    "transition of an order whose row was refused; nothing to apply");
            }
        }
        counter!(TRANSITIONS_APPLIED_TOTAL).increment(batch.len() as u64);
        Ok(())
    }
}
