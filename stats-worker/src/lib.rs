//! The stats worker: consumer group `stats-worker`.
//!
//! Counts every accepted order once in its sale's statistics (sold, revenue, distinct buyers,
//! units per second) and every transition once (created, paid with its revenue, expired,
//! failed), which the gateway serves at `GET /api/v1/sales/{id}/stats`. The
//! exactly-once guarantee is the store's (`shared::stats`); this crate is the handler and the
//! settings, and `shared::worker` runs them.

use std::num::NonZeroUsize;
use std::sync::Arc;

use clap::Parser;
use metrics::counter;
use shared::backends::Backends;
use shared::consumer::{Delivery, Handler, HandlerError, LoopSettings};
use shared::event::OrderEvent;
use shared::stats::StatsStore;
use shared::worker::{WorkerArgs, WorkerConfig};

/// Events counted for the first time (redeliveries excluded).
pub const EVENTS_COUNTED_TOTAL: &str = "seckill_stats_events_counted_total";

/// Consumer group `stats-worker`: exactly-once per-sale statistics.
#[derive(Parser, Clone, Debug)]
#[command(name = "stats-worker", version)]
pub struct Config {
    /// Most events counted in one Redis round trip.
    #[arg(long, env = "STATS_BATCH_SIZE", default_value_t = NonZeroUsize::new(500).expect("500 > 0"))]
    pub batch_size: NonZeroUsize,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

impl WorkerConfig for Config {
    type Handler = StatsHandler;

    fn worker_args(&self) -> &WorkerArgs {
        &self.worker
    }

    fn loop_settings(&self, group: &str) -> LoopSettings {
        // Only Redis can fail here, and its outages are `Unavailable`: retried, no budget.
        LoopSettings {
            batch_size: self.batch_size,
            ..LoopSettings::new(group)
        }
    }

    fn handler(&self, backends: &Backends) -> anyhow::Result<StatsHandler> {
        Ok(StatsHandler::new(backends.stats()))
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
    type Event = OrderEvent;

    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn handle(&self, batch: &[Delivery<OrderEvent>]) -> Result<(), HandlerError> {
        let mut reservations = Vec::with_capacity(batch.len());
        let mut transitions = Vec::new();
        for delivery in batch {
            match &delivery.event {
                OrderEvent::Reserved(event) => reservations.push(event),
                OrderEvent::Transition(event) => transitions.push(event),
            }
        }
        let counted = self.store.apply(&reservations).await?
            + self.store.apply_transitions(&transitions).await?;
        counter!(EVENTS_COUNTED_TOTAL).increment(counted);
        Ok(())
    }
}
