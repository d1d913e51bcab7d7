//! Orders in PostgreSQL: one `INSERT … SELECT FROM UNNEST` per batch of reservations, one
//! statement (`UPDATE … FROM UNNEST` and the rows it could see) per batch of transitions,
//! whatever their size.

use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use shared::consumer::Delivery;
use shared::event::TransitionEvent;
use shared::ids::{OrderId, SaleId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    DatabaseSettings, OrderStore, OrderStoreError, SALE_ORDERS_COLUMNS, SaleOrders, SaleOrdersRow,
    final_transitions,
};

#[derive(Clone)]
pub struct PostgresOrderStore {
    pool: PgPool,
}

impl PostgresOrderStore {
    /// Connects lazily (the worker starts while PostgreSQL is down, and retries). Every
    /// statement runs under `statement_timeout`, so the server itself ends one that outlives
    /// the deadline (a lock wait included) and releases what it held.
    pub fn connect_lazily(
        database_url: &str,
        settings: DatabaseSettings,
    ) -> Result<Self, sqlx::Error> {
        let timeout_ms = settings.timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(database_url)?
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.get())
            .acquire_timeout(settings.timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }
}

#[async_trait]
impl OrderStore for PostgresOrderStore {
    async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
    }

    async fn insert(&self, batch: &[Delivery]) -> Result<HashSet<OrderId>, OrderStoreError> {
        let mut order_ids = Vec::with_capacity(batch.len());
        let mut event_ids = Vec::with_capacity(batch.len());
        let mut sale_ids = Vec::with_capacity(batch.len());
        let mut user_ids = Vec::with_capacity(batch.len());
        let mut prices = Vec::with_capacity(batch.len());
        let mut quantities = Vec::with_capacity(batch.len());
        let mut reserved = Vec::with_capacity(batch.len());
        for Delivery { event, .. } in batch {
            order_ids.push(event.order_id.to_string());
            event_ids.push(event.event_id);
            sale_ids.push(event.sale_id.to_string());
            user_ids.push(event.user_id.to_string());
            prices.push(event.price_cents);
            // Decoding guarantees quantity 1 in version 1 events.
            quantities.push(i32::try_from(event.quantity).unwrap_or(i32::MAX));
            reserved.push(event.reserved_at);
        }
        sqlx::query(
            "INSERT INTO orders (order_id, event_id, sale_id, user_id, price_cents, quantity, reserved_at)
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::int[], $7::timestamptz[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&order_ids)
        .bind(&event_ids)
        .bind(&sale_ids)
        .bind(&user_ids)
        .bind(&prices)
        .bind(&quantities)
        .bind(&reserved)
        .execute(&self.pool)
        .await?;
        let present: Vec<String> =
            sqlx::query_scalar("SELECT order_id FROM orders WHERE order_id = ANY($1)")
                .bind(&order_ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(present.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// One statement for the whole batch: the UPDATE from UNNEST and the SELECT of the rows
    /// present share its snapshot. Two statements would not: a row committed between them (its
    /// reservation stored by another worker that very moment) would count as present though
    /// the UPDATE never saw it, and its transition would be acknowledged unapplied.
    async fn apply_transitions(
        &self,
        batch: &[TransitionEvent],
    ) -> Result<HashSet<OrderId>, OrderStoreError> {
        let mut order_ids = Vec::with_capacity(batch.len());
        let mut statuses = Vec::with_capacity(batch.len());
        let mut times = Vec::with_capacity(batch.len());
        for event in final_transitions(batch) {
            order_ids.push(event.order_id.to_string());
            statuses.push(event.status.as_str());
            times.push(event.at);
        }
        let all_ids: Vec<String> = batch.iter().map(|e| e.order_id.to_string()).collect();
        // A data-modifying WITH runs to completion whether or not the query reads it.
        let present: Vec<String> = sqlx::query_scalar(
            "WITH applied AS (
                 UPDATE orders SET status = t.status,
                     paid_at = CASE WHEN t.status = 'paid' THEN t.at ELSE orders.paid_at END,
                     expired_at = CASE WHEN t.status = 'expired' THEN t.at ELSE orders.expired_at END
                 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS t(order_id, status, at)
                 WHERE orders.order_id = t.order_id AND orders.status = 'created'
                 RETURNING orders.order_id
             )
             SELECT order_id FROM orders WHERE order_id = ANY($4)",
        )
        .bind(&order_ids)
        .bind(&statuses)
        .bind(&times)
        .bind(&all_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(present.iter().filter_map(|id| id.parse().ok()).collect())
    }

    async fn sale_orders(&self, sale_id: &SaleId) -> Result<SaleOrders, OrderStoreError> {
        let row: SaleOrdersRow = sqlx::query_as(&format!(
            "SELECT {SALE_ORDERS_COLUMNS} FROM orders WHERE sale_id = $1"
        ))
        .bind(sale_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }
}
