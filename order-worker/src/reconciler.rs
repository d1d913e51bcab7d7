//! The reconciler: closes the gap between the stock lock and the order row.
//!
//! The gateway answers 202 after the lock and publishes afterwards. If that publish never
//! reaches the broker (Kafka down, gateway killed, delivery timed out), the order stays in the
//! sale's `unpublished` set and its event in the outbox; past `min_age` the reconciler
//! publishes the very bytes the script stored again, and consumers deduplicate them on
//! `event_id`. An event the broker acknowledged can still be lost afterwards (a single-replica
//! broker that crashed, a topic recreated): an acknowledged entry with no order row after
//! `lost_after` — far longer than any normal backlog — is published again too.
//!
//! The same sweep expires the orders left unpaid past their pay-by time, returning each unit to
//! stock (`docs/architecture.md`, "The order lifecycle"), and then settles the payments the
//! gateways left unfinished ([`PaymentResolver`]): every charge ends paid or refunded. The deadlines live in the ledger beside
//! the stock, so a crash of any process or a restart of Redis (with its append-only file) loses
//! none: an order is expired at most one sweep interval after its window closed.
//!
//! Every sweep, the instance holding the lease visits the active sales, each on its own: an
//! error on one sale is logged and counted, and the others are swept all the same. Entries are
//! read in chunks, every call under the reconciler's own deadline, and every age is measured
//! on the ledger's clock (Redis `TIME`), never by comparing two machines' clocks. A sale with
//! nothing left to do is settled: it leaves the active sales, and its keys expire after
//! `retention`.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use shared::error::StoreError;
use shared::event::ReservationEvent;
use shared::ids::{OrderId, SaleId};
use shared::kafka::new_traceparent;
use shared::lease::Leases;
use shared::publisher::Publisher;
use shared::stock::{OutboxEntry, OutboxSizes, Publication, StockLedger};
use tokio_util::sync::CancellationToken;

use crate::payments::PaymentResolver;

/// Events the reconciler published again, by why (`unacknowledged`, `lost`).
pub const REPUBLISHED_TOTAL: &str = "seckill_reconciler_republished_total";
/// Orders expired unpaid, their units back on sale.
pub const EXPIRED_TOTAL: &str = "seckill_orders_expired_total";
/// Sales whose sweep failed (the others were swept all the same).
pub const SALE_FAILURES_TOTAL: &str = "seckill_reconciler_sale_failures_total";
/// Outbox entries (units locked without an order row yet), by state: `unpublished` (waiting
/// for the reconciler) or `backlog` (published, waiting for the order worker).
pub const OUTBOX_ENTRIES: &str = "seckill_outbox_entries";

/// Entries read per call.
const CHUNK: usize = 500;
/// Most entries re-published (or orders expired) per sale per sweep; the rest wait for the
/// next sweep.
const SWEEP_LIMIT: usize = 10_000;
/// The lease that makes one instance of the order workers the reconciler.
const LEASE: &str = "reconciler";
/// How long after its end a sale still counts as open: longer than any gateway's clock is off.
const ENDED_GRACE: Duration = Duration::from_hours(1);

#[derive(Clone, Debug)]
pub struct ReconcilerSettings {
    /// Time between sweeps.
    pub interval: Duration,
    /// Only unacknowledged entries older than this are re-published (younger ones may still
    /// be in flight).
    pub min_age: Duration,
    /// Acknowledged entries without an order row for this long count as lost.
    pub lost_after: Duration,
    /// Lease lifetime; another instance takes over this long after the holder died.
    pub lease_ttl: Duration,
    /// How long a settled sale's keys are kept: longer than the topic keeps events.
    pub retention: Duration,
}

pub struct Reconciler {
    /// The ledger, with the reconciler's own deadline on every call.
    ledger: Arc<dyn StockLedger>,
    leases: Arc<dyn Leases>,
    publisher: Publisher,
    payments: PaymentResolver,
    /// This instance's name on the lease.
    holder: String,
    settings: ReconcilerSettings,
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub republished: usize,
    pub expired: usize,
    /// Payment intents settled (completed, refunded, or found never charged).
    pub payments_settled: usize,
    pub failed_sales: usize,
    pub settled_sales: usize,
    /// Units locked without an order row, over the active sales.
    pub locked: u64,
    /// Of those, the ones whose publish the broker has not acknowledged.
    pub unacknowledged: u64,
}

