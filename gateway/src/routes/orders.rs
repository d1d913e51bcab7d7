//! `GET /api/v1/orders/{id}`: where an order stands, for its owner only; and
//! `GET /api/v1/sales/{id}/orders/mine`: the order the caller holds in a sale, for a buyer whose
//! answer was lost (a dropped connection, a 503 that could not tell) to find out.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use shared::ids::{OrderId, SaleId, UserId};
use shared::stock::OrderStatus;
use utoipa::ToSchema;

use crate::auth::User;
use crate::error::{ApiError, ErrorBody};
use crate::extract::PathId;
use crate::state::AppState;

/// An order and where it stands.
#[derive(Serialize, ToSchema)]
pub struct OrderView {
    order_id: OrderId,
    sale_id: SaleId,
    user_id: UserId,
    status: OrderStatus,
}

/// Anyone but the owner gets 404, exactly as for an order that does not exist.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{order_id}",
    tag = "orders",
    params(("order_id" = OrderId, Path, description = "The order, as the purchase answered it")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The caller's order", body = OrderView),
        (status = 401, description = "`unauthenticated`: no valid user token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order of this user", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the stock ledger did not answer; try again", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/sales/{sale_id}/orders/mine",
    tag = "orders",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The order the caller holds in this sale", body = OrderView),
        (status = 401, description = "`unauthenticated`: no valid user token", body = ErrorBody),
        (status = 404, description = "`not_found`: the caller holds no order in this sale", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the stock ledger did not answer; try again", body = ErrorBody),
    )
)]
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
