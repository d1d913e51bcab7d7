//! Everything the order worker can be told (`--help` lists it).

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use clap::Parser;
use shared::config::RefusedToStart;
use shared::consumer::{LoopSettings, RetryPolicy};
use shared::payment::PaymentArgs;
use shared::worker::WorkerArgs;

use crate::reconciler::ReconcilerSettings;
use crate::relay::RelaySettings;
use crate::store::DatabaseSettings;

/// Consumer group `order-worker`: reservations become PostgreSQL orders; also runs the
/// outbox reconciler (one instance at a time, by lease).
#[derive(Parser, Clone, Debug)]
#[command(name = "order-worker", version)]
pub struct Config {
    /// URL of the orders database: postgres://… (production), or sqlite:<file> (embedded;
    /// the file is created if missing).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = "")]
    pub database_url: String,

    /// Connections in the database pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = NonZeroU32::new(8).expect("8 > 0"))]
    pub database_max_connections: NonZeroU32,

    /// The longest one database call may take; PostgreSQL cancels a statement past it (a lock
    /// wait included), and a call never answered counts as the database being unavailable.
    #[arg(long, env = "DATABASE_TIMEOUT_MS", default_value_t = NonZeroU64::new(5000).expect("5000 > 0"))]
    pub database_timeout_ms: NonZeroU64,

    /// Most events inserted in one statement.
    #[arg(long, env = "ORDER_BATCH_SIZE", default_value_t = NonZeroUsize::new(500).expect("500 > 0"))]
    pub batch_size: NonZeroUsize,

    /// How long a batch may wait to fill once its first event arrived.
    #[arg(long, env = "ORDER_BATCH_WAIT_MS", default_value_t = 20)]
    pub batch_wait_ms: u64,

    /// Longest back-off between retries while PostgreSQL or Redis is down.
    #[arg(long, env = "RETRY_MAX_BACKOFF_MS", default_value_t = 10_000)]
    pub retry_max_backoff_ms: u64,

    /// Time between reconciler sweeps.
    #[arg(long, env = "RECONCILE_INTERVAL_MS", default_value_t = NonZeroU64::new(2000).expect("2000 > 0"))]
    pub reconcile_interval_ms: NonZeroU64,

    /// Age after which an unacknowledged outbox entry is re-published. Keep it above the
    /// producer's 8 s message timeout, so an entry is never queued twice at once.
    #[arg(long, env = "RECONCILE_MIN_AGE_MS", default_value_t = 10_000)]
    pub reconcile_min_age_ms: u64,

    /// Age after which an acknowledged outbox entry still without an order row counts as lost
    /// (a broker that crashed after acknowledging, a topic recreated) and is re-published:
    /// far longer than any normal backlog.
    #[arg(long, env = "RECONCILE_LOST_AFTER_MS", default_value_t = 600_000)]
    pub reconcile_lost_after_ms: u64,

    /// Deadline of each of the reconciler's Redis calls (it reads more than a purchase does).
    #[arg(long, env = "RECONCILE_TIMEOUT_MS", default_value_t = NonZeroU64::new(2000).expect("2000 > 0"))]
    pub reconcile_timeout_ms: NonZeroU64,

    /// How long a settled sale's keys (its statistics with them) are kept before they expire:
    /// at least twice KAFKA_TOPIC_RETENTION_HOURS, so a late redelivery of any event the topics
    /// still hold finds its order's keys.
    #[arg(long, env = "SALE_RETENTION_SECS", default_value_t = NonZeroU64::new(8 * 24 * 3600).expect("8 days > 0"))]
    pub sale_retention_secs: NonZeroU64,

    /// Time between passes of the transition relay: how late, at most, an order's transition
    /// reaches the order-event topic.
    #[arg(long, env = "RELAY_INTERVAL_MS", default_value_t = NonZeroU64::new(200).expect("200 > 0"))]
    pub relay_interval_ms: NonZeroU64,

    /// Lifetime of the reconciler lease.
    #[arg(long, env = "RECONCILE_LEASE_MS", default_value_t = 10_000)]
    pub reconcile_lease_ms: u64,

    /// Age of a payment intent before the reconciler's payment resolver settles it (completes
    /// or refunds its charge): longer than any payment request runs (the gateways'
    /// REQUEST_TIMEOUT_MS), so no request is still charging it.
    #[arg(long, env = "PAYMENT_RESOLVE_AFTER_MS", default_value_t = NonZeroU64::new(10_000).expect("10000 > 0"))]
    pub payment_resolve_after_ms: NonZeroU64,