impl Reconciler {
    pub fn new(
        ledger: Arc<dyn StockLedger>,
        leases: Arc<dyn Leases>,
        publisher: Publisher,
        payments: PaymentResolver,
        settings: ReconcilerSettings,
    ) -> Self {
        for why in ["unacknowledged", "lost"] {
            counter!(REPUBLISHED_TOTAL, "why" => why).absolute(0);
        }
        Self {
            ledger,
            leases,
            publisher,
            payments,
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
                Ok(true) => match self.sweep().await {
                    Ok(sweep) => report(&sweep),
                    Err(error) => {
                        tracing::warn!(%error, "reconciler sweep failed; retrying next tick");
                    }
                },
                // Only the holder measures the outbox; a former holder must not keep reporting
                // its last reading.
                Ok(false) => report(&Sweep::default()),
                Err(error) => tracing::warn!(%error, "reconciler lease check failed"),
            }
        }
    }

    /// One pass over the active sales, each swept on its own (by the clock of its own Redis
    /// master). Fails only when the ledger cannot say which sales are active.
    pub async fn sweep(&self) -> Result<Sweep, StoreError> {
        let mut sweep = Sweep::default();
        for sale_id in self.ledger.active_sale_ids().await? {
            if let Err(error) = self.sweep_sale(&sale_id, &mut sweep).await {
                sweep.failed_sales += 1;
                counter!(SALE_FAILURES_TOTAL).increment(1);
                tracing::warn!(%error, %sale_id, "sweep of one sale failed; the others are swept");
            }
        }
        Ok(sweep)
    }

    async fn sweep_sale(&self, sale_id: &SaleId, sweep: &mut Sweep) -> Result<(), StoreError> {
        let now_ms = self.ledger.now_ms(sale_id).await?;
        let ages = [
            (
                Publication::Unacknowledged,
                self.settings.min_age,
                "unacknowledged",
            ),
            (Publication::Acknowledged, self.settings.lost_after, "lost"),
        ];
        for (publication, age, why) in ages {
            let before_ms = now_ms.saturating_sub(millis(age));
            let mut republished = 0;
            loop {
                let entries = self
                    .ledger
                    .stale_entries(sale_id, publication, before_ms, CHUNK)
                    .await?;
                let chunk = entries.len();
                republished += self.republish_chunk(entries, now_ms).await?;
                if chunk < CHUNK || republished >= SWEEP_LIMIT {
                    break;
                }
            }
            counter!(REPUBLISHED_TOTAL, "why" => why).increment(republished as u64);
            sweep.republished += republished;
        }
        sweep.expired += self.expire_due(sale_id).await?;
        // After the expiry: a charge that lost its race to this sweep is refunded in it.
        sweep.payments_settled += self.payments.resolve(sale_id, now_ms).await?;
        let OutboxSizes {
            locked,
            unacknowledged,
        } = self.ledger.outbox_sizes(sale_id).await?;
        sweep.locked += locked;
        sweep.unacknowledged += unacknowledged;
        if locked == 0 && self.settle(sale_id, now_ms).await? {
            sweep.settled_sales += 1;
        }
        Ok(())
    }

    /// Expires the sale's orders past their pay-by time, in chunks; returns how many.
    async fn expire_due(&self, sale_id: &SaleId) -> Result<usize, StoreError> {
        let mut expired = 0;
        loop {
            let chunk = self.ledger.expire_due(sale_id, CHUNK).await?.len();
            expired += chunk;
            if chunk < CHUNK || expired >= SWEEP_LIMIT {
                break;
            }
        }
        counter!(EXPIRED_TOTAL).increment(expired as u64);
        Ok(expired)
    }

    /// Defers a chunk's entries, then queues them on the producer again; returns how many
    /// were queued. Deferring first means a failure here queues nothing twice, and the next
    /// chunk read starts after these entries.
    async fn republish_chunk(
        &self,
        entries: Vec<OutboxEntry>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let orders: Vec<OrderId> = entries.iter().map(|e| e.order_id.clone()).collect();
        self.ledger.defer(&orders, now_ms).await?;
        // An entry without payload was completed meanwhile: nothing to publish.
        Ok(entries
            .iter()
            .filter_map(|entry| Some((&entry.order_id, entry.payload.as_deref()?)))
            .filter(|(order, payload)| self.republish(order, payload))
            .count())
    }

    /// Settles a sale nothing waits in, if it is sold out or ended (by the ledger's clock,
    /// with a grace longer than any gateway's clock is off).
    async fn settle(&self, sale_id: &SaleId, now_ms: i64) -> Result<bool, StoreError> {
        let Some(sale) = self.ledger.sale(sale_id).await? else {
            return Ok(false);
        };
        let ended_ms = sale.ends_at.timestamp_millis() + millis(ENDED_GRACE);
        let settled = self
            .ledger
            .settle_sale(sale_id, now_ms > ended_ms, self.settings.retention)
            .await?;
        if settled {
            tracing::info!(%sale_id, "sale settled; its keys expire after the retention");
        }
        Ok(settled)
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

/// The outbox gauges of one sweep (zero on an instance that does not hold the lease).
fn report(sweep: &Sweep) {
    gauge!(OUTBOX_ENTRIES, "state" => "unpublished").set(sweep.unacknowledged as f64);
    gauge!(OUTBOX_ENTRIES, "state" => "backlog")
        .set(sweep.locked.saturating_sub(sweep.unacknowledged) as f64);
    if sweep.expired > 0 {
        tracing::info!(
            expired = sweep.expired,
            "orders left unpaid past their window expired; their units are back on sale"
        );
    }
    if sweep.payments_settled > 0 {
        tracing::info!(
            settled = sweep.payments_settled,
            "settled payments the gateways left unfinished: completed or refunded"
        );
    }
    if sweep.republished > 0 {
        tracing::info!(
            republished = sweep.republished,
            "re-published events the broker never acknowledged, or lost"
        );
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
