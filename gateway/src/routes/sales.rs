//! `GET /api/v1/sales/{id}`: a sale, its remaining stock and its state; and
//! `GET /api/v1/sales/{id}/stats`: its statistics as the stats worker counted them.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::ids::SaleId;
use shared::sale::SaleState;
use shared::stats::SaleStats;

use crate::error::ApiError;
use crate::extract::PathId;
use crate::state::AppState;

#[derive(Serialize)]
pub struct SaleView {
    id: SaleId,
    name: String,
    price_cents: i64,
    stock: u32,
    remaining: u32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    state: SaleState,
}

pub async fn get_sale(
    State(state): State<AppState>,
    PathId(sale_id): PathId<SaleId>,
) -> Result<Json<SaleView>, ApiError> {
    let entry = state
        .catalog
        .get(&sale_id)
        .await?
        .ok_or(ApiError::UnknownSale)?;
    let remaining = state.ledger.remaining(&sale_id).await?.unwrap_or(0);
    let sale = &entry.sale;
    Ok(Json(SaleView {
        id: sale.id.clone(),
        name: sale.name.clone(),
        price_cents: sale.price_cents,
        stock: sale.stock,
        remaining,
        starts_at: sale.starts_at,
        ends_at: sale.ends_at,
        state: sale.state(Utc::now(), remaining),
    }))
}

/// The stats worker's view, which trails the purchases by the queue's lag.
pub async fn get_stats(
    State(state): State<AppState>,
    PathId(sale_id): PathId<SaleId>,
) -> Result<Json<SaleStats>, ApiError> {
    if state.catalog.get(&sale_id).await?.is_none() {
        return Err(ApiError::UnknownSale);
    }
    Ok(Json(state.stats.read(&sale_id).await?))
}
