//! `GET /api/v1/orders/{id}`: where an order stands, for its owner only;
//! `GET /api/v1/sales/{id}/orders/mine`: the order the caller holds in a sale, for a buyer whose
//! answer was lost (a dropped connection, a 503 that could not tell) to find out; and
//! `POST /api/v1/orders/{id}/payment`: the owner pays, in time or not at all
//! (`docs/architecture.md`, "The order lifecycle").

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::ids::{OrderId, SaleId, UserId};
use shared::stock::{OrderStatus, Payment, PaymentIntent};
use utoipa::ToSchema;

use crate::auth::User;
use crate::error::{ApiError, ErrorBody};
use crate::extract::PathId;
use crate::state::AppState;

/// An order and where it stands.
#[derive(Serialize, ToSchema)]
pub struct OrderView {
    pub(crate) order_id: OrderId,
    sale_id: SaleId,
    user_id: UserId,
    pub(crate) status: OrderStatus,
    /// While the order awaits payment: when its window closes (on the stock ledger's clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pay_by: Option<DateTime<Utc>>,
}

impl OrderView {
    /// A paid order: nothing left to pay by.
    fn paid(order_id: OrderId, user_id: UserId) -> Self {
        Self {
            sale_id: order_id.sale_id(),
            order_id,
            user_id,
            status: OrderStatus::Paid,
            pay_by: None,
        }
    }

    /// The view of `user_id`'s order, or `None` when it is not theirs.
    pub(crate) async fn of(
        state: &AppState,
        order_id: OrderId,
        user_id: UserId,
    ) -> Result<Option<Self>, ApiError> {
        let Some(status) = state.ledger.order_status(&order_id, &user_id).await? else {
            return Ok(None);
        };
        let pay_by = match status {
            OrderStatus::Processing | OrderStatus::Created => state
                .ledger
                .pay_by(&order_id)
                .await?
                .and_then(DateTime::from_timestamp_millis),
            OrderStatus::Paid | OrderStatus::Expired | OrderStatus::Failed => None,
        };
        Ok(Some(Self {
            sale_id: order_id.sale_id(),
            order_id,
            user_id,
            status,
            pay_by,
        }))
    }
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
    OrderView::of(&state, order_id, user_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
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

/// Pays in three steps (`docs/architecture.md`, "Money"): the intent recorded in the ledger,
/// the charge (keyed by the order id, so a retry charges once), then the order marked paid in
/// the one atomic step it shares with expiry. A charge that lost that race is refunded at
/// once. Whatever this request does not finish (the provider's answer lost, the ledger
/// unreachable after the charge, a refund that failed, the gateway killed), the payment
/// resolver finishes from the intent: the order ends paid, or its charge refunded.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{order_id}/payment",
    tag = "orders",
    params(("order_id" = OrderId, Path, description = "The order, as the purchase answered it")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The order is paid (now, or by an earlier request)", body = OrderView),
        (status = 401, description = "`unauthenticated`: no valid user token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order of this user", body = ErrorBody),
        (status = 409, description = "`order_expired`: not paid in time; or `order_failed`: the order could not be created (any charge is refunded)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the ledger or the payment provider did not answer; a charge made meanwhile ends with the order paid or refunded, and a retry is charged once", body = ErrorBody),
    )
)]
pub async fn pay_order(
    User(user_id): User,
    State(state): State<AppState>,
    PathId(order_id): PathId<OrderId>,
) -> Result<Json<OrderView>, ApiError> {
    let amount_cents = state
        .catalog
        .get(&order_id.sale_id())
        .await?
        .ok_or(ApiError::NotFound)?
        .sale
        .price_cents;
    if let PaymentIntent::Refused(refusal) = state
        .ledger
        .begin_payment(&order_id, &user_id, amount_cents)
        .await?
    {
        return answer(refusal, order_id, user_id);
    }
    if let Err(error) = state.payments.charge(&order_id, amount_cents).await {
        tracing::warn!(%error, %order_id, "charge failed or unconfirmed; the resolver settles it");
        return Err(ApiError::Unavailable(PAYMENT_UNCONFIRMED));
    }
    let outcome = state.ledger.pay(&order_id, &user_id).await.map_err(|error| {
        tracing::warn!(%error, %order_id, "charged, but the ledger did not answer; the resolver settles it");
        ApiError::Unavailable(PAYMENT_UNCONFIRMED)
    })?;
    if !matches!(outcome, Payment::Paid | Payment::AlreadyPaid) {
        refund_now(&state, &order_id).await;
    }
    answer(outcome, order_id, user_id)
}

/// The answer to a payment the ledger decided.
fn answer(
    outcome: Payment,
    order_id: OrderId,
    user_id: UserId,
) -> Result<Json<OrderView>, ApiError> {
    match outcome {
        Payment::Paid | Payment::AlreadyPaid => Ok(Json(OrderView::paid(order_id, user_id))),
        Payment::Expired => Err(ApiError::OrderExpired),
        Payment::Failed => Err(ApiError::OrderFailed),
        Payment::NotFound => Err(ApiError::NotFound),
    }
}

/// Gives back a charge that came too late, and settles its intent; on any failure the intent
/// stays for the payment resolver, which retries until the provider confirms.
async fn refund_now(state: &AppState, order_id: &OrderId) {
    if let Err(error) = state.payments.refund(order_id).await {
        tracing::warn!(%error, %order_id, "refund of a payment that came too late failed; the resolver retries it");
        return;
    }
    if let Err(error) = state.ledger.settle_payment(order_id).await {
        tracing::warn!(%error, %order_id, "refunded, but the intent stays; the resolver settles it");
    }
}

/// What a 503 says when a charge's outcome is unknown.
const PAYMENT_UNCONFIRMED: &str = "the payment could not be confirmed; if you were charged, the order ends paid or the charge is refunded within a minute, and a retry is charged once";
