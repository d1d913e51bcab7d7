//! A deadline on every call of an order store: a call the database never answers (a
//! half-open connection, a stalled disk) becomes [`OrderStoreError::TimedOut`], which the
//! handler treats as "unavailable": back off, retry, never hang the partition.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use shared::consumer::Delivery;
use shared::event::TransitionEvent;
use shared::ids::{OrderId, SaleId};

use super::{OrderStore, OrderStoreError, SaleOrders};

pub struct Bounded<S> {
    store: S,
    timeout: Duration,
}

impl<S> Bounded<S> {
    pub fn new(store: S, timeout: Duration) -> Self {
        Self { store, timeout }
    }

    async fn within<T>(
        &self,
        call: impl Future<Output = Result<T, OrderStoreError>>,
    ) -> Result<T, OrderStoreError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(OrderStoreError::TimedOut(self.timeout)))
    }
}

#[async_trait]
impl<S: OrderStore> OrderStore for Bounded<S> {
    /// Not bounded: a migration may legitimately take long; the caller waits for it
    /// alongside its shutdown signal.
    async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        self.store.migrate().await
    }

    async fn insert(&self, batch: &[Delivery]) -> Result<HashSet<OrderId>, OrderStoreError> {
        self.within(self.store.insert(batch)).await
    }

    async fn apply_transitions(
        &self,
        batch: &[TransitionEvent],
    ) -> Result<HashSet<OrderId>, OrderStoreError> {
        self.within(self.store.apply_transitions(batch)).await
    }

    async fn sale_orders(&self, sale_id: &SaleId) -> Result<SaleOrders, OrderStoreError> {
        self.within(self.store.sale_orders(sale_id)).await
    }
}
