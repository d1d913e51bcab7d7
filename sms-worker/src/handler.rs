//! One SMS per order and kind, at the provider's rate: reserved (with the time to pay), paid
//! (the receipt), expired or failed (the unit went back on sale; nothing is owed). The
//! `created` transition is the shop's business and sends nothing.
//!
//! Before sending, the handler claims the message in the shared records (see
//! `shared::sms_records`), so no other instance sends it meanwhile: a second owner of the
//! partition during a rebalance, or the same event redelivered, finds the claim or the "sent"
//! record and waits or skips. After the provider accepted the message the handler records it
//! as sent. If that write fails (a Redis blip), the message is not sent again: the handler
//! remembers it sent the message and retries only the record.
//!
//! The one gap left: a crash after the provider accepted and before the record is written
//! sends the SMS again once the claim expired (at-least-once). The provider closes it by
//! honouring the `Idempotency-Key` we send (`<order id>:<kind>`), as the bundled file
//! provider does.
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
use shared::event::{Consumed, OrderEvent};
use shared::sms_records::{Claim, SmsId, SmsKind, SmsRecords};
use shared::stock::OrderStatus;

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
    /// Messages the provider accepted whose record is not written yet.
    sent_unrecorded: Mutex<HashSet<SmsId>>,
}

impl<P: SmsProvider> SmsHandler<P> {
    /// Sends through `provider` at most `rate_per_sec` messages per second, one per order and
    /// kind as `records` keep them.
    pub fn new(
        provider: P,
        rate_per_sec: NonZeroU32,
        records: Arc<dyn SmsRecords>,
        lifetimes: RecordLifetimes,
    ) -> Self {
        for kind in [
            SmsKind::Reserved,
            SmsKind::Paid,
            SmsKind::Expired,
            SmsKind::Failed,
        ] {
            counter!(SMS_SENT_TOTAL, "kind" => kind.as_str()).absolute(0);
        }
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
    async fn send_once(&self, event: &OrderEvent) -> Result<(), HandlerError> {
        let Some((message, sms)) = compose(event) else {
            return Ok(());
        };
        if !self.is_sent_unrecorded(&message) {
            match self
                .records
                .claim(&message, &self.holder, self.lifetimes.claim)
                .await?
            {
                Claim::Sent => {
                    counter!(SMS_SKIPPED_TOTAL).increment(1);
                    return Ok(());
                }
                Claim::Theirs => {
                    return Err(HandlerError::Unavailable(
                        format!("another instance holds the claim on SMS {message}").into(),
                    ));
                }
                Claim::Mine => self.send(event, message.clone(), &sms).await?,
            }
        }
        self.records
            .record_sent(&message, self.lifetimes.sent)
            .await?;
        self.sent_unrecorded
            .lock()
            .expect("sent-unrecorded lock poisoned")
            .remove(&message);
        Ok(())
    }

    /// Sends under the claim; on failure gives the claim up, so a retry may claim again.
    async fn send(
        &self,
        event: &OrderEvent,
        message: SmsId,
        sms: &Sms,
    ) -> Result<(), HandlerError> {
        let waited = Instant::now();
        self.limiter.until_ready().await;
        histogram!(SMS_LIMITER_WAIT_SECONDS).record(waited.elapsed());

        let failure = match self.provider.send(sms).await {
            Ok(()) => {
                counter!(SMS_SENT_TOTAL, "kind" => message.kind.as_str()).increment(1);
                self.sent_unrecorded
                    .lock()
                    .expect("sent-unrecorded lock poisoned")
                    .insert(message);
                return Ok(());
            }
            Err(SmsError::Transient(reason)) => HandlerError::Retryable(reason),
            Err(SmsError::Permanent(reason)) => HandlerError::Permanent {
                event_ids: vec![event.id()],
                reason,
            },
        };
        if let Err(error) = self.records.release(&message, &self.holder).await {
            tracing::warn!(%error, %message, "could not give up the claim; it expires");
        }
        Err(failure)
    }

    fn is_sent_unrecorded(&self, message: &SmsId) -> bool {
        self.sent_unrecorded
            .lock()
            .expect("sent-unrecorded lock poisoned")
            .contains(message)
    }
}

/// The message an event calls for, if any: its id and the SMS itself.
fn compose(event: &OrderEvent) -> Option<(SmsId, Sms)> {
    let (order_id, user_id, kind, text) = match event {
        OrderEvent::Reserved(reservation) => (
            &reservation.order_id,
            &reservation.user_id,
            SmsKind::Reserved,
            format!(
                "Order {} is reserved for you: pay by {} UTC or it is released.",
                reservation.order_id,
                // To the second: a window closed at the sale's end rarely ends on a minute.
                reservation.pay_by.format("%H:%M:%S")
            ),
        ),
        OrderEvent::Transition(transition) => {
            let (kind, text) = match transition.status {
                OrderStatus::Processing | OrderStatus::Created => return None,
                OrderStatus::Paid => (
                    SmsKind::Paid,
                    format!(
                        "Payment of {} received for order {}. Thank you!",
                        money(transition.price_cents),
                        transition.order_id
                    ),
                ),
                OrderStatus::Expired => (
                    SmsKind::Expired,
                    format!(
                        "Order {} was not paid in time and is cancelled; nothing is owed.",
                        transition.order_id
                    ),
                ),
                OrderStatus::Failed => (
                    SmsKind::Failed,
                    format!(
                        "Sorry: order {} could not be completed and is cancelled; nothing is owed.",
                        transition.order_id
                    ),
                ),
            };
            (&transition.order_id, &transition.user_id, kind, text)
        }
    };
    let message = SmsId {
        order_id: order_id.clone(),
        kind,
    };
    let sms = Sms {
        idempotency_key: message.to_string(),
        to: user_id.to_string(),
        text,
    };
    Some((message, sms))
}

/// Cents as a decimal amount, `1999` → `19.99`.
fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl<P: SmsProvider> Handler for SmsHandler<P> {
    type Event = OrderEvent;

    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    async fn handle(&self, batch: &[Delivery<OrderEvent>]) -> Result<(), HandlerError> {
        for delivery in batch {
            self.send_once(&delivery.event).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use shared::ids::OrderId;

    use super::*;

    #[test]
    fn the_reserved_message_tells_the_events_deadline_to_the_second() {
        let pay_by: DateTime<Utc> = "2026-11-23T10:14:59.900Z".parse().unwrap();
        let order_id = OrderId::generate(&"s1".parse().unwrap());
        let mut event = shared::testing::reservation(order_id, &"u1".parse().unwrap(), 1999);
        event.pay_by = pay_by;
        let (_, sms) = compose(&OrderEvent::Reserved(event)).expect("a reserved message");
        assert!(sms.text.contains("pay by 10:14:59 UTC"), "{}", sms.text);
    }
}
