//! An example fourth consumer: loyalty points, one per whole unit of currency of every paid
//! order, counted exactly once per payment. It consumes the order-event topic (the orders'
//! transitions) and ignores every transition but `paid`. It is the "Add a consumer"
//! walkthrough of `docs/guide.md` followed line by line and kept in the repository, so CI builds it, tests it against the real
//! services, and runs it in the compose check: a configuration and a handler, nothing else.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shared::backends::Backends;
use shared::config::RefusedToStart;
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
    /// How long an event id is remembered, so a redelivery adds nothing: at least twice
    /// KAFKA_TOPIC_RETENTION_HOURS, so every event the topic can still deliver is remembered.
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

    fn validate(&self) -> Result<(), RefusedToStart> {
        self.worker.kafka.require_outlives_topics(
            "POINTS_DEDUP_RETENTION_SECS",
            Duration::from_secs(self.dedup_retention_secs.get()),
        )
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

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroU64};

    use shared::worker::WorkerConfig;

    use super::Config;

    #[test]
    fn applied_ids_forgotten_before_the_topics_events_are_refused_by_name() {
        let mut config: Config = shared::config::defaults();
        assert_eq!(config.validate(), Ok(()), "the defaults agree");
        config.worker.kafka.kafka_topic_retention_hours = NonZeroU32::new(24 * 30).unwrap();
        config.dedup_retention_secs = NonZeroU64::new(30 * 24 * 3600).unwrap();
        let refused = config.validate().unwrap_err().0;
        assert!(
            refused.starts_with("POINTS_DEDUP_RETENTION_SECS (2592000 s) must be at least twice KAFKA_TOPIC_RETENTION_HOURS (720 h)"),
            "{refused}"
        );
    }
}
