//! The contract between the consumer loop and a worker: what a handler is handed, what it
//! answers, and how a failed answer tells the loop what to do next.

use std::future::Future;

use crate::error::{Cause, StoreError};
use crate::event::{Consumed, ReservationEvent};

/// A decoded event and the trace context it travelled with.
#[derive(Clone, Debug)]
pub struct Delivery<E = ReservationEvent> {
    pub event: E,
    pub traceparent: Option<String>,
}

/// How a batch failed, with the failure beneath it kept as its source.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Infrastructure the worker owns is down (PostgreSQL, Redis): back off and retry the batch
    /// for as long as it takes. Never counts against the attempt budget, so an outage can
    /// only delay events, never dead-letter them.
    #[error("dependency unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// This attempt failed and may succeed later (an SMS provider's 503): back off and retry;
    /// counts against the worker's attempt budget.
    #[error("retryable: {0}")]
    Retryable(#[source] Cause),
    /// These events can never succeed: dead-letter them and carry on with the others.
    #[error("permanent failure of {} event(s): {reason}", .event_ids.len())]
    Permanent {
        event_ids: Vec<uuid::Uuid>,
        reason: String,
    },
}

/// A store that gave no answer is infrastructure the worker owns: wait it out.
impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        Self::Unavailable(Box::new(error))
    }
}

/// A worker's business logic. Must be idempotent on the event's id: after a crash or a
/// rebalance the same event arrives again. Callable directly, so most tests need no broker.
pub trait Handler: Send + Sync {
    /// The events it takes; the loop subscribes to their topics ([`Consumed::STREAMS`]).
    type Event: Consumed;

    fn handle(
        &self,
        batch: &[Delivery<Self::Event>],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}
