//! Per-sale statistics: reservations and the orders' transitions, written exactly once per event
//! by the stats worker, read by the
//! gateway's `GET /api/v1/sales/{id}/stats`.
//!
//! Exactly-once is the store's job, not the caller's: it records the event id in the same
//! atomic step that counts it, so a redelivered or re-published event changes nothing. Two
//! backends, one conformance suite: [`RedisStatsStore`] and [`MemoryStatsStore`].

mod memory;
mod redis;

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

pub use self::memory::MemoryStatsStore;
pub use self::redis::RedisStatsStore;
use crate::error::StoreError;
use crate::event::{ReservationEvent, TransitionEvent};
use crate::ids::SaleId;

/// What the statistics say about one sale: its counts and how the sales spread over time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SaleStats {
    #[serde(flatten)]
    pub counts: SaleCounts,
    /// Units sold per second, in time order.
    pub timeline: Vec<TimelinePoint>,
}

/// The sale's counts alone: a read whose size does not grow with the sale's duration, for
/// whoever asks often (the dashboard's snapshot, every second).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SaleCounts {
    /// Units reserved (every accepted purchase, resales included), and their value.
    pub sold: u64,
    pub revenue_cents: i64,
    pub buyers: u64,
    /// Orders stored (`created`).
    pub created: u64,
    /// Orders paid, and the money taken.
    pub paid: u64,
    pub paid_revenue_cents: i64,
    /// Orders expired unpaid, and orders that failed: their units went back on sale.
    pub expired: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TimelinePoint {
    /// Unix time, seconds.
    pub second: i64,
    pub sold: u64,
}

#[async_trait]
pub trait StatsStore: Send + Sync {
    /// Counts each event once (sold, revenue, distinct buyers, the second it was reserved in);
    /// returns how many were new.
    async fn apply(&self, events: &[&ReservationEvent]) -> Result<u64, StoreError>;

    /// Counts each transition once (by status; a payment's revenue too); returns how many
    /// were new.
    async fn apply_transitions(&self, events: &[&TransitionEvent]) -> Result<u64, StoreError>;

    /// The sale's statistics; all zero for a sale nothing was counted for.
    async fn read(&self, sale_id: &SaleId) -> Result<SaleStats, StoreError>;

    /// The sale's counts, without the timeline ([`Self::read`]'s `counts`).
    async fn counts(&self, sale_id: &SaleId) -> Result<SaleCounts, StoreError>;
}
