//! The gateway's cache of sales, and each sale's local sold-out flag.
//!
//! Sales never change after creation, so a gateway loads each one from Redis once and keeps
//! it. Once the stock script reports a sale sold out, the flag is set and every later
//! purchase answers 410 without a Redis round trip: in a stampede that is nearly all of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use shared::error::StoreError;
use shared::ids::SaleId;
use shared::sale::Sale;
use shared::stock::StockLedger;

/// A cached sale.
pub struct CatalogEntry {
    pub sale: Sale,
    sold_out: AtomicBool,
}

impl CatalogEntry {
    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Relaxed)
    }

    /// Stock never comes back, so the flag is never cleared.
    pub fn mark_sold_out(&self) {
        self.sold_out.store(true, Ordering::Relaxed);
    }
}

pub struct SaleCatalog {
    ledger: Arc<dyn StockLedger>,
    entries: RwLock<HashMap<SaleId, Arc<CatalogEntry>>>,
}

impl SaleCatalog {
    pub fn new(ledger: Arc<dyn StockLedger>) -> Self {
        Self {
            ledger,
            entries: RwLock::default(),
        }
    }

    /// The sale, from the cache or else from the ledger. Unknown ids are not cached, so a sale
    /// created through another gateway is found on the next request.
    pub async fn get(&self, sale_id: &SaleId) -> Result<Option<Arc<CatalogEntry>>, StoreError> {
        if let Some(entry) = self
            .entries
            .read()
            .expect("catalog lock poisoned")
            .get(sale_id)
        {
            return Ok(Some(Arc::clone(entry)));
        }
        Ok(self
            .ledger
            .sale(sale_id)
            .await?
            .map(|sale| self.insert(sale)))
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
                sold_out: AtomicBool::new(false),
            })
        }))
    }
}
