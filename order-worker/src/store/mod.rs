//! The order table, behind [`OrderStore`]: PostgreSQL in production, SQLite for the embedded
//! run, chosen by the scheme of `DATABASE_URL`. Both have the same schema and constraints
//! (`migrations/postgres`, `migrations/sqlite`), and one conformance suite
//! (`tests/conformance`) holds both to the same assertions.
//!
//! Every call has a deadline ([`DatabaseSettings::timeout`]): PostgreSQL cancels a statement
//! that outlives it (`statement_timeout`, which also ends a lock wait), and [`bounded`] gives
//! up on a call the database never answers (a half-open connection), so a worker's partition
//! never hangs and SIGTERM is never blocked.

mod bounded;
mod postgres;
mod sqlite;

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shared::consumer::Delivery;
use shared::event::TransitionEvent;
use shared::ids::{OrderId, SaleId};
use shared::stock::OrderStatus;

pub use self::postgres::PostgresOrderStore;
pub use self::sqlite::SqliteOrderStore;

/// Why the order store could not take a batch. (Named apart from `shared::error::StoreError`,
/// the key-value stores' error, because it tells two outcomes apart that one cannot.)
#[derive(Debug, thiserror::Error)]
pub enum OrderStoreError {
    /// The database refused these rows' data; retrying cannot help.
    #[error("rejected by the database: {0}")]
    Rejected(#[source] sqlx::Error),
    /// The database is unreachable, slow or restarting; retrying can.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database gave no answer within the deadline; retrying can.
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
}

impl From<sqlx::Error> for OrderStoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        let Some(database_error) = error.as_database_error() else {
            return Self::Unavailable(error);
        };
        // A violated constraint, or in PostgreSQL any SQLSTATE of class 22 (data exception) or
        // 23 (integrity), is about the rows themselves; anything else is about the database's
        // state. (SQLite's numeric codes are another scheme: there only the kinds count.)
        let postgres_row_error = database_error
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|error| matches!(error.code().get(..2), Some("22" | "23")));
        let about_the_rows =
            !matches!(database_error.kind(), ErrorKind::Other) || postgres_row_error;
        if about_the_rows {
            Self::Rejected(error)
        } else {
            Self::Unavailable(error)
        }
    }
}

/// One sale's orders, as the load test's invariant checks read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaleOrders {
    pub rows: u64,
    pub distinct_buyers: u64,
    pub revenue_cents: i64,
    /// Rows whose status is `paid`, and their sum.
    pub paid: u64,
    pub paid_revenue_cents: i64,
    /// Rows whose status is `expired`.
    pub expired: u64,
}

/// The SELECT of [`SaleOrders`], the same in both databases (sums are NULL without rows).
const SALE_ORDERS_COLUMNS: &str = "count(*), count(DISTINCT user_id), \
     CAST(sum(price_cents * quantity) AS BIGINT), \
     count(*) FILTER (WHERE status = 'paid'), \
     CAST(sum(price_cents * quantity) FILTER (WHERE status = 'paid') AS BIGINT), \
     count(*) FILTER (WHERE status = 'expired')";

/// A row of [`SALE_ORDERS_COLUMNS`].
type SaleOrdersRow = (i64, i64, Option<i64>, i64, Option<i64>, i64);

impl From<SaleOrdersRow> for SaleOrders {
    fn from(
        (rows, distinct_buyers, revenue_cents, paid, paid_revenue_cents, expired): SaleOrdersRow,
    ) -> Self {
        Self {
            rows: rows as u64,
            distinct_buyers: distinct_buyers as u64,
            revenue_cents: revenue_cents.unwrap_or(0),
            paid: paid as u64,
            paid_revenue_cents: paid_revenue_cents.unwrap_or(0),
            expired: expired as u64,
        }
    }
}

/// The statuses a transition may move a stored row (`created`) to; `created` itself is where
/// a row starts.
const FINAL_STATUSES: [OrderStatus; 3] =
    [OrderStatus::Paid, OrderStatus::Expired, OrderStatus::Failed];

/// The transitions of a batch that can change a row: to a final status.
fn final_transitions(batch: &[TransitionEvent]) -> impl Iterator<Item = &TransitionEvent> {
    batch
        .iter()
        .filter(|event| FINAL_STATUSES.contains(&event.status))
}

#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Brings the schema up to date.
    async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError>;

    /// Inserts the batch atomically, skipping rows whose order id, or whose (sale, buyer),
    /// exists; returns which of the batch's order ids are in the table afterwards (new or
    /// from an earlier delivery). A row the constraints refuse fails the whole batch with
    /// [`OrderStoreError::Rejected`].
    async fn insert(&self, batch: &[Delivery]) -> Result<HashSet<OrderId>, OrderStoreError>;

    /// Applies transitions to the rows: a `created` row moves to the event's final status
    /// (with `paid_at` or `expired_at`); any other row is left as it is, so applying twice, or
    /// late, changes nothing. Returns which of the batch's orders have a row.
    async fn apply_transitions(
        &self,
        batch: &[TransitionEvent],
    ) -> Result<HashSet<OrderId>, OrderStoreError>;

    /// Counts of one sale's rows.
    async fn sale_orders(&self, sale_id: &SaleId) -> Result<SaleOrders, OrderStoreError>;
}

const SQLITE_SCHEME: &str = "sqlite:";
const POSTGRES_SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

/// How the store talks to its database.
#[derive(Clone, Copy, Debug)]
pub struct DatabaseSettings {
    /// Connections in the pool.
    pub max_connections: NonZeroU32,
    /// The longest any one call may take.
    pub timeout: Duration,
}

impl Default for DatabaseSettings {
    /// A small pool (2 connections) and a 5 s deadline: what tools and tests need.
    fn default() -> Self {
        Self {
            max_connections: NonZeroU32::new(2).expect("2 > 0"),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Whether `database_url` names a backend this store has.
pub fn is_supported(database_url: &str) -> bool {
    database_url.starts_with(SQLITE_SCHEME)
        || POSTGRES_SCHEMES
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
}

/// The store `database_url` names: `postgres://…` or `sqlite:<path>` (the file is created if
/// missing), every call bounded by `settings.timeout`. Connects lazily (a worker starts while
/// its database is down, and retries); fails only on a malformed URL or an unknown scheme.
pub fn open(
    database_url: &str,
    settings: DatabaseSettings,
) -> Result<Arc<dyn OrderStore>, sqlx::Error> {
    if database_url.starts_with(SQLITE_SCHEME) {
        let store = SqliteOrderStore::connect_lazily(database_url, settings)?;
        Ok(Arc::new(bounded::Bounded::new(store, settings.timeout)))
    } else if is_supported(database_url) {
        let store = PostgresOrderStore::connect_lazily(database_url, settings)?;
        Ok(Arc::new(bounded::Bounded::new(store, settings.timeout)))
    } else {
        Err(sqlx::Error::Configuration(
            format!(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite:, not {:?}",
                shared::redact::url(database_url)
            )
            .into(),
        ))
    }
}
