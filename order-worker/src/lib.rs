//! The order worker: consumer group `order-worker`.
//!
//! | module | concern |
//! | --- | --- |
//! | [`config`] | flags and environment variables |
//! | [`handler`] | a batch of reservations → order rows → status `created`, outbox cleared |
//! | [`store`] | the order table (PostgreSQL, or SQLite embedded): migrations, the batched idempotent insert |
//! | [`reconciler`] | re-publishes outbox entries the broker never acknowledged, one instance at a time |
//!
//! The consumer loop itself (offsets, retries, dead letters) is `shared::consumer`.

pub mod config;
pub mod handler;
pub mod reconciler;
pub mod store;

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use shared::backends::Backends;
use shared::publisher::{Publisher, record_acknowledgements};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::handler::OrderHandler;
use crate::reconciler::Reconciler;
use crate::store::OrderStore;

/// Runs the order worker and its reconciler until `shutdown`; returns after the final commit.
pub async fn run(
    config: Config,
    http: TcpListener,
    prometheus: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("refusing to start: {problem}"))?;
    let store = store::open(&config.database_url, config.database_max_connections)?;
    migrate_with_retry(store.as_ref(), &shutdown).await?;
    let Backends {
        ledger,
        coordination,
        ..
    } = Backends::open(&config.worker.redis)?;

    let (publisher, acknowledgements) = Publisher::new(&config.worker.kafka)?;
    let acknowledger = tokio::spawn(record_acknowledgements(
        acknowledgements,
        Arc::clone(&ledger),
    ));
    let reconciler = Reconciler::new(
        Arc::clone(&ledger),
        coordination,
        publisher,
        config.reconciler_settings(),
    );
    let reconciling = tokio::spawn(reconciler.run(shutdown.clone()));

    let handler = OrderHandler::new(store, ledger);
    let consumed = shared::worker::run(
        &config.worker.kafka,
        config.loop_settings(),
        handler,
        http,
        prometheus,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    reconciling.await?; // drops the last producer handle, which ends the acknowledger
    acknowledger.await?;
    consumed
}

/// Applies migrations, waiting for the database if it is not up yet.
async fn migrate_with_retry(
    store: &dyn OrderStore,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match store.migrate().await {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, ?delay, "migrations failed (is the database up?); retrying");
                tokio::select! {
                    () = shutdown.cancelled() => anyhow::bail!("shut down before the database was reachable"),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}
