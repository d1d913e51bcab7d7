//! The stats worker: consumer group `stats-worker`.
//!
//! Counts every accepted order once in its sale's statistics (sold, revenue, distinct buyers,
//! units per second), which the gateway serves at `GET /api/v1/sales/{id}/stats`. The
//! exactly-once guarantee is the apply script's (`shared::stats`); this crate wires it to the
//! shared consumer loop.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use metrics::counter;
use metrics_exporter_prometheus::PrometheusHandle;
use shared::backends::Backends;
use shared::consumer::{Delivery, Handler, HandlerError, LoopSettings};
use shared::stats::StatsStore;
use shared::worker::WorkerArgs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Events counted for the first time (redeliveries excluded).
pub const EVENTS_COUNTED_TOTAL: &str = "seckill_stats_events_counted_total";

/// Consumer group `stats-worker`: exactly-once per-sale statistics.
#[derive(Parser, Clone, Debug)]
#[command(name = "stats-worker", version)]
pub struct Config {
    /// Consumer group; every instance with the same group shares the partitions.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "stats-worker")]
    pub consumer_group: String,

    /// Most events counted in one Redis round trip.
    #[arg(long, env = "STATS_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

impl Config {
    /// Refuses settings that cannot work, naming the variable.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("STATS_BATCH_SIZE must be at least 1".into());
        }
        self.worker.validate()
    }

    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            group: self.consumer_group.clone(),
            batch_size: self.batch_size,
            batch_wait: Duration::from_millis(20),
            // Only Redis can fail here, and its outages are `Unavailable`: no budget needed.
            max_attempts: None,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Counts a batch of events, each exactly once.
pub struct StatsHandler {
    store: Arc<dyn StatsStore>,
}

impl StatsHandler {
    pub fn new(store: Arc<dyn StatsStore>) -> Self {
        counter!(EVENTS_COUNTED_TOTAL).absolute(0);
        Self { store }
    }
}

impl Handler for StatsHandler {
    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let events: Vec<_> = batch.iter().map(|d| &d.event).collect();
        let counted = self
            .store
            .apply(&events)
            .await
            .map_err(|error| HandlerError::Unavailable(error.to_string()))?;
        counter!(EVENTS_COUNTED_TOTAL).increment(counted);
        Ok(())
    }
}

/// Runs the stats worker until `shutdown`; returns after the final commit.
pub async fn run(
    config: Config,
    http: TcpListener,
    prometheus: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("refusing to start: {problem}"))?;
    let store = Backends::open(&config.worker.redis)?.stats;
    shared::worker::run(
        &config.worker.kafka,
        config.loop_settings(),
        StatsHandler::new(store),
        http,
        prometheus,
        shutdown,
    )
    .await
}
