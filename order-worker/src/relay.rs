//! The transition relay: publishes the order-event outbox to the order-event topic.
//!
//! Every ledger step that changes an order's status (created, paid, expired, failed) records
//! the transition's event in its sale's transition outbox in the same atomic step. The relay
//! claims the due events every `interval`, publishes them, and the broker's acknowledgement
//! removes them from the outbox. A claim makes an event due again only after
//! `redeliver_after`, so relays on several instances share the work without a lease, and an
//! event whose publish was lost (broker down, process killed) is published again; a copy can
//! reach the topic twice, and consumers deduplicate on its id (`<order id>:<status>`).

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use shared::consumer::batch::{Step, sleep_unless_shutdown};
use shared::error::StoreError;
use shared::event::{DecodeError, TransitionEvent};
use shared::ids::SaleId;
use shared::publisher::Publisher;
use shared::stock::{DueTransition, StockLedger, TransitionId};
use tokio_util::sync::CancellationToken;

/// Transition events handed to the producer (first publishes and redeliveries).
pub const TRANSITIONS_RELAYED_TOTAL: &str = "seckill_transitions_relayed_total";

/// Transition outbox entries that were no valid event, logged and removed.
pub const TRANSITIONS_DISCARDED_TOTAL: &str = "seckill_transitions_discarded_total";

/// Events claimed per call.
const CHUNK: usize = 500;
/// Most events relayed per sale per pass; the rest wait for the next pass.
const PASS_LIMIT: usize = 10_000;

#[derive(Clone, Copy, Debug)]
pub struct RelaySettings {
    /// Time between passes: how late, at most, a transition reaches the topic.
    pub interval: Duration,
    /// How long a published event waits for its acknowledgement before it is published again;
    /// longer than the producer's message timeout, so one event is never queued twice at once.
    pub redeliver_after: Duration,
}

pub struct Relay {
    ledger: Arc<dyn StockLedger>,
    publisher: Publisher<TransitionId>,
    settings: RelaySettings,
}

impl Relay {
    pub fn new(
        ledger: Arc<dyn StockLedger>,
        publisher: Publisher<TransitionId>,
        settings: RelaySettings,
    ) -> Self {
        counter!(TRANSITIONS_RELAYED_TOTAL).absolute(0);
        counter!(TRANSITIONS_DISCARDED_TOTAL).absolute(0);
        Self {
            ledger,
            publisher,
            settings,
        }
    }

    /// Relays every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.pass().await {
                Ok(0) => {}
                Ok(relayed) => tracing::debug!(relayed, "transition events relayed"),
                Err(error) => tracing::warn!(%error, "transition relay pass failed; retrying"),
            }
            if sleep_unless_shutdown(self.settings.interval, &shutdown).await == Step::Interrupted {
                return;
            }
        }
    }

    /// One pass over the active sales; returns how many events were handed to the producer.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        let mut relayed = 0;
        for sale_id in self.ledger.active_sale_ids().await? {
            match self.relay_sale(&sale_id).await {
                Ok(count) => relayed += count,
                Err(error) => {
                    tracing::warn!(%error, %sale_id, "relaying one sale failed; the others go on");
                }
            }
        }
        counter!(TRANSITIONS_RELAYED_TOTAL).increment(relayed as u64);
        Ok(relayed)
    }

    async fn relay_sale(&self, sale_id: &SaleId) -> Result<usize, StoreError> {
        let mut relayed = 0;
        loop {
            let due = self
                .ledger
                .due_transitions(sale_id, CHUNK, self.settings.redeliver_after)
                .await?;
            let claimed = due.len();
            for transition in &due {
                match TransitionEvent::from_json(transition.payload.as_bytes()) {
                    Ok(event) => {
                        relayed += usize::from(self.publish(&event, &transition.payload));
                    }
                    Err(error) => self.discard(sale_id, transition, &error).await?,
                }
            }
            if claimed < CHUNK || relayed >= PASS_LIMIT {
                return Ok(relayed);
            }
        }
    }

    /// Removes an outbox entry that is no event (written by hand, or by another program):
    /// left there it would be claimed forever and its sale would never settle. Its payload is
    /// logged in full, for an operator to recover.
    async fn discard(
        &self,
        sale_id: &SaleId,
        transition: &DueTransition,
        error: &DecodeError,
    ) -> Result<(), StoreError> {
        tracing::error!(%error, %sale_id, event_id = transition.event_id, payload = transition.payload,
            "transition outbox entry is not a valid event; discarded");
        self.ledger
            .discard_transition(sale_id, &transition.event_id)
            .await?;
        counter!(TRANSITIONS_DISCARDED_TOTAL).increment(1);
        Ok(())
    }

    /// Queues one event on the producer; `false` if it could not be (it is due again later).
    fn publish(&self, event: &TransitionEvent, payload: &str) -> bool {
        match self.publisher.publish(event, payload) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, event_id = event.event_id, "publish failed; the event is due again later");
                false
            }
        }
    }
}
