//! `GET /api/v1/orders/{id}`: where an order stands, for its owner only; and
//! `GET /api/v1/sales/{id}/orders/mine`: the order the caller holds in a sale, for a buyer whose
//! answer was lost (a dropped connection, a 503 that could not tell) to find out.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use shared::ids::{OrderId, SaleId, UserId};
use shared::stock::OrderStatus;

use crate::auth::User;
use crate::error::ApiError;
use crate::extract::PathId;
use crate::state::AppState;

#[derive(Serialize)]
pub struct OrderView {
    order_id: OrderId,
    sale_id: SaleId,
    user_id: UserId,
    status: OrderStatus,
}

/// Anyone but the owner gets 404, exactly as for an order that does not exist.
pub async fn get_order(
    User(user_id): User,
    State(state): State<AppState>,
    PathId(order_id): PathId<OrderId>,
) -> Result<Json<OrderView>, ApiError> {
    let status = state
        .ledger
        .order_status(&order_id, &user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(OrderView {
        sale_id: order_id.sale_id(),
        order_id,
        user_id,
        status,
    }))
}

/// The caller's order in the sale, or 404 when they hold none.
pub async fn get_my_order(
    User(user_id): User,
    State(state): State<AppState>,
    PathId(sale_id): PathId<SaleId>,
) -> Result<Json<OrderView>, ApiError> {
    let order_id = state
        .ledger
        .buyers_order(&sale_id, &user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    get_order(User(user_id), State(state), PathId(order_id)).await
}
