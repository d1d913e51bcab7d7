//! An example fourth consumer: loyalty points, one per whole unit of currency of every paid
//! order, counted exactly once per payment. It consumes the order-event topic (the orders'
//! transitions) and ignores every transition but `paid`. It is the README's "Add a consumer" walkthrough followed
//! line by line and kept in the repository, so CI builds it, tests it against the real
//! services, and runs it in the compose check: a configuration and a handler, nothing else.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shared::backends::Backends;
use shared::consumer::{Delivery, Handler, HandlerError, LoopSettings};
use shared::counters::{Counters, Increment};
use shared::event::{Consumed, TransitionEvent};
use shared::stock::OrderStatus;
use shared::worker::{WorkerArgs, WorkerConfig};

/// The counter set of the points, one counter per buyer.
pub const POINTS: &str = "points";

/// Consumer group `points-worker`: loyalty points per buyer.
#[derive(Parser, Clone, Debug)]
#[command(name = "points-worker", version)]
pub struct Config {
    /// How long an event id is remembered, so a redelivery adds nothing: longer than the topic
    /// keeps its events.
    #[arg(long, env = "POINTS_DEDUP_RETENTION_SECS", default_value_t = NonZeroU64::new(30 * 24 * 3600).expect("30 days > 0"))]
    pub dedup_retention_secs: NonZeroU64,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

impl WorkerConfig for Config {
    type Handler = PointsHandler;

    fn worker_args(&self) -> &WorkerArgs {
        &self.worker
    }

    fn loop_settings(&self, group: &str) -> LoopSettings {
        LoopSettings::new(group)
    }

    fn handler(&self, backends: &Backends) -> anyhow::Result<PointsHandler> {
        let retention = Duration::from_secs(self.dedup_retention_secs.get());
        Ok(PointsHandler {
            points: backends.counters(POINTS, retention),
        })
    }
}

/// Awards each buyer a point per whole unit of the price paid, once per payment.
pub struct PointsHandler {
    pub points: Arc<dyn Counters>,
}

impl Handler for PointsHandler {
    type Event = TransitionEvent;

    async fn handle(&self, batch: &[Delivery<TransitionEvent>]) -> Result<(), HandlerError> {
        let awards: Vec<Increment<'_>> = batch
            .iter()
            .filter(|Delivery { event, .. }| event.status == OrderStatus::Paid)
            .map(|Delivery { event, .. }| Increment {
                event_id: event.id(),
                key: event.user_id.as_str(),
                amount: event.price_cents / 100,
            })
            .collect();
        // A store that does not answer becomes `Unavailable`: the loop retries the batch.
        self.points.add_once(&awards).await?;
        Ok(())
    }
}
