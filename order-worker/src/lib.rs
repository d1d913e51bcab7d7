//! The order worker: consumer group `order-worker`.
//!
//! | module | concern |
//! | --- | --- |
//! | [`config`] | flags and environment variables |
//! | [`handler`] | a batch of reservations → order rows → status `created`, outbox cleared |
//! | [`transitions`] | a batch of transitions (paid, expired) → the rows' status, forward only |
//! | [`store`] | the order table (PostgreSQL, or SQLite embedded): migrations, the batched idempotent writes |
//! | [`reconciler`] | re-publishes outbox entries the broker never acknowledged and expires unpaid orders, one instance at a time |
//! | [`payments`] | the payment resolver in the reconciler's sweep: every charge ends with its order paid, or refunded |
//! | [`relay`] | publishes the transition outbox to the order-event topic, on every instance |
//! | this file | build, then serve: the two consumer loops, the reconciler and the relay beside them |
//!
//! The consumer loop itself (offsets, retries, dead letters) is `shared::consumer`. Unlike
//! the other workers this one is more than a handler (it migrates its database and runs the
//! reconciler), so it has its own build and serve around `shared::worker`'s.

pub mod config;
pub mod handler;
pub mod payments;
pub mod reconciler;
pub mod relay;
pub mod store;
pub mod transitions;

use std::sync::Arc;
use std::time::Duration;

use shared::backends::Backends;
use shared::consumer::batch::{Step, sleep_unless_shutdown};
use shared::event::Stream;
use shared::ids::OrderId;
use shared::kafka::EventBus;
use shared::payment::PaymentProvider;
use shared::publisher::{Publisher, record_acknowledgements};
use shared::stock::{StockLedger, TransitionId};
use shared::worker::Worker;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::handler::OrderHandler;
use crate::payments::PaymentResolver;
use crate::reconciler::Reconciler;
use crate::relay::Relay;
use crate::store::OrderStore;
use crate::transitions::TransitionHandler;

/// A built order worker, ready to [`serve`].
pub struct OrderWorker {
    worker: Worker,
    orders: Arc<dyn OrderStore>,
    reconciler: Reconciler,
    relay: Relay,
    /// The broker's acknowledgements of the reconciler's re-publishes, for the ledger.
    acknowledgements: mpsc::UnboundedReceiver<OrderId>,
    /// The broker's acknowledgements of the relay's publishes, for the ledger.
    transition_acknowledgements: mpsc::UnboundedReceiver<TransitionId>,
    ledger: Arc<dyn StockLedger>,
}

/// The order worker `config` describes, on the database, backends, bus and payment provider
/// it names.
pub fn build(config: &Config) -> anyhow::Result<OrderWorker> {
    config.validate()?;
    let orders = store::open(&config.database_url, config.database_settings())?;
    let backends = Backends::open(&config.worker.redis)?;
    let bus = EventBus::connect(&config.worker.kafka)?;
    build_on(config, &backends, &bus, orders, config.payments.provider())
}

/// The order worker `config` describes, on an order store, backends, a bus and a payment
/// provider built by the caller.
pub fn build_on(
    config: &Config,
    backends: &Backends,
    bus: &EventBus,
    orders: Arc<dyn OrderStore>,
    payments: Arc<dyn PaymentProvider>,
) -> anyhow::Result<OrderWorker> {
    config.validate()?;
    // First: the parts built below register their metrics' series at zero.
    let prometheus = shared::telemetry::install_metrics();
    let ledger = backends.ledger();
    let (publisher, acknowledgements) = Publisher::new(bus, Stream::Reservations)?;
    let (transition_publisher, transition_acknowledgements) =
        Publisher::new(bus, Stream::OrderEvents)?;
    let relay = Relay::new(
        Arc::clone(&ledger),
        transition_publisher,
        config.relay_settings(),
    );
    let reconciler_ledger = backends.with_deadline(config.reconcile_timeout()).ledger();
    let resolver = PaymentResolver::new(
        Arc::clone(&reconciler_ledger),
        payments,
        config.payment_resolve_after(),
    );
    let reconciler = Reconciler::new(
        reconciler_ledger,
        backends.leases(),
        publisher,
        resolver,
        config.reconciler_settings(),
    );
    let reservations = OrderHandler::new(Arc::clone(&orders), Arc::clone(&ledger) as _);
    let transitions = TransitionHandler::new(Arc::clone(&orders), Arc::clone(&ledger) as _);
    let worker = Worker::new(bus, config.loop_settings(), reservations, prometheus)?
        .and_consume(config.transition_loop_settings(), transitions)?
        .with_front_door(&config.worker.front_door);
    Ok(OrderWorker {
        worker,
        orders,
        reconciler,
        relay,
        acknowledgements,
        transition_acknowledgements,
        ledger,
    })
}

/// Starts the reconciler and the relay, migrates the order table, then consumes until
/// `shutdown`; returns after the final commits.
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
        Arc::clone(&order_worker.ledger) as _,
    ));
    let transition_acknowledger = tokio::spawn(record_acknowledgements(
        order_worker.transition_acknowledgements,
        order_worker.ledger,
    ));
    let reconciling = tokio::spawn(order_worker.reconciler.run(shutdown.clone()));
    let relaying = tokio::spawn(order_worker.relay.run(shutdown.clone()));
    let consumed = match migrate_with_retry(order_worker.orders.as_ref(), &shutdown).await {
        Step::Done => shared::worker::serve(order_worker.worker, http, shutdown.clone()).await,
        Step::Interrupted => Ok(()), // stopped before the database ever answered
    };
    shutdown.cancel();
    // Each ends by dropping its producer's last handle, which ends its acknowledger.
    reconciling.await?;
    relaying.await?;
    acknowledger.await?;
    transition_acknowledger.await?;
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
