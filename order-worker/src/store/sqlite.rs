//! Orders in SQLite, for the embedded run: a file under the data directory, so orders survive
//! a restart. One transaction per batch, inserted in chunks that stay under SQLite's limit of
//! bound parameters; WAL mode lets the load test read while the worker writes.

use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use shared::consumer::Delivery;
use shared::event::TransitionEvent;
use shared::ids::{OrderId, SaleId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{
    DatabaseSettings, OrderStore, OrderStoreError, SALE_ORDERS_COLUMNS, SaleOrders, SaleOrdersRow,
    final_transitions,
};

/// Rows per INSERT: 7 parameters each, far below SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 1000;

#[derive(Clone)]
pub struct SqliteOrderStore {
    pool: SqlitePool,
}

impl SqliteOrderStore {
    /// Opens `sqlite:<path>` lazily, creating the file on first use.
    pub fn connect_lazily(
        database_url: &str,
        settings: DatabaseSettings,
    ) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(settings.timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.get())
            .acquire_timeout(settings.timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }
}

#[async_trait]
impl OrderStore for SqliteOrderStore {
    async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("./migrations/sqlite").run(&self.pool).await
    }

    async fn insert(&self, batch: &[Delivery]) -> Result<HashSet<OrderId>, OrderStoreError> {
        let mut transaction = self.pool.begin().await?;
        let mut present = HashSet::with_capacity(batch.len());
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO orders (order_id, event_id, sale_id, user_id, price_cents, quantity, reserved_at) ",
            );
            insert.push_values(chunk, |mut row, Delivery { event, .. }| {
                row.push_bind(event.order_id.to_string())
                    .push_bind(event.event_id.to_string())
                    .push_bind(event.sale_id.to_string())
                    .push_bind(event.user_id.to_string())
                    .push_bind(event.price_cents)
                    .push_bind(i64::from(event.quantity))
                    .push_bind(event.reserved_at);
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert.build().execute(&mut *transaction).await?;
            let ids = chunk
                .iter()
                .map(|delivery| delivery.event.order_id.to_string());
            present.extend(present_ids(&mut transaction, ids).await?);
        }
        transaction.commit().await?;
        Ok(present)
    }

    /// One UPDATE per final transition, then one SELECT per chunk, in one transaction.
    async fn apply_transitions(
        &self,
        batch: &[TransitionEvent],
    ) -> Result<HashSet<OrderId>, OrderStoreError> {
        let mut transaction = self.pool.begin().await?;
        for event in final_transitions(batch) {
            sqlx::query(
                "UPDATE orders SET status = ?1,
                     paid_at = CASE WHEN ?1 = 'paid' THEN ?2 ELSE paid_at END,
                     expired_at = CASE WHEN ?1 = 'expired' THEN ?2 ELSE expired_at END
                 WHERE order_id = ?3 AND status = 'created'",
            )
            .bind(event.status.as_str())
            .bind(event.at)
            .bind(event.order_id.as_str())
            .execute(&mut *transaction)
            .await?;
        }
        let mut present = HashSet::with_capacity(batch.len());
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let ids = chunk.iter().map(|event| event.order_id.to_string());
            present.extend(present_ids(&mut transaction, ids).await?);
        }
        transaction.commit().await?;
        Ok(present)
    }

    async fn sale_orders(&self, sale_id: &SaleId) -> Result<SaleOrders, OrderStoreError> {
        let row: SaleOrdersRow = sqlx::query_as(&format!(
            "SELECT {SALE_ORDERS_COLUMNS} FROM orders WHERE sale_id = ?"
        ))
        .bind(sale_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }
}

/// Which of `ids` (at most [`ROWS_PER_STATEMENT`]) have a row.
async fn present_ids(
    connection: &mut SqliteConnection,
    ids: impl Iterator<Item = String>,
) -> Result<Vec<OrderId>, sqlx::Error> {
    let mut select = QueryBuilder::<Sqlite>::new("SELECT order_id FROM orders WHERE order_id IN (");
    let mut separated = select.separated(", ");
    for id in ids {
        separated.push_bind(id);
    }
    select.push(")");
    let found: Vec<String> = select.build_query_scalar().fetch_all(connection).await?;
    Ok(found.iter().filter_map(|id| id.parse().ok()).collect())
}
