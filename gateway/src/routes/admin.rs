//! Admin calls: create sales, mint user tokens, maintain the blacklist.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::ids::UserId;
use shared::sale::Sale;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::state::AppState;

/// `POST /api/v1/admin/sales`: creates a sale and pre-warms its stock in Redis.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    user_id: UserId,
}

#[derive(Serialize)]
pub struct TokenResponse {
    token: String,
}

/// `POST /api/v1/admin/tokens`: a user token, standing in for a login service.
pub async fn mint_token(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<UserRef>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = state.tokens.mint(&request.user_id)?;
    Ok(Json(TokenResponse { token }))
}

/// `POST /api/v1/admin/blacklist`: bans a user from every sale.
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
pub async fn unban(
    _: Admin,
    State(state): State<AppState>,
    PathId(user_id): PathId<UserId>,
) -> Result<StatusCode, ApiError> {
    state.blacklist.set_banned(&user_id, false).await?;
    tracing::info!(%user_id, "user removed from the blacklist");
    Ok(StatusCode::NO_CONTENT)
}
