//! `POST /api/v1/orders/{id}/stream-token`: the credential a browser puts in the URL of the
//! order's event stream, because `EventSource` cannot set headers. It opens that one stream
//! for a minute, and nothing else (`crate::auth::stream` says why).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use shared::ids::OrderId;
use utoipa::ToSchema;

use crate::auth::User;
use crate::auth::stream::STREAM_TOKEN_LIFETIME;
use crate::error::{ApiError, ErrorBody};
use crate::extract::PathId;
use crate::state::AppState;

/// A stream token and how long it opens the stream.
#[derive(Serialize, ToSchema)]
pub struct StreamToken {
    /// For `GET /api/v1/orders/{order_id}/events?access_token=…`.
    token: String,
    /// Seconds from now in which a stream may be opened with it.
    #[schema(example = 60)]
    expires_in: u64,
}

/// Anyone but the owner gets 404, exactly as for an order that does not exist.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{order_id}/stream-token",
    tag = "orders",
    params(("order_id" = OrderId, Path, description = "The order whose stream the token opens")),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "A token that opens this order's event stream (and nothing else) for `expires_in` seconds", body = StreamToken),
        (status = 401, description = "`unauthenticated`: no valid user token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order of this user", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the stock ledger did not answer; try again", body = ErrorBody),
    )
)]
pub async fn stream_token(
    User(user_id): User,
    State(state): State<AppState>,
    PathId(order_id): PathId<OrderId>,
) -> Result<Json<StreamToken>, ApiError> {
    if state
        .ledger
        .order_status(&order_id, &user_id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound);
    }
    Ok(Json(StreamToken {
        token: state.stream_tokens.mint(&order_id, &user_id)?,
        expires_in: STREAM_TOKEN_LIFETIME.as_secs(),
    }))
}
