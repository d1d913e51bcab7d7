//! The seckill gateway: the synchronous half of a purchase.
//!
//! A purchase has five steps; the gateway does the two that decide the outcome — risk control
//! and the stock lock — and answers at once. It then enqueues an event on Kafka for the order,
//! SMS and statistics workers. Find any concern in one hop:
//!
//! | module | concern |
//! | --- | --- |
//! | [`config`] | every flag and environment variable, and the refusal to start half-wired |
//! | [`routes`] | the HTTP API, overload protection, health and metrics |
//! | [`auth`] | user JWTs and the admin token |
//! | [`risk`] | rate limits and the blacklist copy |
//! | [`sales`] | the sale cache and the local sold-out flag |
//! | [`error`] | every failure's status and JSON body |
//! | [`state`] | what handlers share |
//!
//! The stock lock itself, the event and the producer live in `shared`, because the workers
//! and the reconciler use them too.

pub mod auth;
pub mod config;
pub mod error;
mod extract;
pub mod risk;
pub mod routes;
pub mod sales;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use shared::publisher::record_acknowledgements;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::state::AppState;

/// How often idle keys leave the rate limiters.
const LIMITER_RETAIN_INTERVAL: Duration = Duration::from_secs(10);

/// Serves the gateway on `listener` until `shutdown` completes, then drains in-flight
/// requests and flushes queued events to the broker.
pub async fn run(
    config: Config,
    listener: TcpListener,
    prometheus: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("refusing to start: {problem}"))?;
    let (state, acknowledgements) = AppState::build(&config, prometheus)?;
    let stop = CancellationToken::new();
    let acknowledger = tokio::spawn(record_acknowledgements(
        acknowledgements,
        state.ledger.clone(),
    ));
    let housekeeper = tokio::spawn(housekeeping(
        state.clone(),
        Duration::from_millis(config.blacklist_sync_ms),
        stop.clone(),
    ));
    let kafka = config.kafka.clone();
    tokio::spawn(async move {
        if let Err(error) = shared::kafka::ensure_topics(&kafka).await {
            tracing::warn!(%error, "could not ensure the Kafka topics exist (is Kafka up?)");
        }
    });

    let app = routes::router(state.clone(), &config);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;

    tracing::info!("HTTP drained; flushing queued events");
    stop.cancel();
    housekeeper.await?;
    let publisher = state.publisher.clone();
    let flush_timeout = Duration::from_millis(config.shutdown_flush_ms);
    drop(state);
    // Flushing blocks; dropping the last producer handle afterwards closes the
    // acknowledgement channel, so the acknowledger records the final batch and ends.
    tokio::task::spawn_blocking(move || {
        publisher.flush(flush_timeout);
        drop(publisher);
    })
    .await?;
    acknowledger.await?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Keeps the blacklist copy fresh and the rate limiters small, until `stop`.
async fn housekeeping(state: AppState, blacklist_sync: Duration, stop: CancellationToken) {
    let mut sync = tokio::time::interval(blacklist_sync);
    let mut retain = tokio::time::interval(LIMITER_RETAIN_INTERVAL);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = sync.tick() => {
                if let Err(error) = state.blacklist.sync().await {
                    tracing::warn!(%error, "blacklist sync failed; keeping the current copy");
                }
            }
            _ = retain.tick() => state.limits.retain_recent(),
        }
    }
}
