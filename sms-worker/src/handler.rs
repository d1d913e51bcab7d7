//! One confirmation SMS per order, at the provider's rate.
//!
//! Before sending, the handler claims the order's message in the shared records (see
//! `shared::sms_records`), so no other instance sends it meanwhile: a second owner of the
//! partition during a rebalance, or the same event redelivered, finds the claim or the "sent"
//! record and waits or skips. After the provider accepted the message the handler records it
//! as sent. If that write fails (a Redis blip), the message is not sent again: the handler
//! remembers it sent the order and retries only the record.
//!
//! The one gap left: a crash after the provider accepted and before the record is written
//! sends the SMS again once the claim expired (at-least-once). The provider closes it by
//! honouring the `Idempotency-Key` we send (the order id).
//!
//! Every send — first tries and retries — waits for the governor limiter, so the provider's
//! rate holds even while a backlog drains or a failure is retried.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use metrics::{counter, histogram};
use shared::consumer::{Delivery, Handler, HandlerError};
use shared::event::ReservationEvent;
use shared::ids::OrderId;
use shared::sms_records::{Claim, SmsRecords};

use crate::provider::{Sms, SmsError, SmsProvider};

/// Messages the provider accepted.
pub const SMS_SENT_TOTAL: &str = "seckill_sms_sent_total";
/// Redelivered events whose SMS had been sent already.
pub const SMS_SKIPPED_TOTAL: &str = "seckill_sms_duplicates_skipped_total";
/// Time each send waited for the rate limiter.
pub const SMS_LIMITER_WAIT_SECONDS: &str = "seckill_sms_limiter_wait_seconds";

/// How long the records keep what, for the handler.
#[derive(Clone, Copy, Debug)]
pub struct RecordLifetimes {
    /// A claim: longer than one send can take (the limiter's wait and the provider's timeout).
    pub claim: Duration,
    /// A "sent" record: longer than any redelivery can take.
    pub sent: Duration,
}

pub struct SmsHandler<P> {
    provider: P,
    limiter: DefaultDirectRateLimiter,
    records: Arc<dyn SmsRecords>,
    lifetimes: RecordLifetimes,
    /// This instance's name on its claims.
    holder: String,
    /// Orders whose message the provider accepted but whose record is not written yet.
    sent_unrecorded: Mutex<HashSet<OrderId>>,
}

impl<P: SmsProvider> SmsHandler<P> {
    /// Sends through `provider` at most `rate_per_sec` messages per second, one per order as
    /// `records` keep them.
    pub fn new(
        provider: P,
        rate_per_sec: NonZeroU32,
        records: Arc<dyn SmsRecords>,
        lifetimes: RecordLifetimes,
    ) -> Self {
        counter!(SMS_SENT_TOTAL).absolute(0);
        Self {
            provider,
            limiter: RateLimiter::direct(Quota::per_second(rate_per_sec)),
            records,
            lifetimes,
            holder: uuid::Uuid::new_v4().to_string(),
            sent_unrecorded: Mutex::default(),
        }
    }

    /// Store outages are `Unavailable` (`?` on a `StoreError`): they delay messages, never
    /// spend their attempt budget.
    async fn send_once(&self, event: &ReservationEvent) -> Result<(), HandlerError> {
        let order = &event.order_id;
        if !self.is_sent_unrecorded(order) {
            match self
                .records
                .claim(order, &self.holder, self.lifetimes.claim)
                .await?
            {
                Claim::Sent => {
                    counter!(SMS_SKIPPED_TOTAL).increment(1);
                    return Ok(());
                }
                Claim::Theirs => {
                    return Err(HandlerError::Unavailable(format!(
                        "another instance holds the claim on order {order}'s SMS"
                    )));
                }
                Claim::Mine => self.send(event).await?,
            }
        }
        self.records.record_sent(order, self.lifetimes.sent).await?;
        self.sent_unrecorded
            .lock()
            .expect("sent-unrecorded lock poisoned")
            .remove(order);
        Ok(())
    }

    /// Sends under the claim; on failure gives the claim up, so a retry may claim again.
    async fn send(&self, event: &ReservationEvent) -> Result<(), HandlerError> {
        let waited = Instant::now();
        self.limiter.until_ready().await;
        histogram!(SMS_LIMITER_WAIT_SECONDS).record(waited.elapsed());

        let sms = Sms {
            idempotency_key: event.order_id.to_string(),
            to: event.user_id.to_string(),
            text: format!(
                "Your order {} in sale {} is confirmed. Thank you!",
                event.order_id, event.sale_id
            ),
        };
        let failure = match self.provider.send(&sms).await {
            Ok(()) => {
                counter!(SMS_SENT_TOTAL).increment(1);
                self.sent_unrecorded
                    .lock()
                    .expect("sent-unrecorded lock poisoned")
                    .insert(event.order_id.clone());
                return Ok(());
            }
            Err(SmsError::Transient(reason)) => HandlerError::Retryable(reason),
            Err(SmsError::Permanent(reason)) => HandlerError::Permanent {
                event_ids: vec![event.event_id],
                reason,
            },
        };
        if let Err(error) = self.records.release(&event.order_id, &self.holder).await {
            tracing::warn!(%error, order_id = %event.order_id, "could not give up the claim; it expires");
        }
        Err(failure)
    }

    fn is_sent_unrecorded(&self, order: &OrderId) -> bool {
        self.sent_unrecorded
            .lock()
            .expect("sent-unrecorded lock poisoned")
            .contains(order)
    }
}

impl<P: SmsProvider> Handler for SmsHandler<P> {
    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        for delivery in batch {
            self.send_once(&delivery.event).await?;
        }
        Ok(())
    }
}
