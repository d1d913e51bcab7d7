//! `GET /api/v1/sales/{id}`: a sale, its remaining stock and its state; and
//! `GET /api/v1/sales/{id}/stats`: its statistics as the stats worker counted them.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::ids::SaleId;
use shared::sale::SaleState;
use shared::stats::SaleStats;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::PathId;
use crate::state::AppState;

/// A sale as buyers see it: the sale itself, its remaining stock and its state now.
#[derive(Serialize, ToSchema)]
pub struct SaleView {
    id: SaleId,
    name: String,
    price_cents: i64,
    stock: u32,
    /// Units not locked yet.
    remaining: u32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    state: SaleState,
}

#[utoipa::path(
    get,
    path = "/api/v1/sales/{sale_id}",
    tag = "sales",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses(
        (status = 200, description = "The sale, its remaining stock and its state", body = SaleView),
        (status = 404, description = "`unknown_sale`: no sale has this id", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the stock ledger did not answer; try again", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/sales/{sale_id}/stats",
    tag = "sales",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses(
        (status = 200, description = "The sale's statistics as counted so far", body = SaleStats),
        (status = 404, description = "`unknown_sale`: no sale has this id", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store did not answer; try again", body = ErrorBody),
    )
)]
pub async fn get_stats(
    State(state): State<AppState>,
    PathId(sale_id): PathId<SaleId>,
) -> Result<Json<SaleStats>, ApiError> {
    if state.catalog.get(&sale_id).await?.is_none() {
        return Err(ApiError::UnknownSale);
    }
    Ok(Json(state.stats.read(&sale_id).await?))
}
