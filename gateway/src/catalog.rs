//! The gateway's cache of sales, and each sale's local sold-out flag.
//!
//! Sales never change after creation, so a gateway loads each one from Redis once and keeps
//! it. Once the stock script reports a sale sold out, the flag is set and later purchases
//! answer 410 without a Redis round trip: in a stampede that is nearly all of them. Stock can
//! come back (an order expired unpaid, or failed), so the flag answers alone for
//! [`SOLD_OUT_RECHECK`] only: after that every purchase goes to the stock lock again until the
//! lock says "sold out" once more, which renews the flag. A returned unit is on sale at every
//! gateway within [`SOLD_OUT_RECHECK`], and the price of a sale that stays sold out is the
//! purchases arriving within one Redis round trip, per gateway and recheck.
//!
//! Letting a single purchase through instead would answer everyone arriving while it is in
//! flight from the flag: a burst of latecomers for returned units, all arriving within that
//! round trip, would be told "sold out" but for one. And that one purchase could be refused
//! before it reached the lock (a bad token, a rate limit), leaving nobody to recheck.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

use shared::error::StoreError;
use shared::ids::SaleId;
use shared::sale::Sale;
use shared::stock::Sales;

use crate::push::tally::PurchaseTally;

/// How long the sold-out flag answers alone before one purchase asks the stock lock again.
pub const SOLD_OUT_RECHECK: Duration = Duration::from_millis(500);

/// The zero of the flag's clock: milliseconds since this instant (monotonic).
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

fn elapsed_ms() -> u64 {
    STARTED.elapsed().as_millis() as u64
}

/// A cached sale.
pub struct CatalogEntry {
    pub sale: Sale,
    /// When the stock lock last said "sold out" ([`elapsed_ms`], at least 1); 0: not sold out.
    sold_out_since_ms: AtomicU64,
    /// This gateway's purchase attempts at the sale, by outcome (the dashboard's rates).
    pub purchases: PurchaseTally,
}

impl CatalogEntry {
    /// Whether to answer 410 without asking the stock lock: only while the lock's last "sold
    /// out" is younger than [`SOLD_OUT_RECHECK`]. Past that, every caller asks, until an answer
    /// renews the flag ([`Self::mark_sold_out`]) or clears it ([`Self::mark_available`]).
    pub fn is_sold_out(&self) -> bool {
        let since = self.sold_out_since_ms.load(Ordering::Relaxed);
        since != 0 && elapsed_ms().saturating_sub(since) < SOLD_OUT_RECHECK.as_millis() as u64
    }

    pub fn mark_sold_out(&self) {
        self.sold_out_since_ms
            .store(elapsed_ms().max(1), Ordering::Relaxed);
    }

    /// The stock lock sold a unit and some are left: purchases go to it again.
    pub fn mark_available(&self) {
        if self.sold_out_since_ms.load(Ordering::Relaxed) != 0 {
            self.sold_out_since_ms.store(0, Ordering::Relaxed);
        }
    }
}

pub struct SaleCatalog {
    ledger: Arc<dyn Sales>,
    entries: RwLock<HashMap<SaleId, Arc<CatalogEntry>>>,
}

impl SaleCatalog {
    pub fn new(ledger: Arc<dyn Sales>) -> Self {
        Self {
            ledger,
            entries: RwLock::default(),
        }
    }

    /// The sale, from the cache or else from the ledger. Unknown ids are not cached, so a sale
    /// created through another gateway is found on the next request.
    pub async fn get(&self, sale_id: &SaleId) -> Result<Option<Arc<CatalogEntry>>, StoreError> {
        if let Some(entry) = self.cached(sale_id.as_str()) {
            return Ok(Some(entry));
        }
        Ok(self
            .ledger
            .sale(sale_id)
            .await?
            .map(|sale| self.insert(sale)))
    }

    /// The sale if it is cached, without asking the ledger. By any text (a sale id straight
    /// from the path, not parsed yet): an id that is not valid is simply not found.
    pub fn cached(&self, sale_id: &str) -> Option<Arc<CatalogEntry>> {
        self.entries
            .read()
            .expect("catalog lock poisoned")
            .get(sale_id)
            .cloned()
    }

    /// Stores a new sale in the ledger (pre-warming its stock) and in the cache; `false` when the
    /// id is taken.
    pub async fn create(&self, sale: Sale) -> Result<bool, StoreError> {
        let created = self.ledger.create_sale(&sale).await?;
        if created {
            self.insert(sale);
        }
        Ok(created)
    }

    fn insert(&self, sale: Sale) -> Arc<CatalogEntry> {
        let mut entries = self.entries.write().expect("catalog lock poisoned");
        Arc::clone(entries.entry(sale.id.clone()).or_insert_with(|| {
            Arc::new(CatalogEntry {
                sale,
                sold_out_since_ms: AtomicU64::new(0),
                purchases: PurchaseTally::default(),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CatalogEntry {
        let now = chrono::Utc::now();
        CatalogEntry {
            sale: Sale {
                id: "s1".parse().unwrap(),
                name: "Phone".into(),
                price_cents: 100,
                stock: 1,
                starts_at: now,
                ends_at: now + chrono::Duration::hours(1),
                payment_window_secs: 900,
            },
            sold_out_since_ms: AtomicU64::new(0),
            purchases: PurchaseTally::default(),
        }
    }

    fn wait_out_the_recheck_delay() {
        std::thread::sleep(SOLD_OUT_RECHECK + std::time::Duration::from_millis(20));
    }

    #[test]
    fn a_stale_sold_out_flag_lets_every_purchase_ask_until_the_lock_answers() {
        let entry = entry();
        assert!(!entry.is_sold_out());
        entry.mark_sold_out();
        assert!(entry.is_sold_out(), "fresh: answered locally");
        wait_out_the_recheck_delay();
        let asking = (0..8).filter(|_| !entry.is_sold_out()).count();
        assert_eq!(
            asking, 8,
            "a burst in flight together all ask the stock lock"
        );
        entry.mark_available(); // and one found a returned unit
        assert!(!entry.is_sold_out());
    }

    #[test]
    fn the_lock_saying_sold_out_again_renews_the_flag() {
        let entry = entry();
        entry.mark_sold_out();
        wait_out_the_recheck_delay();
        assert!(!entry.is_sold_out());
        entry.mark_sold_out(); // the stock had not come back
        assert!(
            entry.is_sold_out(),
            "answered locally for another recheck delay"
        );
    }
}
