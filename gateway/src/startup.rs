//! Build, then serve (the shape of zero2prod's `startup.rs`).
//!
//! [`build`] turns a configuration into a [`Gateway`]: every dependency constructed, nothing
//! contacted yet (the stores and Kafka connect lazily). [`build_on`] does the same on backends,
//! a bus and a payment provider the caller built, which is how the all-in-one runner and the
//! tests share them. [`serve`] runs a built gateway on its two listeners (the API, and the
//! metrics) through the front door (`shared::front_door`) until its shutdown token is
//! cancelled.

use std::sync::Arc;
use std::time::Duration;

use shared::backends::Backends;
use shared::config::Mode;
use shared::event::Stream;
use shared::front_door;
use shared::ids::OrderId;
use shared::kafka::EventBus;
use shared::payment::PaymentProvider;
use shared::publisher::{Publisher, record_acknowledgements};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::AppState;
use crate::{push, routes};

/// How often idle keys leave the rate limiters.
const LIMITER_RETAIN_INTERVAL: Duration = Duration::from_secs(10);

/// A built gateway, ready to [`serve`].
pub struct Gateway {
    config: Config,
    state: AppState,
    bus: EventBus,
    /// The broker's acknowledgements of published events, for the ledger.
    acknowledgements: mpsc::UnboundedReceiver<OrderId>,
}

/// The gateway `config` describes, on the backends, the bus and the payment provider it names.
pub fn build(config: &Config) -> anyhow::Result<Gateway> {
    let backends = Backends::open(&config.redis)?;
    let bus = EventBus::connect(&config.kafka)?;
    build_on(config, &backends, &bus, config.payments.provider())
}

/// The gateway `config` describes, on backends, a bus and a payment provider built by the
/// caller.
pub fn build_on(
    config: &Config,
    backends: &Backends,
    bus: &EventBus,
    payments: Arc<dyn PaymentProvider>,
) -> anyhow::Result<Gateway> {
    config.validate()?;
    if config.mode() == Mode::Demo {
        tracing::warn!(
            "DEMO MODE: placeholder and short secrets are accepted, and POST /api/v1/demo/sign-in gives anyone a token for any user name (audience seckill-demo, refused outside demo mode); never let this gateway face the internet"
        );
    }
    // First: the parts built below register their metrics' series at zero.
    let prometheus = shared::telemetry::install_metrics();
    let (publisher, acknowledgements) = Publisher::new(bus, Stream::Reservations)?;
    Ok(Gateway {
        config: config.clone(),
        state: AppState::new(config, backends, bus, publisher, payments, prometheus),
        bus: bus.clone(),
        acknowledgements,
    })
}

/// Serves the gateway's API on `api` and its metrics on `metrics` until `shutdown` is
/// cancelled, then drains in-flight requests and flushes queued events to the broker.
pub async fn serve(
    gateway: Gateway,
    api: TcpListener,
    metrics: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (config, state) = (gateway.config, gateway.state);
    // A copy that starts empty would let every banned user buy until the first poll.
    let first_sync = tokio::time::timeout(config.blacklist_sync(), state.blacklist.sync()).await;
    if !matches!(first_sync, Ok(Ok(()))) {
        tracing::warn!("the blacklist could not be loaded before serving; not ready until it is");
    }
    let acknowledger = tokio::spawn(record_acknowledgements(
        gateway.acknowledgements,
        state.ledger.clone(),
    ));
    let stop_housekeeping = CancellationToken::new();
    let housekeeper = tokio::spawn(housekeeping(
        state.clone(),
        config.blacklist_sync(),
        stop_housekeeping.clone(),
    ));
    let checker = tokio::spawn({
        let (state, stop) = (state.clone(), stop_housekeeping.clone());
        async move {
            let (ledger, publisher) = (state.ledger.as_ref(), &state.publisher);
            state.readiness.keep_checking(ledger, publisher, stop).await;
        }
    });
    let feed = tokio::spawn(push::feed::run(
        gateway.bus.clone(),
        Arc::clone(&state.push.watchers),
        stop_housekeeping.clone(),
    ));
    let bus = gateway.bus;
    tokio::spawn(async move {
        if let Err(error) = bus.ensure_topics().await {
            tracing::warn!(%error, "could not ensure the Kafka topics exist (is Kafka up?)");
        }
    });

    // The graceful shutdown waits for open connections, and an event stream stays open for
    // minutes: the streams end when the shutdown begins.
    let streams = state.push.closing.clone();
    let ending = shutdown.clone();
    tokio::spawn(async move {
        ending.cancelled().await;
        streams.cancel();
    });
    let door = &config.front_door;
    let app = routes::router(state.clone(), &config);
    let metrics_app = routes::metrics_router(state.clone());
    let (served, metrics_served) = tokio::join!(
        front_door::serve(api, app, door, shutdown.clone()),
        front_door::serve(metrics, metrics_app, door, shutdown),
    );
    served?;
    metrics_served?;

    tracing::info!("HTTP drained; flushing queued events");
    stop_housekeeping.cancel();
    housekeeper.await?;
    checker.await?;
    feed.await?;
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
