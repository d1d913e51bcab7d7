//! Pushing to the browser: an order's transitions as they happen, and a sale's live view.
//!
//! | module | concern |
//! | --- | --- |
//! | [`feed`] | every transition, read from the order-event topic by every gateway |
//! | [`watchers`] | which open stream waits for which order |
//! | [`lag`] | each consumer group's lag, asked of the broker |
//! | [`tally`] | a sale's purchase attempts by outcome at this gateway |
//!
//! The streams themselves are routes (`routes/order_events.rs`, `routes/live.rs`); what they
//! share is here, in [`Push`]: the watchers, the probes, and the bound on open streams. A
//! stream holds a connection and a task for minutes, so a gateway serves at most
//! `MAX_STREAMS` of them; beyond that it answers 503 and the client polls, as before.

pub mod feed;
pub mod lag;
pub mod tally;
pub mod watchers;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use lag::GroupLags;
use watchers::OrderWatchers;

/// What every stream of this gateway shares.
pub struct Push {
    pub watchers: Arc<OrderWatchers>,
    pub lags: GroupLags,
    /// The consumer group whose lag is the SMS backlog.
    pub sms_group: String,
    /// How often an idle stream sends a comment, so proxies keep it open.
    pub heartbeat: Duration,
    /// How often an order's stream reads the ledger even without a notice, and a sale's
    /// live view sends a snapshot.
    pub resync: Duration,
    /// Cancelled when the gateway shuts down: every stream ends, so the graceful shutdown,
    /// which waits for open connections, does not wait for them.
    pub closing: CancellationToken,
    slots: Arc<Semaphore>,
}

impl Push {
    pub fn new(
        lags: GroupLags,
        sms_group: String,
        max_streams: usize,
        heartbeat: Duration,
        resync: Duration,
    ) -> Self {
        Self {
            watchers: Arc::default(),
            lags,
            sms_group,
            heartbeat,
            resync,
            closing: CancellationToken::new(),
            slots: Arc::new(Semaphore::new(max_streams)),
        }
    }

    /// A place for one more open stream, held until the stream ends; 503 when every place is
    /// taken.
    pub fn open_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| ApiError::Unavailable(STREAMS_FULL))
    }
}

const STREAMS_FULL: &str = "this gateway has as many open streams as it serves; poll GET /api/v1/orders/{order_id} instead";