    #[command(flatten)]
    pub payments: PaymentArgs,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

impl Config {
    /// Refuses incomplete wiring with a sentence that names the variable to set.
    pub fn validate(&self) -> Result<(), RefusedToStart> {
        if self.database_url.trim().is_empty() {
            return Err(
                "DATABASE_URL is not set; the order worker needs its database (postgres://… or sqlite:…)"
                    .into(),
            );
        }
        if !crate::store::is_supported(&self.database_url) {
            return Err(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite:".into(),
            );
        }
        if self.reconcile_lease_ms <= self.reconcile_interval_ms.get() {
            return Err("RECONCILE_LEASE_MS must be longer than RECONCILE_INTERVAL_MS, or the lease lapses between sweeps".into());
        }
        self.worker.kafka.require_outlives_topics(
            "SALE_RETENTION_SECS",
            Duration::from_secs(self.sale_retention_secs.get()),
        )?;
        self.worker.validate()
    }

    /// Age of a payment intent before the resolver settles it.
    pub fn payment_resolve_after(&self) -> Duration {
        Duration::from_millis(self.payment_resolve_after_ms.get())
    }

    /// Deadline of each of the reconciler's Redis calls.
    pub fn reconcile_timeout(&self) -> Duration {
        Duration::from_millis(self.reconcile_timeout_ms.get())
    }

    /// How the order store talks to its database.
    pub fn database_settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            max_connections: self.database_max_connections,
            timeout: Duration::from_millis(self.database_timeout_ms.get()),
        }
    }

    /// The loop of the reservations: group `CONSUMER_GROUP` (default `order-worker`).
    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            group: self.worker.group("order-worker"),
            batch_size: self.batch_size,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            retry: RetryPolicy {
                // Only PostgreSQL and Redis can fail here, and their outages are `Unavailable`.
                max_attempts: None,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
            },
        }
    }

    /// The loop of the transitions: group `<CONSUMER_GROUP>.transitions`. Its waits are short
    /// (at most 1 s): the usual one is for a row that is on its way.
    pub fn transition_loop_settings(&self) -> LoopSettings {
        let reservations = self.loop_settings();
        LoopSettings {
            group: format!("{}.transitions", reservations.group),
            retry: RetryPolicy {
                max_backoff: reservations.retry.max_backoff.min(Duration::from_secs(1)),
                ..reservations.retry
            },
            ..reservations
        }
    }

    pub fn relay_settings(&self) -> RelaySettings {
        RelaySettings {
            interval: Duration::from_millis(self.relay_interval_ms.get()),
            redeliver_after: Duration::from_millis(self.reconcile_min_age_ms),
        }
    }

    pub fn reconciler_settings(&self) -> ReconcilerSettings {
        ReconcilerSettings {
            interval: Duration::from_millis(self.reconcile_interval_ms.get()),
            min_age: Duration::from_millis(self.reconcile_min_age_ms),
            lost_after: Duration::from_millis(self.reconcile_lost_after_ms),
            retention: Duration::from_secs(self.sale_retention_secs.get()),
            lease_ttl: Duration::from_millis(self.reconcile_lease_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroU64};

    use super::Config;
    use shared::config::RefusedToStart;

    fn validate(database_url: &str) -> Result<(), RefusedToStart> {
        let mut config: Config = shared::config::defaults();
        config.database_url = database_url.to_owned();
        config.validate()
    }

    #[test]
    fn postgres_and_sqlite_urls_are_accepted() {
        assert_eq!(validate("postgres://u@h/db"), Ok(()));
        assert_eq!(validate("postgresql://u@h/db"), Ok(()));
        assert_eq!(validate("sqlite:.seckill/orders.db"), Ok(()));
    }

    #[test]
    fn a_missing_or_foreign_database_url_is_refused_by_name() {
        assert!(
            validate("")
                .unwrap_err()
                .0
                .contains("DATABASE_URL is not set")
        );
        assert!(
            validate("mysql://u@h/db")
                .unwrap_err()
                .0
                .contains("DATABASE_URL must start")
        );
    }

    #[test]
    fn sale_keys_that_expire_before_the_topics_events_are_refused_by_name() {
        let mut config: Config = shared::config::defaults();
        config.database_url = "postgres://u@h/db".into();
        config.worker.kafka.kafka_topic_retention_hours = NonZeroU32::new(96).unwrap();
        config.sale_retention_secs = NonZeroU64::new(7 * 24 * 3600).unwrap();
        let refused = config.validate().unwrap_err().0;
        assert!(
            refused.starts_with("SALE_RETENTION_SECS (604800 s) must be at least twice KAFKA_TOPIC_RETENTION_HOURS (96 h)"),
            "{refused}"
        );
    }
}
