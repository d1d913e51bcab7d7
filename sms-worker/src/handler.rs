//! One confirmation SMS per order, at the provider's rate.
//!
//! Before sending, the handler checks the order's idempotency record (shared by every
//! instance, see `shared::sms_records`); after the provider accepted the message it writes
//! the record (with an expiry). A redelivered event
//! therefore sends nothing. The one gap: a crash after the provider accepted and before the
//! record is written sends the SMS again on redelivery (at-least-once). The provider closes it
//! by honouring the `Idempotency-Key` we send (the order id).
//!
//! Every send — first tries and retries — waits for the governor limiter, so the provider's
//! rate holds even while a backlog drains or a failure is retried.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use metrics::{counter, histogram};
use shared::consumer::{Delivery, Handler, HandlerError};
use shared::event::ReservationEvent;
use shared::sms_records::SmsRecords;

use crate::provider::{Sms, SmsError, SmsProvider};

/// Messages the provider accepted.
pub const SMS_SENT_TOTAL: &str = "seckill_sms_sent_total";
/// Redelivered events whose SMS had been sent already.
pub const SMS_SKIPPED_TOTAL: &str = "seckill_sms_duplicates_skipped_total";
/// Time each send waited for the rate limiter.
pub const SMS_LIMITER_WAIT_SECONDS: &str = "seckill_sms_limiter_wait_seconds";

pub struct SmsHandler<P> {
    provider: P,
    limiter: DefaultDirectRateLimiter,
    records: Arc<dyn SmsRecords>,
    record_ttl: Duration,
}

impl<P: SmsProvider> SmsHandler<P> {
    /// Sends through `provider` at most `rate_per_sec` messages per second; idempotency records
    /// live for `record_ttl` (longer than any redelivery can take).
    pub fn new(
        provider: P,
        rate_per_sec: NonZeroU32,
        records: Arc<dyn SmsRecords>,
        record_ttl: Duration,
    ) -> Self {
        counter!(SMS_SENT_TOTAL).absolute(0);
        Self {
            provider,
            limiter: RateLimiter::direct(Quota::per_second(rate_per_sec)),
            records,
            record_ttl,
        }
    }

    async fn send_once(&self, event: &ReservationEvent) -> Result<(), HandlerError> {
        // A store outage is `Unavailable`: it delays messages, never spends their budget.
        let already_sent = self.records.sent(&event.order_id).await?;
        if already_sent {
            counter!(SMS_SKIPPED_TOTAL).increment(1);
            return Ok(());
        }

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
        match self.provider.send(&sms).await {
            Ok(()) => {}
            Err(SmsError::Transient(reason)) => return Err(HandlerError::Retryable(reason)),
            Err(SmsError::Permanent(reason)) => {
                return Err(HandlerError::Permanent {
                    event_ids: vec![event.event_id],
                    reason,
                });
            }
        }
        counter!(SMS_SENT_TOTAL).increment(1);
        Ok(self
            .records
            .record_sent(&event.order_id, self.record_ttl)
            .await?)
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
