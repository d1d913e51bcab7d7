//! The reconciler: closes the gap between the stock lock and the publish.
//!
//! The gateway answers 202 after the lock and publishes afterwards. If that publish never
//! reaches the broker (Kafka down, gateway killed, delivery timed out), the order id stays in
//! the sale's `unpublished` set and its event stays in the outbox. Every sweep, the instance
//! holding the lease re-publishes those entries that are older than `min_age` — the very bytes
//! the script stored, so consumers deduplicate them on `event_id`.
//!
//! Entries that were published but have no order row yet are the order worker's backlog: they
//! are only measured (a gauge), never re-published, so a long queue during a peak is not
//! doubled by its own reconciler.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use metrics::{counter, gauge};
use shared::error::StoreError;
use shared::event::ReservationEvent;
use shared::ids::OrderId;
use shared::kafka::new_traceparent;
use shared::lease::Leases;
use shared::publisher::Publisher;
use shared::stock::{OutboxSizes, StockLedger, Unpublished};
use tokio_util::sync::CancellationToken;

/// Events the reconciler published again.
pub const REPUBLISHED_TOTAL: &str = "seckill_reconciler_republished_total";
/// Outbox entries (units locked without an order row yet), by state: `unpublished` (waiting
/// for the reconciler) or `backlog` (published, waiting for the order worker).
pub const OUTBOX_ENTRIES: &str = "seckill_outbox_entries";

/// Most entries re-published per sale per sweep.
const SWEEP_LIMIT: usize = 10_000;
/// The lease that makes one instance of the order workers the reconciler.
const LEASE: &str = "reconciler";

#[derive(Clone, Debug)]
pub struct ReconcilerSettings {
    /// Time between sweeps.
    pub interval: Duration,
    /// Only entries older than this are re-published (younger ones may still be in flight).
    pub min_age: Duration,
    /// Lease lifetime; another instance takes over this long after the holder died.
    pub lease_ttl: Duration,
}

pub struct Reconciler {
    ledger: Arc<dyn StockLedger>,
    leases: Arc<dyn Leases>,
    publisher: Publisher,
    /// This instance's name on the lease.
    holder: String,
    settings: ReconcilerSettings,
}

impl Reconciler {
    pub fn new(
        ledger: Arc<dyn StockLedger>,
        leases: Arc<dyn Leases>,
        publisher: Publisher,
        settings: ReconcilerSettings,
    ) -> Self {
        Self {
            ledger,
            leases,
            publisher,
            holder: uuid::Uuid::new_v4().to_string(),
            settings,
        }
    }

    /// Sweeps every `interval` while holding the lease, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let lease = self
                .leases
                .hold(LEASE, &self.holder, self.settings.lease_ttl);
            match lease.await {
                Ok(true) => {
                    if let Err(error) = self.sweep().await {
                        tracing::warn!(%error, "reconciler sweep failed; retrying next tick");
                    }
                }
                // Only the holder measures the outbox; a former holder must not keep reporting
                // its last reading.
                Ok(false) => {
                    gauge!(OUTBOX_ENTRIES, "state" => "unpublished").set(0.0);
                    gauge!(OUTBOX_ENTRIES, "state" => "backlog").set(0.0);
                }
                Err(error) => tracing::warn!(%error, "reconciler lease check failed"),
            }
        }
    }

    /// One pass over every sale; returns how many events it re-published.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now_ms = Utc::now().timestamp_millis();
        let cutoff_ms =
            now_ms - i64::try_from(self.settings.min_age.as_millis()).unwrap_or(i64::MAX);
        let (mut outbox_total, mut unpublished_total, mut republished) = (0, 0, 0);
        for sale_id in self.ledger.sale_ids().await? {
            let mut due = Vec::new();
            let mut already_ordered = Vec::new();
            for Unpublished { order_id, payload } in self
                .ledger
                .stale_unpublished(&sale_id, cutoff_ms, SWEEP_LIMIT)
                .await?
            {
                match payload {
                    Some(payload) => due.push((order_id, payload)),
                    // No payload: the order row exists already (the entry left the outbox);
                    // only the acknowledgement was lost.
                    None => already_ordered.push(order_id),
                }
            }
            // Defer before publishing: if the ledger fails here nothing was queued, and nothing
            // queued can be queued again before `min_age` has passed.
            let orders: Vec<OrderId> = due.iter().map(|(order, _)| order.clone()).collect();
            self.ledger.defer_unpublished(&orders, now_ms).await?;
            self.ledger.mark_published(&already_ordered).await?;
            republished += due
                .iter()
                .filter(|(order, payload)| self.republish(order, payload))
                .count();
            let OutboxSizes {
                locked,
                unacknowledged,
            } = self.ledger.outbox_sizes(&sale_id).await?;
            outbox_total += locked;
            unpublished_total += unacknowledged;
        }
        counter!(REPUBLISHED_TOTAL).increment(republished as u64);
        gauge!(OUTBOX_ENTRIES, "state" => "unpublished").set(unpublished_total as f64);
        gauge!(OUTBOX_ENTRIES, "state" => "backlog")
            .set(outbox_total.saturating_sub(unpublished_total) as f64);
        if republished > 0 {
            tracing::info!(
                republished,
                "re-published events the broker never acknowledged"
            );
        }
        Ok(republished)
    }

    /// Queues one outbox entry on the producer again; `false` if it could not be.
    fn republish(&self, order: &OrderId, payload: &str) -> bool {
        let event = match ReservationEvent::from_json(payload.as_bytes()) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(%error, %order, "outbox entry is not a valid event; leaving it for an operator");
                return false;
            }
        };
        let (traceparent, trace_id) = new_traceparent();
        match self.publisher.publish(&event, payload, &traceparent) {
            Ok(()) => {
                tracing::debug!(%order, trace_id, "event re-published");
                true
            }
            Err(error) => {
                tracing::warn!(%error, %order, "re-publish failed; a later sweep retries");
                false
            }
        }
    }
}
