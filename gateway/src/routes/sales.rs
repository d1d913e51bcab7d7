//! `GET /api/v1/sales`: the sales a buyer can pick from; `GET /api/v1/sales/{id}`: a sale, its
//! remaining stock and its state; and
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
    /// How long a buyer has to pay once their order is reserved.
    payment_window_secs: u32,
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
    SaleView::of(&state, &sale_id)
        .await?
        .map(Json)
        .ok_or(ApiError::UnknownSale)
}

/// The sales not settled yet, soonest first: what a buyer's page offers to pick from.
#[derive(Serialize, ToSchema)]
pub struct SaleList {
    sales: Vec<SaleView>,
}

#[utoipa::path(
    get,
    path = "/api/v1/sales",
    tag = "sales",
    responses(
        (status = 200, description = "The sales not settled yet, by start time", body = SaleList),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the stock ledger did not answer; try again", body = ErrorBody),
    )
)]
pub async fn list_sales(State(state): State<AppState>) -> Result<Json<SaleList>, ApiError> {
    let mut sales = Vec::new();
    for sale_id in state.ledger.active_sale_ids().await? {
        sales.extend(SaleView::of(&state, &sale_id).await?);
    }
    sales.sort_by(|a, b| (a.starts_at, &a.id).cmp(&(b.starts_at, &b.id)));
    Ok(Json(SaleList { sales }))
}

impl SaleView {
    /// The sale as buyers see it now, or `None` when no sale has this id.
    pub(crate) async fn of(state: &AppState, sale_id: &SaleId) -> Result<Option<Self>, ApiError> {
        let Some(entry) = state.catalog.get(sale_id).await? else {
            return Ok(None);
        };
        let remaining = state.ledger.remaining(sale_id).await?.unwrap_or(0);
        let sale = &entry.sale;
        Ok(Some(Self {
            id: sale.id.clone(),
            name: sale.name.clone(),
            price_cents: sale.price_cents,
            stock: sale.stock,
            remaining,
            starts_at: sale.starts_at,
            ends_at: sale.ends_at,
            payment_window_secs: sale.payment_window_secs,
            state: sale.state(Utc::now(), remaining),
        }))
    }
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
