//! The order worker: consumer group `order-worker`.
//!
//! | module | concern |
//! | --- | --- |
//! | [`config`] | flags and environment variables |
//! | [`handler`] | a batch of reservations → order rows → status `created`, outbox cleared |
//! | [`store`] | the order table (PostgreSQL, or SQLite embedded): migrations, the batched idempotent insert |
//! | [`reconciler`] | re-publishes outbox entries the broker never acknowledged, one instance at a time |
//! | this file | build, then serve: the consumer loop, the reconciler beside it |
//!
//! The consumer loop itself (offsets, retries, dead letters) is `shared::consumer`. Unlike
//! the other workers this one is more than a handler (it migrates its database and runs the
//! reconciler), so it has its own build and serve around `shared::worker`'s.

pub mod config;
pub mod handler;
pub mod reconciler;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use shared::backends::Backends;
use shared::config::RefusedToStart;
use shared::consumer::batch::{Step, sleep_unless_shutdown};
use shared::ids::OrderId;
use shared::kafka::EventBus;
use shared::publisher::{Publisher, record_acknowledgements};
use shared::worker::Worker;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::handler::OrderHandler;
use crate::reconciler::Reconciler;
use crate::store::OrderStore;

/// A built order worker, ready to [`serve`].
pub struct OrderWorker {
    worker: Worker<OrderHandler>,
    orders: Arc<dyn OrderStore>,
    reconciler: Reconciler,
    /// The broker's acknowledgements of the reconciler's re-publishes, for the ledger.
    acknowledgements: mpsc::UnboundedReceiver<OrderId>,
    ledger: Arc<dyn shared::stock::StockLedger>,
}

/// The order worker `config` describes, on the database, backends and bus its URLs name.
pub fn build(config: &Config) -> anyhow::Result<OrderWorker> {
    config.validate().map_err(RefusedToStart)?;
    let orders = store::open(&config.database_url, config.database_settings())?;
    let backends = Backends::open(&config.worker.redis)?;
    let bus = EventBus::connect(&config.worker.kafka)?;
    build_on(config, &backends, &bus, orders)
}

/// The order worker `config` describes, on an order store, backends and a bus built by the
/// caller.
pub fn build_on(
    config: &Config,
    backends: &Backends,
    bus: &EventBus,
    orders: Arc<dyn OrderStore>,
) -> anyhow::Result<OrderWorker> {
    config.validate().map_err(RefusedToStart)?;
    let ledger = backends.ledger();
    let (publisher, acknowledgements) = Publisher::new(bus)?;
    let reconciler = Reconciler::new(
        backends.with_deadline(config.reconcile_timeout()).ledger(),
        backends.leases(),
        publisher,
        config.reconciler_settings(),
    );
    let handler = OrderHandler::new(Arc::clone(&orders), Arc::clone(&ledger));
    Ok(OrderWorker {
        worker: Worker::new(bus, config.loop_settings(), handler)?,
        orders,
        reconciler,
        acknowledgements,
        ledger,
    })
}

/// Starts the reconciler, migrates the order table, then consumes until `shutdown`; returns
/// after the final commit.
///
/// The reconciler comes first: it needs Redis and Kafka only, and while PostgreSQL is down it
/// still re-publishes the locks whose events never reached the broker, so the SMS and
/// statistics workers are not held up by the order table.
pub async fn serve(
    order_worker: OrderWorker,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acknowledger = tokio::spawn(record_acknowledgements(
        order_worker.acknowledgements,
        order_worker.ledger,
    ));
    let reconciling = tokio::spawn(order_worker.reconciler.run(shutdown.clone()));
    let consumed = match migrate_with_retry(order_worker.orders.as_ref(), &shutdown).await {
        Step::Done => shared::worker::serve(order_worker.worker, http, shutdown.clone()).await,
        Step::Interrupted => Ok(()), // stopped before the database ever answered
    };
    shutdown.cancel();
    reconciling.await?; // drops the last producer handle, which ends the acknowledger
    acknowledger.await?;
    consumed
}

/// Applies migrations, waiting for the database if it is not up yet, until `shutdown`.
async fn migrate_with_retry(store: &dyn OrderStore, shutdown: &CancellationToken) -> Step {
    let mut delay = Duration::from_millis(200);
    loop {
        let migrated = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Step::Interrupted,
            migrated = store.migrate() => migrated,
        };
        let Err(error) = migrated else {
            return Step::Done;
        };
        tracing::warn!(%error, ?delay, "migrations failed (is the database up?); retrying");
        if sleep_unless_shutdown(delay, shutdown).await == Step::Interrupted {
            return Step::Interrupted;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
