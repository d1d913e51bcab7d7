//! Orders in PostgreSQL: the schema (sqlx migrations, run at start-up) and the batched,
//! idempotent insert.

use std::collections::HashSet;
use std::time::Duration;

use shared::consumer::Delivery;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// Why the store could not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused these rows' data; retrying cannot help.
    #[error("rejected by the database: {0}")]
    Rejected(sqlx::Error),
    /// The database is unreachable, slow or restarting; retrying can.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        // SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation) are
        // about the rows themselves; anything else is about the database's state.
        let about_the_rows = error
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23"));
        if about_the_rows {
            Self::Rejected(error)
        } else {
            Self::Unavailable(error)
        }
    }
}

#[derive(Clone)]
pub struct OrderStore {
    pool: PgPool,
}

impl OrderStore {
    /// Connects lazily (the worker starts while PostgreSQL is down, and retries).
    pub fn connect_lazily(database_url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(database_url)?;
        Ok(Self { pool })
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("./migrations").run(&self.pool).await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Inserts the batch in one statement, skipping rows that exist, and returns which of the
    /// batch's order ids are now in the table (new or from an earlier delivery).
    pub async fn insert(&self, batch: &[Delivery]) -> Result<HashSet<String>, StoreError> {
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
            sale_ids.push(event.sale_id.clone());
            user_ids.push(event.user_id.clone());
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
        Ok(present.into_iter().collect())
    }
}
