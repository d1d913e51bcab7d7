//! Admin calls: create sales, mint user tokens, maintain the blacklist.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::ids::UserId;
use shared::sale::Sale;
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, PathId};
use crate::state::AppState;

/// `POST /api/v1/admin/sales`: creates a sale and pre-warms its stock in Redis.
#[utoipa::path(
    post,
    path = "/api/v1/admin/sales",
    tag = "admin",
    // The one rule of the body its schema cannot state, quoted as the 400 words it.
    description = "Creates a sale and pre-warms its stock. One rule between two fields is beyond the schema, and a sale that breaks it is refused with 400 `invalid_request` and this message: `ends_at must be after starts_at`.",
    request_body = Sale,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The sale, created with its stock", body = Sale),
        (status = 400, description = "`invalid_request`: the body is not a sale as the schema describes it, or `ends_at` is not after `starts_at` (the message says which field)", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid admin token", body = ErrorBody),
        (status = 409, description = "`sale_exists`: a sale with this id already exists", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the stock ledger did not answer; try again", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(sale_id = %sale.id))]
pub async fn create_sale(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(sale): ApiJson<Sale>,
) -> Result<(StatusCode, Json<Sale>), ApiError> {
    sale.validate().map_err(ApiError::BadRequest)?;
    if !state.catalog.create(sale.clone()).await? {
        return Err(ApiError::SaleExists);
    }
    tracing::info!(stock = sale.stock, "sale created");
    Ok((StatusCode::CREATED, Json(sale)))
}

/// A user an admin call is about.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    pub(crate) user_id: UserId,
}

/// A signed user token.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub(crate) token: String,
}

/// `POST /api/v1/admin/tokens`: a user token, standing in for a login service.
#[utoipa::path(
    post,
    path = "/api/v1/admin/tokens",
    tag = "admin",
    request_body = UserRef,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A token for the user", body = TokenResponse),
        (status = 400, description = "`invalid_request`: not a valid user reference", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid admin token", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the gateway is at capacity; try again", body = ErrorBody),
    )
)]
pub async fn mint_token(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<UserRef>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = state.tokens.mint(&request.user_id)?;
    Ok(Json(TokenResponse { token }))
}

/// `POST /api/v1/admin/blacklist`: bans a user from every sale.
#[utoipa::path(
    post,
    path = "/api/v1/admin/blacklist",
    tag = "admin",
    request_body = UserRef,
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "The user is banned"),
        (status = 400, description = "`invalid_request`: not a valid user reference", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid admin token", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store did not answer; try again", body = ErrorBody),
    )
)]
pub async fn ban(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<UserRef>,
) -> Result<StatusCode, ApiError> {
    state.blacklist.set_banned(&request.user_id, true).await?;
    tracing::info!(user_id = %request.user_id, "user blacklisted");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/admin/blacklist/{user_id}`: lifts a ban.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/blacklist/{user_id}",
    tag = "admin",
    params(("user_id" = UserId, Path, description = "The user")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "The user may buy again"),
        (status = 400, description = "`invalid_request`: not a valid user id", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid admin token", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store did not answer; try again", body = ErrorBody),
    )
)]
pub async fn unban(
    _: Admin,
    State(state): State<AppState>,
    PathId(user_id): PathId<UserId>,
) -> Result<StatusCode, ApiError> {
    state.blacklist.set_banned(&user_id, false).await?;
    tracing::info!(%user_id, "user removed from the blacklist");
    Ok(StatusCode::NO_CONTENT)
}
