//! Statistics in this process's memory, with `stats_apply.lua`'s and `stats_transition.lua`'s
//! semantics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{SaleCounts, SaleStats, StatsStore, TimelinePoint};
use crate::error::StoreError;
use crate::event::{ReservationEvent, TransitionEvent};
use crate::ids::{SaleId, UserId};
use crate::order_status::OrderStatus;

#[derive(Default)]
pub struct MemoryStatsStore {
    sales: Mutex<HashMap<SaleId, Tally>>,
}

#[derive(Default)]
struct Tally {
    counted_events: HashSet<uuid::Uuid>,
    counted_transitions: HashSet<String>,
    sold: u64,
    revenue_cents: i64,
    /// status → orders that reached it
    statuses: HashMap<OrderStatus, u64>,
    paid_revenue_cents: i64,
    buyers: HashSet<UserId>,
    /// unix second → units
    timeline: BTreeMap<i64, u64>,
}

impl Tally {
    fn count(&self, status: OrderStatus) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    fn counts(&self) -> SaleCounts {
        SaleCounts {
            sold: self.sold,
            revenue_cents: self.revenue_cents,
            buyers: self.buyers.len() as u64,
            created: self.count(OrderStatus::Created),
            paid: self.count(OrderStatus::Paid),
            paid_revenue_cents: self.paid_revenue_cents,
            expired: self.count(OrderStatus::Expired),
            failed: self.count(OrderStatus::Failed),
        }
    }
}

#[async_trait]
impl StatsStore for MemoryStatsStore {
    async fn apply(&self, events: &[&ReservationEvent]) -> Result<u64, StoreError> {
        let mut sales = self.sales.lock().expect("stats lock poisoned");
        let mut counted = 0;
        for event in events {
            let tally = sales.entry(event.sale_id.clone()).or_default();
            if !tally.counted_events.insert(event.event_id) {
                continue;
            }
            let units = u64::from(event.quantity);
            tally.sold += units;
            tally.revenue_cents += event.price_cents.saturating_mul(i64::from(event.quantity));
            tally.buyers.insert(event.user_id.clone());
            *tally
                .timeline
                .entry(event.reserved_at.timestamp())
                .or_default() += units;
            counted += 1;
        }
        Ok(counted)
    }

    async fn apply_transitions(&self, events: &[&TransitionEvent]) -> Result<u64, StoreError> {
        let mut sales = self.sales.lock().expect("stats lock poisoned");
        let mut counted = 0;
        for event in events {
            let tally = sales.entry(event.sale_id.clone()).or_default();
            if !tally.counted_transitions.insert(event.event_id.clone()) {
                continue;
            }
            *tally.statuses.entry(event.status).or_default() += 1;
            // A payment undone by its order's failure (the charge refunded) is no sale, in
            // whichever order the two events come (as `stats_transition.lua`).
            let counted_as = |status| {
                let event_id = TransitionEvent::event_id_of(&event.order_id, status);
                tally.counted_transitions.contains(&event_id)
            };
            let payment_undone = match event.status {
                OrderStatus::Paid => counted_as(OrderStatus::Failed),
                OrderStatus::Failed => counted_as(OrderStatus::Paid),
                _ => false,
            };
            if payment_undone {
                *tally.statuses.entry(OrderStatus::Paid).or_default() -= 1;
                if event.status == OrderStatus::Failed {
                    tally.paid_revenue_cents -= event.price_cents;
                }
            } else if event.status == OrderStatus::Paid {
                tally.paid_revenue_cents += event.price_cents;
            }
            counted += 1;
        }
        Ok(counted)
    }

    async fn read(&self, sale_id: &SaleId) -> Result<SaleStats, StoreError> {
        let sales = self.sales.lock().expect("stats lock poisoned");
        Ok(sales
            .get(sale_id)
            .map_or_else(SaleStats::default, |tally| SaleStats {
                counts: tally.counts(),
                timeline: tally
                    .timeline
                    .iter()
                    .map(|(&second, &sold)| TimelinePoint { second, sold })
                    .collect(),
            }))
    }

    async fn counts(&self, sale_id: &SaleId) -> Result<SaleCounts, StoreError> {
        let sales = self.sales.lock().expect("stats lock poisoned");
        Ok(sales
            .get(sale_id)
            .map_or_else(SaleCounts::default, Tally::counts))
    }
}
