//! Orders in SQLite, for the embedded run: a file under the data directory, so orders survive
//! a restart. One transaction per batch, inserted in chunks that stay under SQLite's limit of
//! bound parameters; WAL mode lets the load test read while the worker writes.

use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use shared::consumer::Delivery;
use shared::ids::{OrderId, SaleId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite};

use super::{DatabaseSettings, OrderStore, OrderStoreError, SaleOrders, SaleOrdersRow};

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

            let mut select =
                QueryBuilder::<Sqlite>::new("SELECT order_id FROM orders WHERE order_id IN (");
            let mut ids = select.separated(", ");
            for Delivery { event, .. } in chunk {
                ids.push_bind(event.order_id.to_string());
            }
            select.push(")");
            let found: Vec<String> = select
                .build_query_scalar()
                .fetch_all(&mut *transaction)
                .await?;
            present.extend(found.iter().filter_map(|id| id.parse::<OrderId>().ok()));
        }
        transaction.commit().await?;
        Ok(present)
    }

    async fn sale_orders(&self, sale_id: &SaleId) -> Result<SaleOrders, OrderStoreError> {
        let row: SaleOrdersRow = sqlx::query_as(
            "SELECT count(*), count(DISTINCT user_id), sum(price_cents * quantity)
             FROM orders WHERE sale_id = ?",
        )
        .bind(sale_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }
}
